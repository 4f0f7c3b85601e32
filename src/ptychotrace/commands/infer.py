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
    p.add_argument("--data", required=True, help="data file: NPZ (ptychotrace or PtychoPINN), CXI, "
                                                 "ptychodus diffraction.h5 (see the data-file "
                                                 "flags); its N must be the model's")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    add_config_flags(p, {"inference": "", "evaluation": ""},
                     title="inference and evaluation (default: the model's run settings)")
    p.add_argument("--device", default="auto")
    p.add_argument("--block-stride", type=int, default=None, metavar="K",
                   help="raster-block models only: test block origins every K-th raster point "
                        "(default: the model's; e.g. 5 on a 2-px raster gives the reference "
                        "PINN's 10-px test layout)")
    p.add_argument("--block-step-px", type=float, default=None, metavar="PX",
                   help="raster-block models only: distance between a block's points, pixels "
                        "(default: the model's; blocks with another step than the trained "
                        "one are refused: the network learned one block geometry)")
    from .inspect import add_load_flags

    add_load_flags(p)
    p.set_defaults(handler=run)


def inference_settings(ckpt: dict, args: argparse.Namespace):
    """(InferenceConfig, EvaluationConfig): the checkpoint's run settings with the given flags on
    top (config.resolve_config), so ``infer`` on a run's model and data repeats the run's
    inference and evaluation."""
    from ..config import resolve_config

    cfg, _, _ = resolve_config(ckpt.get("config") or {}, overrides=overrides_from_flags(args))
    return cfg.inference, cfg.evaluation


def write_without_truth(out: Path, pred, ds=None) -> dict:
    """A prediction of data without ground truth: the arrays, masked PNGs and stats.json, whose
    ``comparison`` block says there is no truth (as ``run``'s: scenarios/no_truth.py)."""
    from ..scenarios.no_truth import NO_TRUTH_REASON
    from ..stages.reconstruction import object_pixel_size_m, write_object
    from ..telemetry.writers import write_json, write_npy

    write_object(out, pred.amplitude, pred.phase, pred.covered, "predicted (no ground truth)",
                 pixel_size_m=None if ds is None else object_pixel_size_m(ds))   # scale bar
    write_npy(out / "coverage_weight.npy", pred.weight)
    stats = {"prediction": pred.stats(), "coverage_fraction": float(pred.covered.mean()),
             "comparison": {"available": False, "reason": NO_TRUTH_REASON}}
    write_json(out / "stats.json", stats)
    return stats


def write_consistency(out: Path, ds, pred, model) -> dict:
    """The data-consistency record (consistency/consistency.json, as in a run: how well the
    reconstruction explains the measured counts, with or without a truth); its summary block is
    added to stats.json."""
    import json

    from ..evaluate.consistency_record import BlockCollector, record_run_consistency
    from ..stages.evaluate import activation_bound
    from ..telemetry.writers import write_json

    rec = BlockCollector()
    record_run_consistency(rec, out, ds, pred, activation_bound(model))
    block = rec.blocks["data_consistency"]
    stats_path = out / "stats.json"
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    write_json(stats_path, {**stats, "data_consistency": block})
    return block


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..format import format_value
    from ..infer.predict import predict, regroup_test_blocks
    from ..model.precision import precision_note
    from ..stages.prediction import evaluate_and_write
    from ..telemetry.writers import write_npy
    from ..train.checkpoint import load_model
    from ..train.distributed import resolve_device
    from ..train.model_card import check_compatible
    from .common import load_data_from_args

    model = load_model(args.model, resolve_device(args.device), which=args.checkpoint)
    # refused here, before any data is read or anything written
    ckpt = regroup_test_blocks(model.checkpoint, args.block_stride, args.block_step_px)
    ds, _ = load_data_from_args(args)          # every format; refused before anything is written
    check_compatible(model.checkpoint, ds, data_label=str(args.data))  # refuses before writing
    inf, ev = inference_settings(model.checkpoint, args)
    pred = predict(model, ds, inf, ckpt=ckpt)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_npy(out / "coverage.npy", pred.covered.astype(np.float32))
    write_npy(out / "weights.npy", pred.weight)
    cmp = None
    if ds.obj is not None:
        cmp = evaluate_and_write(model, pred, ds, ev, out, out).comparison
    else:
        write_without_truth(out, pred, ds)
    dc = write_consistency(out, ds, pred, model)
    print(f"wrote {out}: {pred.n_patterns} patterns from {pred.n_groups} groups, coverage "
          f"{format_value(pred.coverage_fraction, digits=3)}, "
          f"{format_value(pred.patterns_per_second, digits=3)} patterns/s")
    note = precision_note(pred.precision)
    if note:
        print(f"  {note}")
    grp = pred.grouping
    if grp.get("method") == "raster_blocks":
        print(f"  grouped as {grp['gridsize']}x{grp['gridsize']} raster blocks, "
              f"{format_value(grp['block_step_px'], digits=3)} px apart, origins every "
              f"{grp['block_stride']} raster point(s) (stats.json 'prediction.grouping')")
    if cmp is not None:
        a, ls = cmp.amplitude, cmp.prediction_scale.least_squares
        print(f"  evaluated region: amplitude pearson {format_value(a.pearson_r)}, ssim "
              f"{format_value(a.ssim)}, mae {format_value(a.mae)}, least-squares scale "
              f"{format_value(ls.value if ls else None)} (comparison_metrics.json)")
    else:
        print("  no ground truth in the data: nothing to compare against (stats.json "
              "'comparison')")
    final = dc.get("final") or {}
    print(f"  data consistency: median normalised deviance "
          f"{format_value(final.get('normalised_median'))} ({dc['path']})")
    return 0
