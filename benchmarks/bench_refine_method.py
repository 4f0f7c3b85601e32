"""The refinement after the network: LSQ-ML warm start (default) against Adam, on trained models.

    .venv/bin/python benchmarks/bench_refine_method.py \\
        --case NAME SCENARIO RUN_DIR [KEY=JSON ...] [--case ...] --output results/refine_method.json

Each case is a trained run (its ``train_outputs`` directory, or a ``ptychotrace run`` output
directory) and the scenario overrides that rebuild its test data (the same ones it was trained
with: probe file, dose, scan, grouping). Its test split is reconstructed four ways, each scored
like every network number here (``bench_pinn.score``: covered region, no rescale, no
registration) and timed in the same process:

- the network alone (``refine_steps`` 0);
- the network, then ``inference.refine_method`` ``adam`` and ``lsqml`` (each at the config's
  ``refine_steps``, hold-out, patience, refit and low-pass);
- the iterative baseline from a flat start on the same patterns with the same number of
  iterations and hold-out rules (what the refinement's start is worth).

The baseline zeroes the pixels its scan barely lights, so every method is also scored on the
common region (covered by the network's stitch and lit for the baseline), ``common_region``:
that is the like-for-like comparison, and what the printed line shows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, parse_overrides, record_result  # noqa: E402
from bench_pinn import score  # noqa: E402
from ptychotrace.baseline import reconstruct  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.infer.predict import predict  # noqa: E402
from ptychotrace.infer.refine import only_these_as_test  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402
from ptychotrace.train.checkpoint import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent
KEYS = ("pearson", "ssim", "lsq_scale", "phase_mae")


def model_dir(path: Path) -> Path:
    """A run's checkpoint directory: ``train_outputs`` inside a run directory, else the path."""
    return path / "train_outputs" if (path / "train_outputs").is_dir() else path


def case_rows(name: str, scenario: str, run: Path, overrides: dict) -> dict:
    cfg, _, _ = resolve_scenario(scenario, overrides)
    ds, _ = simulate(cfg.simulation, scenario=scenario)
    model = load_model(model_dir(run), which="best")
    rng = float(np.ptp(np.abs(ds.obj)))
    row = {"case": name, "scenario": scenario, "run": str(run), "overrides": overrides,
           "refine_steps": int(cfg.inference.refine_steps), "methods": {}}
    variants = {"network_only": {"refine_steps": 0},
                "adam": {"refine_method": "adam"}, "lsqml": {"refine_method": "lsqml"}}
    covered, used, objects = None, None, {}
    for label, update in variants.items():
        t0 = time.perf_counter()
        pred = predict(model, ds, cfg.inference.model_copy(update=update))
        seconds = time.perf_counter() - t0
        covered, used = pred.covered, np.unique(pred.pattern_index)
        objects[label] = pred.obj
        rec = pred.steps["refine"]
        row["methods"][label] = {
            **{k: score(pred.obj, pred.covered, ds.obj, rng)[k] for k in KEYS},
            "seconds": seconds, "refine_seconds": pred.seconds.get("refine", 0.0),
            "steps": rec.get("steps"), "best_step": rec.get("best_step"),
            "refit_steps": rec.get("refit_steps"), "smooth_sigma_px": rec.get("smooth_sigma_px"),
            "stop_reason": rec.get("stop_reason")}
    # the baseline on exactly the patterns the network reconstructed (group_limit, groups)
    t0 = time.perf_counter()
    flat = reconstruct(only_these_as_test(ds, used), "test", iterations=max(1, row["refine_steps"]),
                       holdout=float(cfg.inference.refine_holdout),
                       patience=cfg.inference.refine_patience,
                       window=int(cfg.inference.stitch_window))
    region = covered & flat.covered & flat.illuminated   # the baseline zeroes unlit pixels
    row["methods"]["baseline_flat"] = {
        **{k: score(flat.obj, region, ds.obj, rng)[k] for k in KEYS},
        "seconds": time.perf_counter() - t0, "steps": flat.iterations,
        "best_step": flat.best_iteration, "stop_reason": flat.stop_reason,
        "region_note": "the network's covered region where the baseline lights it",
        "region_fraction_of_covered": float(region.sum() / max(1, covered.sum()))}
    # every method again on that common region: the like-for-like comparison with the baseline
    for label, obj in objects.items():
        row["methods"][label]["common_region"] = {k: score(obj, region, ds.obj, rng)[k]
                                                  for k in KEYS}
    row["methods"]["baseline_flat"]["common_region"] = {
        k: row["methods"]["baseline_flat"][k] for k in KEYS}
    line = " | ".join(f"{k} {v['common_region']['ssim']:.3f} ({v['seconds']:.1f} s)"
                      for k, v in row["methods"].items())
    print(f"{name}: {line}", flush=True)
    return row


def parse_case(items: list[str]) -> tuple[str, str, Path, dict]:
    if len(items) < 3:
        raise SystemExit(f"--case needs NAME SCENARIO RUN_DIR [KEY=JSON ...], got {items}")
    over = parse_overrides(items[3:])
    run = Path(items[2])
    if not run.exists():
        raise SystemExit(f"--case {items[0]}: {run} does not exist")
    return items[0], items[1], run, over


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", nargs="+", action="append", required=True,
                    metavar="NAME SCENARIO RUN_DIR [KEY=JSON]")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="")
    ap.add_argument("--output", default=str(ROOT / "results" / "refine_method.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [parse_case(c) for c in args.case]
    t0 = time.perf_counter()
    rows = [case_rows(*c) for c in cases]
    record_result({"benchmark": "refine_method", "command": " ".join(sys.argv),
                   "evaluation": "network's covered region of the test split, no rescale "
                                 "(bench_pinn.score); seconds are the whole predict() call",
                   "rows": rows, "note": args.note, "wall_seconds": time.perf_counter() - t0,
                   "machine": describe_machine()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
