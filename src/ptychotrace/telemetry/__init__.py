"""Run telemetry: array statistics, atomic writers, the run recorder and the scale chain.

Telemetry only observes: it reads NumPy arrays (never forces a device tensor) and never modifies
them. Field names follow docs/spec telemetry.md and are a public interface.
"""

from .recorder import (
    RUN_METADATA,
    SCHEMA_VERSION,
    RunDirExistsError,
    RunRecorder,
    collect_provenance,
    file_sha256,
    prepare_run_dir,
)
from .scale_chain import (
    build_intensity_stats,
    intensity_scale_block,
    label_vs_truth,
    record_training_label_stats,
    render_intensity_stats_md,
)
from .stats import array_stats, format_number
from .writers import atomic_path, sanitize, write_bytes, write_json, write_npy, write_text

__all__ = [
    "RUN_METADATA", "SCHEMA_VERSION", "RunDirExistsError", "RunRecorder", "array_stats",
    "atomic_path", "build_intensity_stats", "collect_provenance", "file_sha256", "format_number",
    "intensity_scale_block", "label_vs_truth", "prepare_run_dir", "record_training_label_stats",
    "render_intensity_stats_md", "sanitize", "write_bytes", "write_json", "write_npy", "write_text",
]
