"""The 'backprop' input on its own: how good is the one-step physical estimate without a network?

    .venv/bin/python benchmarks/bench_backprop_estimate.py      # results/backprop_estimate.json

For each scenario and test-split size: simulate the scenario's data (1e9 photons, its probe),
form ``BackpropInput``'s estimate of every test pattern (measured amplitudes with a flat object's
far-field phase, propagated back, Wiener-divided by the probe; model/network.py) for each
regulariser ``eps`` (relative to max |P|^2), stitch the patches with the one stitcher (the
scenario's 20-px window) and score them like a network's output (bench_pinn.score: covered
region, no rescale, SSIM data range = the truth amplitude's max - min). No training, no overlap
information: the floor a network with this input starts from (docs/benchmarks.md, "A physical
first guess").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from bench_pinn import score  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.model.network import BACKPROP_EPS, BackpropInput  # noqa: E402
from ptychotrace.physics.stitching import stitch_to_object_frame  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent


def stitched_test_score(ds, patches: torch.Tensor, window: int) -> dict:
    """Score of test-split patches (P, N, N) complex, stitched with the one stitcher like a
    network's output (bench_pinn.score: covered region, no rescale)."""
    test = ds.indices("test")
    st = stitch_to_object_frame(patches, torch.as_tensor(ds.xcoords[test]),
                                torch.as_tensor(ds.ycoords[test]), ds.obj.shape, window)
    return score(st.image.numpy(), st.covered.numpy(), ds.obj, float(np.ptp(np.abs(ds.obj))))


def estimate_score(ds, eps: float, window: int) -> dict:
    """Score of the stitched one-step estimates of the test split."""
    test = ds.indices("test")
    est = BackpropInput(ds.probe, 1.0, eps=eps)(torch.sqrt(torch.as_tensor(ds.counts[test]))[:, None])
    return {**stitched_test_score(ds, torch.complex(est[:, 0], est[:, 1]), window),
            "test_patterns": int(len(test))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["gs1_custom", "gs1_ideal"])
    ap.add_argument("--base-total-images", type=int, nargs="+", default=[500, 2000],
                    help="500: the network studies' data; 2000: the scenarios' default")
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-4, BACKPROP_EPS, 1e-2, 1e-1])
    ap.add_argument("--output", default=str(ROOT / "results" / "backprop_estimate.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    t0 = time.perf_counter()
    for scenario in args.scenarios:
        for total in args.base_total_images:
            cfg, _, _ = resolve_scenario(scenario, {"simulation.base_total_images": total})
            ds, _ = simulate(cfg.simulation, scenario=scenario)
            for eps in args.eps:
                s = estimate_score(ds, eps, cfg.inference.stitch_window)
                rows.append({"scenario": scenario, "base_total_images": total, "eps": eps,
                             "default_eps": eps == BACKPROP_EPS, **s})
                print(f"{scenario:11s} {total:5d} eps {eps:.0e}: SSIM {s['ssim']:.3f} "
                      f"Pearson {s['pearson']:.3f} LS scale {s['lsq_scale']:.3f}", flush=True)
    record_result({"benchmark": "backprop_estimate", "command": " ".join(sys.argv),
                   "evaluation": "stitched one-step estimates of the test split, no network; "
                                 "covered region, no rescale (bench_pinn.score)",
                   "rows": rows, "wall_seconds": time.perf_counter() - t0,
                   "machine": describe_machine()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
