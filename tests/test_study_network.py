"""Pieces of benchmarks/study_network.py that its recorded results depend on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ptychotrace.data.container import truth_patches


def test_patch_error_by_radius_locates_where_a_patch_is_wrong(load_benchmark):
    """Exact patches give MAE 0 and Pearson 1 in every ring; damaging only the pixels at
    r >= 8 px leaves the inner rings exact and shows up in the outer ones alone."""
    mod = load_benchmark("study_network")
    rng = np.random.default_rng(0)
    n = 32
    obj = (1.0 + rng.random((96, 96))) * np.exp(1j * rng.random((96, 96)))
    xs, ys = rng.uniform(30, 66, 6), rng.uniform(30, 66, 6)
    exact = truth_patches(obj, xs, ys, n)
    rows = mod.patch_error_by_radius(SimpleNamespace(patches=exact, xcoords=xs, ycoords=ys), obj)
    assert [(r["r_from_px"], r["r_to_px"]) for r in rows] == list(
        zip(mod.RADIUS_BINS_PX[:-1], mod.RADIUS_BINS_PX[1:], strict=True))
    assert all(r["amp_mae"] < 1e-6 and r["amp_pearson"] > 1 - 1e-6 for r in rows)
    yy, xx = np.mgrid[:n, :n] - n // 2
    outer = np.hypot(xx, yy) >= 8
    damaged = exact.copy()
    damaged[:, outer] *= rng.uniform(0.5, 1.5, (6, int(outer.sum())))
    rows = mod.patch_error_by_radius(SimpleNamespace(patches=damaged, xcoords=xs, ycoords=ys), obj)
    inner = [r for r in rows if r["r_to_px"] <= 8]
    assert inner and all(r["amp_mae"] < 1e-6 for r in inner)
    assert all(r["amp_mae"] > 0.05 for r in rows if r["r_from_px"] >= 8)


def test_data_overrides_reach_test_data_and_scoring_but_not_training(load_benchmark):
    mod = load_benchmark("study_network")
    got = mod.data_overrides(['simulation.scan="grid"', "simulation.grid_step=10",
                              "inference.stitch_window=10", "grouping.group_seed=3",
                              'training.precision="bfloat16"'])
    assert got == {"simulation.scan": "grid", "simulation.grid_step": 10,
                   "inference.stitch_window": 10, "grouping.group_seed": 3}
