"""benchmarks/bench_pattern_information.py: the footprint measure and the per-pattern fit."""

from __future__ import annotations

import numpy as np
import torch

from ptychotrace.physics.forward import far_field


def test_footprint_fraction_counts_the_pixels_that_hold_the_energy(load_benchmark):
    mod = load_benchmark("bench_pattern_information")
    point = np.zeros((16, 16), np.complex64)
    point[3, 4] = 2.0
    assert mod.footprint_fractions(point)["0.99"] == 1 / 256
    flat = np.ones((16, 16), np.complex64)
    assert abs(mod.footprint_fractions(flat)["0.99"] - 254 / 256) < 1e-9
    disk = np.zeros((16, 16), np.complex64)
    disk[4:8, 4:8] = 1.0                       # 16 equal pixels: 99 % of the energy needs all 16
    assert mod.footprint_fractions(disk)["0.99"] == 16 / 256


def test_per_pattern_fit_explains_noise_free_data(load_benchmark):
    """Noise-free amplitudes of a known patch: the fit from a flat start must drive the relative
    amplitude error far below the start's (a fit that stalls or diverges fails this)."""
    mod = load_benchmark("bench_pattern_information")
    gen = torch.Generator().manual_seed(0)
    n = 16
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    probe = ((xx - 7.5) ** 2 + (yy - 7.5) ** 2 < 16).to(torch.complex64)
    obj = (1 + 0.3 * torch.rand(2, n, n, generator=gen)) * torch.exp(
        0.5j * torch.rand(2, n, n, generator=gen))
    measured = far_field(probe * obj.to(torch.complex64)).abs()
    start = torch.ones(2, n, n, dtype=torch.complex64)
    fitted, trace = mod.fit_patterns(probe, measured, start, steps=300, lr=0.02,
                                     report=(0, 300))
    assert [k for k, _ in trace] == [0, 300]
    assert trace[1][1] < 0.1 * trace[0][1]
    assert mod.relative_amplitude_error(probe, fitted, measured) == trace[1][1]
