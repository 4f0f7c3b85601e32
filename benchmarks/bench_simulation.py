"""Simulation throughput vs a bare batched FFT of the same shape, measured in the same run.

Usage: python benchmarks/bench_simulation.py [--scenario gs2_custom] [--repeats 5]
Writes benchmarks/results/simulation.json. The ratio (simulation rate / bare FFT rate) is the
number to compare across machines; absolute rates depend on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.physics import forward  # noqa: E402
from ptychotrace.physics.noise import far_field_intensity, sample_poisson  # noqa: E402
from ptychotrace.simulate import CHUNK, simulate  # noqa: E402


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
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "simulation.json"))
    args = ap.parse_args(argv)

    cfg, _, _ = resolve_scenario(args.scenario)
    sim = cfg.simulation
    ds, _ = simulate(sim)                               # warm-up, and the shapes
    n_pat, n = ds.n_patterns, ds.patch_size
    x = torch.randn(n_pat, n, n, dtype=torch.complex64)
    torch.fft.fft2(x, norm="ortho")
    # interleaved, so that both rates see the same machine state; best of repeats each
    pairs = []
    for _ in range(args.repeats):
        pairs.append((best_of(lambda: simulate(sim), 1),
                      best_of(lambda: torch.fft.fft2(x, norm="ortho"), 1)))
    t_sim = min(p[0] for p in pairs)
    t_fft = min(p[1] for p in pairs)
    pair_ratios = sorted(f / s for s, f in pairs)

    # stage breakdown of the per-pattern path (the same calls simulate() makes, whole arrays)
    pad = forward.required_pad(n)
    obj = forward.pad_canvas(torch.from_numpy(ds.obj), pad)
    xs = torch.from_numpy(ds.xcoords + pad)
    ys = torch.from_numpy(ds.ycoords + pad)
    chunk = CHUNK

    def chunks(fn):
        for s in range(0, n_pat, chunk):
            fn(slice(s, min(s + chunk, n_pat)))

    with torch.no_grad():
        t_extract = best_of(lambda: chunks(lambda sl: forward.extract_patches(obj, xs[sl], ys[sl], n)),
                            args.repeats)
        patches = forward.extract_patches(obj, xs, ys, n)
        probe = torch.from_numpy(ds.probe)
        t_field = best_of(lambda: chunks(lambda sl: forward.far_field_of_product(probe, patches[sl])),
                          args.repeats)
        field = forward.far_field_of_product(probe, patches).numpy()
    intensity = np.empty(field.shape, np.float32)
    t_intensity = best_of(lambda: chunks(lambda sl: far_field_intensity(field[sl], intensity[sl])),
                          args.repeats)
    counts = np.empty(field.shape, np.float32)

    def poisson_in_place():
        counts[:] = intensity                      # fresh means each repeat (not timed below)
        t0 = time.perf_counter()
        chunks(lambda sl: sample_poisson(counts[sl], 0, 1.0, sl.start * n * n, out=counts[sl]))
        return time.perf_counter() - t0

    t_poisson = min(poisson_in_place() for _ in range(args.repeats))

    result = {
        "benchmark": "simulation", "scenario": args.scenario, "patterns": n_pat, "N": n,
        "simulation_patterns_per_second": n_pat / t_sim,
        "bare_fft_patterns_per_second": n_pat / t_fft,
        "ratio_simulation_to_bare_fft": t_fft / t_sim,
        "ratio_per_repeat": pair_ratios,
        "ratio_median_of_repeats": float(np.median(pair_ratios)),
        "target_ratio": 0.30,
        "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        "stage_seconds": {"simulate_total": t_sim, "extract": t_extract,
                          "probe_far_field": t_field, "intensity": t_intensity,
                          "poisson_counts": t_poisson,
                          "bare_fft": t_fft},
        "notes": "best of repeats (simulate and FFT interleaved; ratio_per_repeat pairs each "
                 "simulate with the FFT timed right after it), chunks of simulate.CHUNK patterns; simulate_total also holds "
                 "object synthesis, probe, scan, split, the per-pattern sums and allocation of "
                 "the counts array; Poisson sampling is exact at every count level (in place "
                 "over the unit intensities, scaled by s^2; here s^2 = 1 on the dose-scaled "
                 "probe, the same means as in simulate())",
        "machine": describe_machine(),
    }
    return record_result(result, args.output)


if __name__ == "__main__":
    main()
