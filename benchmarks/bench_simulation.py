"""Simulation throughput vs a bare batched FFT of the same shape, measured in the same run.

Usage: python benchmarks/bench_simulation.py [--scenario gs2_custom] [--repeats 3]
Writes benchmarks/results/simulation.json. The ratio (simulation rate / bare FFT rate) is the
number to compare across machines; absolute rates depend on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.physics import forward  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="gs2_custom")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "simulation.json"))
    args = ap.parse_args(argv)

    cfg, _, _ = resolve_scenario(args.scenario)
    sim = cfg.simulation
    ds, _ = simulate(sim)                               # warm-up, and the shapes
    n_pat, n = ds.n_patterns, ds.patch_size
    t_sim = best_of(lambda: simulate(sim), args.repeats)

    x = torch.randn(n_pat, n, n, dtype=torch.complex64)
    t_fft = best_of(lambda: torch.fft.fft2(x, norm="ortho"), args.repeats)

    # stage breakdown of the per-pattern path
    obj = forward.pad_canvas(torch.from_numpy(ds.obj), forward.required_pad(n))
    xs = torch.from_numpy(ds.xcoords + forward.required_pad(n))
    ys = torch.from_numpy(ds.ycoords + forward.required_pad(n))
    t_extract = best_of(lambda: forward.extract_patches(obj, xs, ys, n), args.repeats)
    patches = forward.extract_patches(obj, xs, ys, n)
    probe = torch.from_numpy(ds.probe)
    t_counts = best_of(lambda: forward.expected_counts(probe, patches), args.repeats)
    lam = forward.expected_counts(probe, patches).numpy()
    t_poisson = best_of(lambda: forward.sample_poisson(lam, 0), args.repeats)
    t_poisson_exact = best_of(lambda: forward.sample_poisson(lam, 0, None), 1)

    result = {
        "benchmark": "simulation", "scenario": args.scenario, "patterns": n_pat, "N": n,
        "simulation_patterns_per_second": n_pat / t_sim,
        "bare_fft_patterns_per_second": n_pat / t_fft,
        "ratio_simulation_to_bare_fft": t_fft / t_sim,
        "stage_seconds": {"simulate_total": t_sim, "extract": t_extract,
                          "probe_fft_intensity": t_counts, "poisson_sampling": t_poisson,
                          "poisson_sampling_exact_all_pixels": t_poisson_exact,
                          "bare_fft": t_fft},
        "notes": "best of repeats; simulate_total includes object synthesis, probe, scan, split, "
                 "dose scale and float64 bookkeeping",
        "machine": describe_machine(),
    }
    return record_result(result, args.output)


if __name__ == "__main__":
    main()
