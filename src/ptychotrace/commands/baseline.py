"""``ptychotrace baseline``: iterative reconstruction of the test split with the known probe and
positions (the classical reference next to the PINN; see docs/baseline.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_int

#: Files written under --output-dir.
OUTPUT_FILES = ("amplitude.npy", "phase.npy", "coverage.npy", "illumination.npy", "amplitude.png",
                "phase.png", "stats.json")
COMPARISON_FILE = "comparison_metrics.json"


def add_parser(sub) -> None:
    from ..baseline.solver import (
        ALGORITHMS,
        DEFAULT_ALGORITHM,
        DEFAULT_HOLDOUT,
        LIKELIHOODS,
        LSQ_DAMPING,
        LSQ_DAMPING_PHOTONS,
    )

    p = sub.add_parser(
        "baseline", help="iterative reconstruction (known probe and positions) as the reference",
        description="Reconstruct the object from the test split's patterns with the dataset's "
                    "probe and positions (LSQ-ML or rPIE on ptychotrace's own forward model; "
                    "CDTools with the optional 'baseline' extra). Writes amplitude.npy / "
                    "phase.npy (float32, object frame), coverage.npy, illumination.npy, PNGs, "
                    "stats.json, and comparison_metrics.json when the file holds a ground truth.")
    p.add_argument("--data", required=True, help="dataset .npz")
    p.add_argument("--output-dir", required=True, help="output directory (must not exist or be "
                                                         "empty unless --force)")
    p.add_argument("--iterations", type=positive_int,
                   help="maximum iterations (epochs); default per algorithm")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=DEFAULT_ALGORITHM)
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="amplitude")
    p.add_argument("--group-limit", type=positive_int,
                   help="use only the first K patterns of the split (dataset order)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help="fraction of the photons held out for early stopping (0 = off)")
    p.add_argument("--damping-photons", type=float, default=LSQ_DAMPING_PHOTONS,
                   help="LSQ-ML step damping floor in photons of summed illumination (0 = none; "
                        "docs/baseline.md)")
    p.add_argument("--damping", type=float, default=LSQ_DAMPING,
                   help="LSQ-ML relative preconditioner damping, pty-chi's form (0 = none)")
    p.add_argument("--smooth", action="store_true",
                   help="Gaussian low-pass of the result, width chosen by the held-out deviance "
                        "(the PINN refinement's rule; off by default: plain LSQ-ML / rPIE)")
    p.add_argument("--stitch-window", type=positive_int, default=20,
                   help="central M x M window that defines the covered region (as the PINN's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--measurement-domain", choices=["counts", "amplitude"],
                   help="domain of diff3d for files without metadata")
    p.add_argument("--force", action="store_true",
                   help="move an existing non-empty output directory aside (nothing is deleted)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def comparison(result, truth) -> dict:
    """The shared evaluation recipe (evaluate.metrics.evaluate_reconstruction) on the evaluation
    region ``covered & illuminated``, with the default evaluation settings, exactly as ``run``
    evaluates the PINN, so the two comparison_metrics.json files can stand side by side."""
    from ..evaluate.metrics import evaluate_reconstruction

    # The known physical probe fixes the baseline's amplitude scale: a recorded scale is 1.
    return evaluate_reconstruction(result.obj, truth, result.covered, result.illuminated,
                                   recorded_scale=1.0)


def write_outputs(out: Path, result, dataset_path: str, truth=None) -> dict:
    """Arrays, PNGs, stats.json and (with a truth) comparison_metrics.json under ``out``."""
    import numpy as np

    from ..report.figures import image_png
    from ..telemetry.writers import write_bytes, write_json, write_npy

    amp = np.abs(result.obj).astype(np.float32)
    phase = np.angle(result.obj).astype(np.float32)
    write_npy(out / "amplitude.npy", amp)
    write_npy(out / "phase.npy", phase)
    write_npy(out / "coverage.npy", result.covered.astype(np.float32))
    write_npy(out / "illumination.npy", result.illumination)
    shown = result.covered_illuminated if result.covered_illuminated.any() else result.illuminated
    for name, img, kind, unit in (("amplitude", amp, "amplitude", "transmission"),
                                  ("phase", phase, "phase", "rad")):
        vals = img[shown]
        limits = (float(vals.min()), float(vals.max())) if vals.size else None
        png = image_png(np.where(result.illuminated, img, np.nan),
                        f"baseline {name} ({result.algorithm}, iterate {result.best_iteration})", kind,
                        unit, limits=limits if kind == "amplitude" else (-np.pi, np.pi))
        if png is not None:
            write_bytes(out / f"{name}.png", png)
    a_cov = amp[result.covered]
    stats = {
        "method": "iterative baseline (known probe and positions)",
        "data": str(dataset_path),
        "reconstruction": result.summary(),
        "amplitude_covered": {"mean": float(a_cov.mean()) if a_cov.size else None,
                              "std": float(a_cov.std()) if a_cov.size else None,
                              "min": float(a_cov.min()) if a_cov.size else None,
                              "max": float(a_cov.max()) if a_cov.size else None},
        "files": {"amplitude.npy": "|object|, float32, object frame (H, W), 0 where not illuminated",
                  "phase.npy": "angle(object), float32, radians",
                  "coverage.npy": "1 on the covered region (PINN-consistent), float32",
                  "illumination.npy": "summed probe intensity scatter(|P|^2), photons, float32"},
    }
    cmp = None
    if truth is not None:
        cmp = comparison(result, truth)
        write_json(out / COMPARISON_FILE, cmp)
        stats["comparison"] = {k: cmp["amplitude"].get(k) for k in ("pearson_r", "ssim", "mae")}
    write_json(out / "stats.json", stats)
    return {"stats": stats, "comparison": cmp}


def run(args: argparse.Namespace) -> int:
    from ..baseline import reconstruct
    from ..data.dataset import load_dataset
    from ..telemetry.recorder import prepare_run_dir
    from .common import progress_bar

    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output-dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"output directory {out} already exists and is not empty; choose "
                              "another --output-dir, or pass --force to move it aside")
    ds = load_dataset(args.data, measurement_domain=args.measurement_domain)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not 0 <= args.holdout < 1:
        raise ValueError(f"--holdout must be in [0, 1), got {args.holdout}")
    for flag, value in (("--damping", args.damping), ("--damping-photons", args.damping_photons)):
        if not 0 <= value < float("inf"):
            raise ValueError(f"{flag} must be finite and >= 0, got {value}")
    with progress_bar(f"baseline {args.algorithm}", enabled=not args.no_progress) as update:
        result = reconstruct(ds, split=args.split, iterations=args.iterations,
                             algorithm=args.algorithm, group_limit=args.group_limit,
                             seed=args.seed, progress=update, likelihood=args.likelihood,
                             holdout=args.holdout, window=args.stitch_window,
                             smooth=args.smooth, damping=args.damping,
                             damping_photons=args.damping_photons)
    backup = prepare_run_dir(out, force=args.force)
    if backup is not None:
        print(f"moved the previous {out} aside to {backup}")
    written = write_outputs(out, result, args.data, ds.obj)
    s = result.summary()
    print(f"wrote {out}: {result.algorithm} ({result.likelihood}) on {result.n_patterns} "
          f"{result.split} patterns, {result.iterations} iterations (returned iterate "
          f"{result.best_iteration}; {result.stop_reason}) in {result.wall_time_s:.1f} s, "
          f"{s['patterns_per_second']:.0f} pattern updates/s, coverage {s['coverage_fraction']:.3f}")
    cmp = written["comparison"]
    if cmp is not None:
        a = cmp["amplitude"]
        line = f"  covered region: amplitude pearson {a.get('pearson_r')}, ssim {a.get('ssim')}"
        ci = cmp.get("covered_illuminated")
        if ci:
            line += (f"; covered & illuminated: pearson {ci['amplitude'].get('pearson_r')}, "
                     f"ssim {ci['amplitude'].get('ssim')}")
        print(line)
    return 0
