"""run_metadata.json of one run (telemetry.md): the top level and the blocks other stages read.

Written by :class:`ptychotrace.telemetry.recorder.RunRecorder` from the blocks each stage sets;
read by the sweep, the report and the analyzer. The training-label and label-vs-truth blocks are
typed in :mod:`.intensity_stats` (intensity_stats.json records them too). Blocks whose content
is free-form by design (forward-pass diagnostics, probe, the config echo, the training corpus
manifest) are dicts here: their producers own their content; the names below are the contract.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Block, Record
from .comparison import ComparisonHeadline, PredictionScale
from .intensity_stats import LabelVsTruth, TrainingLabels

RUN_METADATA_FILE = "run_metadata.json"
RUN_METADATA_SCHEMA = "1.0"


class RunError(Block):
    type: str
    message: str
    traceback: str | None = None


class Profile(Block):
    """The stable profile: what it prefers, what it applied, what an explicit value overrode."""

    name: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    applied: dict[str, Any] = Field(default_factory=dict)
    skipped: dict[str, Any] = Field(default_factory=dict)
    active: bool = False


class Environment(Block):
    python: str | None = None
    platform: str | None = None
    numpy: str | None = None
    torch: str | None = None
    scipy: str | None = None
    device: str | None = None
    threads: int | None = None


class DatasetSource(Block):
    type: str
    path: str | None = None
    sha256: str | None = None


class Provenance(Block):
    package_version: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    environment: Environment = Field(default_factory=Environment)
    seeds: dict[str, int | None] = Field(default_factory=dict)
    dataset_source: DatasetSource | None = None


class Counts(Block):
    """Patterns and groups of the run."""

    total_images: int
    train_count: int
    test_count: int
    group_count: int
    train_groups: int | None = None
    test_groups: int | None = None
    group_limit: int | None
    gridsize: int
    N: int
    nphotons: float


class DatasetScaleInfo(Block):
    N: int
    nphotons: float
    batch_mean_sum_intensity: float | None
    dataset_scale: float | None
    fallback_scale: float | None
    ratio: float | None = None
    used_mode: str | None

    @property
    def used_scale(self) -> float | None:
        """The scale of the used mode: dataset_scale when 'dataset', else the fallback."""
        return self.dataset_scale if self.used_mode == "dataset" else self.fallback_scale


class SplitStats(Block):
    batch_mean_sum_intensity: float | None
    n_samples: int
    dataset_scale: float | None


class SplitIntensityStats(Block):
    train: SplitStats
    test: SplitStats
    train_vs_test_scale_ratio: float | None
    train_vs_test_deviation_pct: float | None
    deviation_exceeds_5pct: bool | None


class ComputePrecision(Block):
    """Training's compute precision and whether the device computes it natively
    (model/precision.py). native_bfloat16: None = cannot tell (flags unreadable)."""

    precision: str
    native_bfloat16: bool | None = None
    warning: str | None = None


class InferencePrecision(Block):
    """The precision inference ran the network in, and why (resolve_inference_precision)."""

    requested: str
    trained_precision: str
    compute_precision: str
    native_bfloat16: bool | None = None
    device: str | None = None
    reason: str


class Training(Block):
    """The trainer's result (train.trainer.TrainResult.to_dict)."""

    status: str | None = None
    epochs_completed: int
    early_stopped: bool = False
    final_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    nan_detected: bool = False
    first_nan_epoch: int | None = None
    first_nan_step: int | None = None
    history_path: str | None = None
    history_summary_path: str | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    samples_per_second: float | None = None
    train_seconds: float | None = None
    device: str | None = None
    scales: dict[str, Any] = Field(default_factory=dict)
    #: {precision, native_bfloat16, warning} (model/precision.py); absent in older runs
    precision: ComputePrecision | None = None


class InferenceSeconds(Block):
    """Wall time of the inference steps (seconds); always a mapping (never a bare number)."""

    total: float
    network: float | None = None
    grouping: float | None = None
    stitch: float | None = None
    twin_fix: float | None = None
    refine: float | None = None


class Inference(Block):
    groups_available: int
    groups_used: int
    group_limit: int | None
    patterns_used: int
    stitched_shape: list[int]
    stitch_window: int
    coverage_fraction: float
    amplitude: dict[str, Any] | None = None
    phase: dict[str, Any] | None = None
    patterns_per_second: float | None
    seconds: InferenceSeconds
    post_processing: dict[str, Any] | None = None
    #: the network's compute precision and why; absent in older runs
    precision: InferencePrecision | None = None


class GeometryBlock(Block):
    """The physical geometry of a file-loaded run (block ``geometry``, written from
    :class:`ptychotrace.io.geometry.Geometry`, whose field names these are). Lengths in metres,
    energy in eV; None = unknown. Simulated runs have no geometry block (object pixels only)."""

    source_format: str
    source_file: str | None = None
    photon_energy_eV: float | None = None
    wavelength_m: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_width_m: float | None = None
    detector_pixel_height_m: float | None = None
    N: int | None = None
    object_pixel_width_m: float | None = None
    object_pixel_height_m: float | None = None
    missing: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ConsistencySummary(Block):
    """The headline numbers of one reconstruction in consistency/consistency.json."""

    normalised_median: float | None
    fraction_beyond_bound: float | None
    relative_misfit_median: float | None


class DataConsistencyRef(Block):
    """Block ``data_consistency``: where the consistency record is, and its headline numbers
    (evaluate.consistency_record.record_run_consistency)."""

    path: str
    normalisation: str
    final: ConsistencySummary | None = None
    network_only: ConsistencySummary | None = None
    truth: ConsistencySummary | None = None


class RunMetadata(Record):
    """The whole run_metadata.json. Blocks are None when the run failed before setting them."""

    schema_version: str = RUN_METADATA_SCHEMA
    status: Literal["ok", "failed"]
    scenario: str
    timestamp: str
    finished_at: str | None = None
    elapsed_seconds: float
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    partial: bool | None = None
    failed_stage: str | None = None
    error: RunError | None = None
    config: dict[str, Any] | None = None
    cli_args: dict[str, Any] | None = None
    profile: Profile | None = None
    warnings: list[str] = Field(default_factory=list)
    provenance: Provenance | None = None
    counts: Counts | None = None
    probe: dict[str, Any] | None = None
    dataset_scale_info: DatasetScaleInfo | None = None
    split_intensity_stats: SplitIntensityStats | None = None
    measured_photons_per_pattern: dict[str, Any] | None = None
    training_labels: TrainingLabels | None = None
    label_vs_truth_analysis: LabelVsTruth | None = None
    forward_pass_diagnostics: dict[str, Any] | None = None
    training: Training | None = None
    inference: Inference | None = None
    prediction_scale: PredictionScale | None = None
    comparison: ComparisonHeadline | None = None
    comparison_network_only: dict[str, Any] | None = None
    geometry: GeometryBlock | None = None
    data_consistency: DataConsistencyRef | None = None
    training_corpus: dict[str, Any] | None = None
    artifacts: list[str] = Field(default_factory=list)
    artifacts_missing: list[str] | None = None

    @property
    def finished_ok(self) -> bool:
        """A complete, successful run (not a partial record)."""
        return self.status == "ok" and not self.partial
