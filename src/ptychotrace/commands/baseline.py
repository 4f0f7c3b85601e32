"""``ptychotrace baseline``: iterative reconstruction of the test split with the known probe and
positions (the classical reference next to the PINN; see docs/baseline.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..records.comparison import COMPARISON_FILE
from ..stages.baseline import OUTPUT_FILES
from .common import positive_int
from .flags import add_config_flags, overrides_from_flags

__all__ = ["COMPARISON_FILE", "OUTPUT_FILES", "add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline", help="iterative reconstruction (known probe and positions) as the reference",
        description="Reconstruct the object from the test split's patterns with the dataset's "
                    "probe and positions (LSQ-ML or rPIE on ptychotrace's own forward model; "
                    "CDTools with the optional 'baseline' extra). Writes amplitude.npy / "
                    "phase.npy (float32, object frame), coverage.npy, illumination.npy, PNGs, "
                    "stats.json, and comparison_metrics.json when the file holds a ground truth.")
    p.add_argument("--data", required=True, help="data file: NPZ (ptychotrace or PtychoPINN), CXI, "
                                                 "ptychodus diffraction.h5 (see the data-file flags)")
    p.add_argument("--output-dir", required=True, help="output directory (must not exist or be "
                                                         "empty unless --force)")
    add_config_flags(p, {"baseline": ""}, title="baseline (config section 'baseline')")
    p.add_argument("--stitch-window", type=positive_int, default=20,
                   help="central M x M window that defines the covered region (as the PINN's)")
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--force", action="store_true",
                   help="move an existing non-empty output directory aside (nothing is deleted)")
    p.add_argument("--no-progress", action="store_true")
    from .inspect import add_load_flags

    add_load_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import BaselineConfig, ConfigError
    from ..data.dataset import file_sha256
    from ..format import format_value
    from ..records.baseline import DatasetRef
    from ..stages.baseline import run_baseline
    from .common import load_data_from_args, progress_bar

    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output-dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"output directory {out} already exists and is not empty; choose "
                              "another --output-dir, or pass --force to move it aside")
    given = {k.removeprefix("baseline."): v for k, v in overrides_from_flags(args).items()}
    try:
        cfg = BaselineConfig(**given)
    except ValueError as exc:
        raise ConfigError(f"baseline flags: {exc}") from exc
    ds, _ = load_data_from_args(args)     # every format; refused before anything is written
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with progress_bar(f"baseline {cfg.algorithm}", enabled=not args.no_progress) as update:
        # seed: 0 unless --seed is given (the command's historical default)
        outcome = run_baseline(ds, out, cfg, stitch_window=args.stitch_window, seed=0,
                               progress=update,
                               dataset=DatasetRef(path=str(args.data),
                                                  sha256=file_sha256(args.data)),
                               force=args.force)
    result, meta = outcome.result, outcome.metadata
    if meta.previous_contents_moved_to:
        print(f"moved the previous {out} aside to {meta.previous_contents_moved_to}")
    print(f"wrote {out}: {result.algorithm} ({result.likelihood}) on {result.n_patterns} "
          f"{result.split} patterns, {result.iterations} iterations (returned iterate "
          f"{result.best_iteration}; {result.stop_reason}) in "
          f"{format_value(result.wall_time_s, 's', 3)}, "
          f"{format_value(result.patterns_per_second, digits=3)} pattern updates/s, coverage "
          f"{format_value(float(result.covered.mean()), digits=3)}")
    if outcome.comparison is not None:
        a = outcome.comparison.amplitude
        print(f"  evaluated region (covered & illuminated): amplitude pearson "
              f"{format_value(a.pearson_r)}, ssim {format_value(a.ssim)}")
    else:
        print("  no ground truth in the data: nothing to compare against (stats.json "
              "'comparison' is null)")
    return 0
