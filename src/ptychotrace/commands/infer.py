"""``ptychotrace infer``: predict the test split with a trained PINN and stitch the object."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="reconstruct the test split with a trained model",
                       description="Predict every test group (or --group-limit), stitch the central "
                                   "window of each patch into the object frame and write "
                                   "amplitude.npy / phase.npy (float32), coverage.npy, PNGs and "
                                   "stats.json (with a comparison on the covered region when the "
                                   "dataset holds ground truth).")
    p.add_argument("--model", required=True, help="run dir, train_outputs/ dir or checkpoint file")
    p.add_argument("--data", required=True, help="dataset .npz")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--group-limit", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="groups per forward pass")
    p.add_argument("--stitch-window", type=positive_int, help="central M x M kept per patch")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--twin-fix", dest="twin_fix", action="store_true", default=None,
                   help="overlap-consistent twin choice for symmetric probes (default on)")
    p.add_argument("--no-twin-fix", dest="twin_fix", action="store_false")
    p.add_argument("--refine-steps", type=int, help="physics refinement steps of the stitched "
                                                     "object on the test data (0 = off)")
    p.add_argument("--refine-holdout", type=float, help="fraction of the photons held out to stop "
                   "the refinement early and keep its best iterate (0 = off; default 0.1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--measurement-domain", choices=["counts", "amplitude"])
    p.set_defaults(handler=run)


def write_outputs(out: Path, pred, ds, evaluation: dict | None = None) -> dict:
    """amplitude.npy, phase.npy, coverage.npy, weights.npy, PNGs and stats.json under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..telemetry.writers import atomic_path, write_json, write_npy

    write_npy(out / "amplitude.npy", pred.amplitude)
    write_npy(out / "phase.npy", pred.phase)
    write_npy(out / "coverage.npy", pred.covered.astype(np.float32))
    write_npy(out / "weights.npy", pred.weight)
    for name, img, cmap in (("amplitude", pred.amplitude, "gray"), ("phase", pred.phase, "twilight")):
        vals = img[pred.covered]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        with atomic_path(out / f"{name}.png") as tmp:
            plt.imsave(tmp, np.where(pred.covered, img, lo), cmap=cmap, vmin=lo, vmax=hi)
    stats = {"prediction": pred.stats(), "comparison": evaluation}
    write_json(out / "stats.json", stats)
    return stats


def compare_with_truth(pred, ds) -> dict | None:
    """Short comparison on the covered region (Pearson, MAE, least-squares scale, SSIM), no rescale."""
    if ds.obj is None:
        return None
    import numpy as np

    from ..evaluate.metrics import compare_reconstruction

    truth = ds.obj
    amp_range = float(np.ptp(np.abs(truth)))
    full = compare_reconstruction(pred.obj, truth, pred.covered, register=False,
                                  amplitude_data_range=amp_range)
    a = full["amplitude"]
    cov = pred.covered
    p, t = pred.amplitude[cov].astype(np.float64), np.abs(truth)[cov].astype(np.float64)
    ls = float((p * t).sum() / (p * p).sum()) if (p * p).sum() > 0 else None
    return {"amplitude": {k: a.get(k) for k in ("pearson_r", "mae", "rmse", "ssim", "psnr")},
            "amplitude_ssim_data_range": amp_range, "least_squares_scale": ls,
            "phase": {k: full["phase"].get(k) for k in ("mae", "rmse", "pearson_r")},
            "coverage_fraction": full.get("coverage_fraction"), "registration": "none (object frame)",
            "note": "covered region, no amplitude rescale (evaluate.metrics.compare_reconstruction)"}


def run(args: argparse.Namespace) -> int:
    from ..config import InferenceConfig
    from ..data.dataset import load_dataset
    from ..infer.predict import predict
    from ..train.checkpoint import load_model
    from ..train.distributed import resolve_device
    from ..train.model_card import check_compatible

    model = load_model(args.model, resolve_device(args.device), which=args.checkpoint)
    ckpt = model.checkpoint
    ds = load_dataset(args.data, measurement_domain=args.measurement_domain)
    check_compatible(ckpt, ds, data_label=str(args.data))  # refuses before anything is written
    base = InferenceConfig.model_validate(ckpt["config"].get("inference") or {})
    update = {k: v for k, v in {"batch_size": args.batch_size, "stitch_window": args.stitch_window,
                                "twin_fix": args.twin_fix, "refine_steps": args.refine_steps,
                                "refine_holdout": args.refine_holdout,
                                "group_limit": args.group_limit}.items() if v is not None}
    cfg = InferenceConfig.model_validate({**base.model_dump(), **update})
    pred = predict(model, ds, cfg)
    evaluation = compare_with_truth(pred, ds)
    out = Path(args.output_dir)
    write_outputs(out, pred, ds, evaluation)
    print(f"wrote {out}: {pred.n_patterns} patterns from {pred.n_groups} groups, coverage "
          f"{pred.coverage_fraction:.3f}, {pred.patterns_per_second:.1f} patterns/s")
    if evaluation:
        a = evaluation["amplitude"]
        print(f"  covered region: amplitude pearson {a['pearson_r']:.4f}, ssim {a['ssim']:.4f}, "
              f"mae {a['mae']:.4g}, least-squares scale {evaluation['least_squares_scale']:.4f}")
    return 0
