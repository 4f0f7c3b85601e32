"""``ptychotrace infer``: predict the test split with a trained PINN and stitch the object."""

from __future__ import annotations

import argparse
from pathlib import Path

from .flags import add_config_flags, overrides_from_flags


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="reconstruct the test split with a trained model",
                       description="Predict every test group (or --group-limit), stitch the central "
                                   "window of each patch into the object frame and write "
                                   "amplitude.npy / phase.npy (float32), coverage.npy, PNGs and "
                                   "stats.json; with a ground truth in the dataset also "
                                   "comparison_metrics.json, by the same evaluation as 'run'.")
    p.add_argument("--model", required=True, help="run dir, train_outputs/ dir or checkpoint file")
    p.add_argument("--data", required=True, help="dataset .npz")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    add_config_flags(p, {"inference": "", "evaluation": ""},
                     title="inference and evaluation (default: the model's run settings)")
    p.add_argument("--device", default="auto")
    p.add_argument("--measurement-domain", choices=["counts", "amplitude"])
    p.set_defaults(handler=run)


def inference_settings(ckpt: dict, args: argparse.Namespace):
    """(InferenceConfig, EvaluationConfig): the checkpoint's run settings with the given flags on
    top (config.resolve_config), so ``infer`` on a run's model and data repeats the run's
    inference and evaluation."""
    from ..config import resolve_config

    cfg, _, _ = resolve_config(ckpt.get("config") or {}, overrides=overrides_from_flags(args))
    return cfg.inference, cfg.evaluation


def write_without_truth(out: Path, pred) -> dict:
    """A prediction of data without ground truth: the arrays, masked PNGs and stats.json."""
    from ..stages.reconstruction import write_object
    from ..telemetry.writers import write_json, write_npy

    write_object(out, pred.amplitude, pred.phase, pred.covered, "predicted")
    write_npy(out / "coverage_weight.npy", pred.weight)
    stats = {"prediction": pred.stats(), "comparison": None,
             "comparison_note": "the dataset has no ground truth (objectGuess)"}
    write_json(out / "stats.json", stats)
    return stats


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.dataset import load_dataset
    from ..format import format_value
    from ..infer.predict import predict
    from ..stages.prediction import evaluate_and_write
    from ..telemetry.writers import write_npy
    from ..train.checkpoint import load_model
    from ..train.distributed import resolve_device
    from ..train.model_card import check_compatible

    model = load_model(args.model, resolve_device(args.device), which=args.checkpoint)
    ds = load_dataset(args.data, measurement_domain=args.measurement_domain)
    check_compatible(model.checkpoint, ds, data_label=str(args.data))  # refuses before writing
    inf, ev = inference_settings(model.checkpoint, args)
    pred = predict(model, ds, inf)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_npy(out / "coverage.npy", pred.covered.astype(np.float32))
    write_npy(out / "weights.npy", pred.weight)
    cmp = None
    if ds.obj is not None:
        cmp = evaluate_and_write(model, pred, ds, ev, out, out).comparison
    else:
        write_without_truth(out, pred)
    print(f"wrote {out}: {pred.n_patterns} patterns from {pred.n_groups} groups, coverage "
          f"{format_value(pred.coverage_fraction, digits=3)}, "
          f"{format_value(pred.patterns_per_second, digits=3)} patterns/s")
    if cmp is not None:
        a, ls = cmp.amplitude, cmp.prediction_scale.least_squares
        print(f"  evaluated region: amplitude pearson {format_value(a.pearson_r)}, ssim "
              f"{format_value(a.ssim)}, mae {format_value(a.mae)}, least-squares scale "
              f"{format_value(ls.value if ls else None)} (comparison_metrics.json)")
    return 0
