"""LSQ-ML in minibatches (pty-chi's default batching) against our full-batch LSQ-ML (issue #12).

    python benchmarks/bench_baseline_batch.py --dose 1e4 --seeds 42 43 44 --batch-sizes full 100 50 25

gs1_ideal's test split simulated at ``--dose`` photons per pattern for each simulation seed;
``reconstruct(ds, split="test", algorithm="lsqml", batch_size=...)`` with every other setting at
its default (damping floor 2 photons, hold-out 0.1, patience 10, refit), seed 0, one torch
thread; scored with the baseline stage's evaluation (covered & illuminated, registration, no
rescale). Amplitude SSIM / Pearson per row, written to ``--output``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.baseline.solver import reconstruct  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402
from ptychotrace.stages.evaluate import evaluate  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dose", type=float, default=1e4, help="photons per pattern")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--batch-sizes", nargs="+", default=["full", "100", "50", "25"],
                    help="'full' (one batch of all patterns) or patterns per update")
    ap.add_argument("--note", default="")
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" /
                                            "baseline_minibatch.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [None if b == "full" else int(b) for b in args.batch_sizes]
    rows = []
    for seed in args.seeds:
        cfg, _, _ = resolve_scenario("gs1_ideal", {"simulation.nphotons": args.dose,
                                                   "simulation.sim_seed": seed})
        ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
        for bs in sizes:
            t0 = time.perf_counter()
            res = reconstruct(ds, split="test", algorithm="lsqml", batch_size=bs, seed=0)
            amp = evaluate(res.obj, ds.obj, res.covered, res.illuminated,
                           recorded_scale=1.0).amplitude
            rows.append({"dose": args.dose, "sim_seed": seed, "batch_size": bs,
                         "ssim": amp.ssim, "pearson": amp.pearson_r,
                         "iterations": res.iterations, "best": res.best_iteration,
                         "refit": res.refit_iterations,
                         "seconds": time.perf_counter() - t0,
                         "mean_step_first_epochs": res.step_history[:6]})
            print(f"seed {seed} batch {bs or 'full'}: SSIM {amp.ssim:.4f} P {amp.pearson_r:.4f} "
                  f"(best iterate {res.best_iteration})", flush=True)
    machine = describe_machine()
    machine["note"] = args.note
    return record_result({"benchmark": "baseline_minibatch", "scenario": "gs1_ideal",
                          "split": "test", "command": " ".join(sys.argv), "rows": rows,
                          "machine": machine}, args.output)


if __name__ == "__main__":
    main()
