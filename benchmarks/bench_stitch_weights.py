"""Network-only quality with the uniform and the consistency stitch weights (issue #12).

    python benchmarks/bench_stitch_weights.py --scenario gs1_ideal --group-count 6000 \
        --runs /tmp/sn/gs1_ideal_plain_s42_dense4_cos30_bf16_mae ... \
        --output benchmarks/results/stitch_weights.json

For every trained study run (``study_network.py`` directories): simulate the scenario's data
exactly as the study did (same ``--base-total-images``, ``--group-count`` and ``--set`` data
items), load the *best* checkpoint, predict the test split network-only (``refine_steps 0``) and
score it (bench_pinn.score: covered region, no rescale, SSIM data range = truth max - min) once
with ``inference.stitch_weights`` uniform and once with consistency. The covered region is the
same for both (checked). Rows are appended to ``--output`` (one per run; a later row of the same
run and scenario replaces an earlier one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402
from bench_pinn import score  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.infer.predict import predict  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402
from ptychotrace.telemetry.writers import write_json  # noqa: E402
from ptychotrace.train.checkpoint import load_model  # noqa: E402
from study_network import data_overrides  # noqa: E402


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--base-total-images", type=int, default=500)
    ap.add_argument("--group-count", type=int, default=6000)
    ap.add_argument("--set", nargs="*", default=[], help="the study's --set items (only the "
                    "simulation.*, grouping.* and inference.* ones are used)")
    ap.add_argument("--runs", nargs="+", required=True, help="study run directories")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="")
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" /
                                            "stitch_weights.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, _, _ = resolve_scenario(args.scenario, {
        "simulation.base_total_images": args.base_total_images,
        "grouping.group_count": args.group_count, **data_overrides(args.set)})
    ds, _ = simulate(cfg.simulation, scenario=args.scenario)
    data_range = float(np.ptp(np.abs(ds.obj)))
    rows = []
    for run in args.runs:
        model = load_model(run, which="best")
        row = {"scenario": args.scenario, "run": str(run), "command": " ".join(sys.argv),
               "network": {k: model.checkpoint["network"].get(k) for k in
                           ("N", "gridsize", "object_support", "precision")},
               "loss_weights": model.checkpoint["config"]["training"].get("loss_weights"),
               "training_seed": model.checkpoint["config"]["training"].get("seed")}
        covered = None
        for weights in ("uniform", "consistency"):
            icfg = cfg.inference.model_copy(update={"refine_steps": 0,
                                                    "stitch_weights": weights})
            t0 = time.perf_counter()
            pred = predict(model, ds, icfg)
            seconds = time.perf_counter() - t0
            if covered is None:
                covered = pred.covered
            elif not np.array_equal(covered, pred.covered):
                raise AssertionError("the covered region changed with the stitch weights")
            row[weights] = {**score(pred.obj, pred.covered, ds.obj, data_range),
                            "stitch_seconds": pred.seconds.get("stitch"),
                            "predict_seconds": seconds, "patterns": int(pred.n_patterns),
                            "coverage_fraction": pred.coverage_fraction,
                            "fit": pred.steps.get("stitch_weights")}
        u, c = row["uniform"], row["consistency"]
        print(f"{Path(run).name}: SSIM uniform {u['ssim']:.4f} -> consistency {c['ssim']:.4f} "
              f"(P {u['pearson']:.4f} -> {c['pearson']:.4f}; LS scale {c['lsq_scale']:.3f})",
              flush=True)
        rows.append(row)
    out = Path(args.output)
    old = json.loads(out.read_text()) if out.exists() else {"rows": []}
    keep = [r for r in old["rows"] if (r["scenario"], r["run"]) not in
            {(r2["scenario"], r2["run"]) for r2 in rows}]
    machine = describe_machine()
    machine["note"] = args.note
    write_json(out, {"benchmark": "stitch_weights", "machine": machine, "rows": keep + rows})
    return rows


if __name__ == "__main__":
    main()
