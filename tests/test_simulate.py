"""Simulation: dose, determinism, counts per scenario, dose invariance, grouping, CLI behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychotrace.cli import main
from ptychotrace.config import ConfigError, resolve_scenario
from ptychotrace.data.container import build_grouped, train_input_gain
from ptychotrace.data.dataset import load_dataset
from ptychotrace.physics.scan import (
    ScanPositions,
    grid_positions,
    group_neighbours,
    group_raster_blocks,
    split_by_y,
)
from ptychotrace.simulate import simulate


def _sim(overrides, scenario="gs1_ideal"):
    cfg, _, _ = resolve_scenario(scenario, overrides, use_profile=False)
    return simulate(cfg.simulation)


def test_measured_dose_matches_nphotons_on_the_training_split(tiny_dataset):
    ds, rec = tiny_dataset
    sums = ds.counts.reshape(ds.n_patterns, -1).sum(axis=1)
    train = sums[ds.indices("train")].mean()
    assert abs(train / 1e9 - 1) < 0.01       # s is derived on the training split (physics.md 3)
    assert rec["dataset_scale_info"]["used_mode"] == "dataset"
    # the physical probe carries the dose: expected counts = |F(P*O)|^2 with P = s*P0
    assert np.isclose(np.abs(ds.probe).max() / rec["probe"]["post_normalisation"]["max"],
                      rec["dataset_scale_info"]["dataset_scale"], rtol=1e-5)


def test_same_seed_gives_identical_arrays_and_other_seed_differs(tiny_sim_overrides):
    a, _ = _sim(tiny_sim_overrides)
    b, _ = _sim(tiny_sim_overrides)
    assert a.counts.tobytes() == b.counts.tobytes()
    assert a.xcoords.tobytes() == b.xcoords.tobytes()
    c, _ = _sim({**tiny_sim_overrides, "simulation.sim_seed": 7})
    assert not np.array_equal(a.counts, c.counts)


def test_counts_do_not_depend_on_threads_or_chunking(tiny_sim_overrides, monkeypatch):
    """Per-pattern noise streams: one torch thread or two, small chunks or large, the same
    bytes (two runs in one process, so no cross-CPU float question arises)."""
    import torch

    import ptychotrace.simulate as sim_module

    a, _ = _sim(tiny_sim_overrides)
    threads = torch.get_num_threads()
    monkeypatch.setattr(sim_module, "CHUNK", 7)
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        b, _ = _sim(tiny_sim_overrides)
    finally:
        torch.set_num_threads(threads)
    assert a.counts.tobytes() == b.counts.tobytes()


def test_gridsize_two_has_four_times_the_patterns(tiny_sim_overrides):
    cfg1, _, _ = resolve_scenario("gs1_ideal", tiny_sim_overrides, use_profile=False)
    cfg2, _, _ = resolve_scenario("gs2_ideal", tiny_sim_overrides, use_profile=False)
    assert cfg2.simulation.total_images == 4 * cfg1.simulation.total_images
    prof1, _, _ = resolve_scenario("gs1_ideal")
    prof2, _, _ = resolve_scenario("gs2_ideal")
    assert prof1.simulation.total_images == 512 and prof2.simulation.total_images == 1024
    assert prof1.simulation.train_count + prof1.simulation.test_count == 512


def test_normalised_input_is_dose_invariant(tiny_sim_overrides):
    # Noise-free: counts scale with dose, the normalised network input and labels do not.
    lo, _ = _sim({**tiny_sim_overrides, "simulation.nphotons": 1e4, "simulation.poisson_noise": False})
    hi, _ = _sim({**tiny_sim_overrides, "simulation.nphotons": 1e9, "simulation.poisson_noise": False})
    np.testing.assert_allclose(hi.counts, lo.counts * 1e5, rtol=1e-4)
    g_lo = build_grouped(lo, "train", 1, 16, 4, 0, train_input_gain(lo))
    g_hi = build_grouped(hi, "train", 1, 16, 4, 0, train_input_gain(hi))
    np.testing.assert_allclose(g_lo.X, g_hi.X, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(g_lo.Y_amp, g_hi.Y_amp)


def test_split_is_y_sorted_and_contiguous():
    y = np.random.default_rng(0).uniform(0, 100, 41)
    train, test = split_by_y(y, 0.5)
    assert len(test) == round(41 * 0.5) and len(train) + len(test) == 41
    assert y[train].max() <= y[test].min()


def test_grouping_returns_c_distinct_neighbours_and_fails_clearly():
    rng = np.random.default_rng(1)
    pos = ScanPositions(rng.uniform(0, 50, 60), rng.uniform(0, 50, 60))
    g = group_neighbours(pos, gridsize=2, group_count=20, neighbor_count=6, seed=3)
    assert g.indices.shape == (20, 4)
    assert all(len(set(row)) == 4 for row in g.indices)
    np.testing.assert_allclose(g.dx.mean(axis=1), 0, atol=1e-12)
    # channel order: rows by y then x (channel c -> (c // 2, c % 2))
    ys = pos.ycoords[g.indices]
    assert np.all(ys[:, :2].max(axis=1) <= ys[:, 2:].min(axis=1))
    # neighbours are near: every member is within the K-neighbourhood radius of the seed
    spread = np.hypot(g.dx, g.dy).max()
    assert spread < 25
    with pytest.raises(ValueError, match="fewer than the 4"):
        group_neighbours(ScanPositions(np.arange(3.0), np.arange(3.0)), 2, 1, 4, 0)
    with pytest.raises(ValueError, match="neighbor_count"):
        group_neighbours(pos, 2, 5, 3, 0)


def test_raster_blocks_have_one_geometry_and_skip_points_off_the_raster():
    grid = grid_positions(4.0, 40, 40, 2.0)                        # 10 x 10 raster, 4 px apart
    rng = np.random.default_rng(0)
    xs = np.concatenate([grid.xcoords, rng.uniform(60, 90, 30)])   # + random points elsewhere
    ys = np.concatenate([grid.ycoords, rng.uniform(60, 90, 30)])
    pos = ScanPositions(xs, ys)
    g = group_raster_blocks(pos, gridsize=2, group_count=10**6, seed=0, step=4.0)
    assert g.indices.shape == (9 * 9, 4)                            # every complete 2x2 block
    assert g.indices.max() < len(grid.xcoords)                      # no off-raster point joins
    np.testing.assert_allclose(g.dx, np.tile([-2.0, 2.0, -2.0, 2.0], (81, 1)))
    np.testing.assert_allclose(g.dy, np.tile([-2.0, -2.0, 2.0, 2.0], (81, 1)))
    # the inferred step is the raster's; a stride keeps every other origin in x and y
    assert len(group_raster_blocks(pos, 2, 10**6, 0)) == 81
    assert len(group_raster_blocks(pos, 2, 10**6, 0, step=4.0, stride=2)) == 5 * 5
    # a seeded sample of fewer groups: deterministic, distinct, a subset of the blocks
    # blocks wider than the raster: points 8 px apart on the 4-px raster, centres 8 px apart
    wide = group_raster_blocks(pos, 2, 10**6, 0, step=8.0, stride=2)
    assert len(wide) == 4 * 4
    np.testing.assert_allclose(np.abs(wide.dx), 4.0)
    a = group_raster_blocks(pos, 2, 20, seed=5, step=4.0)
    b = group_raster_blocks(pos, 2, 20, seed=5, step=4.0)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len({tuple(r) for r in a.indices}) == 20
    with pytest.raises(ValueError, match="no 2x2 raster block"):
        group_raster_blocks(ScanPositions(rng.uniform(0, 50, 40), rng.uniform(0, 50, 40)), 2,
                            10, 0, step=4.0)


def test_raster_blocks_reach_the_test_groups_through_the_config():
    cfg, _, _ = resolve_scenario("gs2_ideal", {
        "simulation.N": 32, "simulation.object_size": 96, "simulation.scan": "grid",
        "simulation.grid_step": 6.0, "grouping.group_method": "raster_blocks",
        "grouping.group_count": 10**4}, use_profile=False)
    ds, _ = simulate(cfg.simulation)
    from ptychotrace.data.container import grouping_method_kwargs

    kw = grouping_method_kwargs(cfg.grouping.model_dump())
    gd = build_grouped(ds, "test", 2, 10**4, 4, 0, 1.0, **kw)
    np.testing.assert_allclose(np.abs(gd.dx), 3.0)
    np.testing.assert_allclose(np.abs(gd.dy), 3.0)
    knn = build_grouped(ds, "test", 2, 10**4, 4, 0, 1.0)             # KNN on a raster: no 2x2
    assert not np.allclose(np.abs(knn.dy), 3.0)
    # block options without the block method are refused where the config enters
    with pytest.raises(ConfigError, match="raster_blocks"):
        resolve_scenario("gs2_ideal", {"grouping.block_stride": 5}, use_profile=False)


def test_infer_regrouping_changes_only_the_block_layout_of_a_raster_model():
    from ptychotrace.infer.predict import regroup_test_blocks, test_groups

    cfg, _, _ = resolve_scenario("gs2_ideal", {
        "simulation.N": 32, "simulation.object_size": 96, "simulation.scan": "grid",
        "simulation.grid_step": 3.0, "grouping.group_method": "raster_blocks",
        "grouping.block_step_px": 6.0, "grouping.group_count": 10**4}, use_profile=False)
    ds, _ = simulate(cfg.simulation)
    ckpt = {"config": {"grouping": cfg.grouping.model_dump()}, "network": {"gridsize": 2},
            "scales": {"input_gain": {"value": 1.0}}}
    dense, _ = test_groups(ckpt, ds)
    sparse_ckpt = regroup_test_blocks(ckpt, block_stride=4)
    assert ckpt["config"]["grouping"]["block_stride"] == 1          # the model's is untouched
    sparse, _ = test_groups(sparse_ckpt, ds)
    np.testing.assert_allclose(np.abs(sparse.dx), 3.0)              # same geometry, 6-px blocks
    np.testing.assert_allclose(np.abs(sparse.dy), 3.0)
    # origins every 4th raster point in x and y: about 1/16 of the blocks
    assert len(dense) / 24 < len(sparse) < len(dense) / 10
    assert regroup_test_blocks(ckpt) is ckpt
    with pytest.raises(ValueError, match=">= 1"):
        regroup_test_blocks(ckpt, block_stride=0)
    knn = {**ckpt, "config": {"grouping": {**ckpt["config"]["grouping"], "group_method": "knn"}}}
    with pytest.raises(ValueError, match="group_method 'knn'"):
        regroup_test_blocks(knn, block_stride=2)


def test_median_spacing_ignores_coincident_points_and_refuses_too_few():
    from ptychotrace.physics.scan import median_spacing

    xs, ys = np.meshgrid(np.arange(5) * 2.5, np.arange(4) * 2.5)
    xs, ys = np.r_[xs.ravel(), 0.0, 0.0], np.r_[ys.ravel(), 0.0, 0.0]   # point (0,0) three times
    assert median_spacing(xs, ys) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="coincide"):
        median_spacing(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="1 position"):
        median_spacing(np.zeros(1), np.zeros(1))


def test_simulate_cli_writes_valid_file_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "d.npz"
    args = ["simulate", "--scenario", "gs1_ideal", "--N", "32", "--object-size", "96",
            "--base-total-images", "40", "--buffer", "8", "--output", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total_images"] == 40 and summary["train_count"] + summary["test_count"] == 40
    ds = load_dataset(out)
    assert ds.n_patterns == 40 and ds.patch_size == 32
    before = out.read_bytes()
    assert main(args) == 2                        # exists, no --force
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before             # nothing overwritten
    assert main(args + ["--force", "--sim-seed", "5"]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--split-fraction", "1.5"], "--split-fraction: must be < 1"),   # refused at the flag
    (["--buffer", "60"], "buffer"),
    (["--probe-file", "/nonexistent/probe.npz"], "probe file not found"),
    (["--N", "30"], "multiple of 8"),
])
def test_simulate_bad_flags_leave_no_output(tmp_path, capsys, flags, message):
    out = tmp_path / "bad.npz"
    try:
        rc = main(["simulate", "--scenario", "gs1_ideal", "--N", "32", "--object-size", "96",
                   "--base-total-images", "40", "--buffer", "8", "--output", str(out), *flags])
    except SystemExit as exc:   # a field's bound is checked by argparse, at the flag
        rc = exc.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_negative_nphotons_rejected_at_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--scenario", "gs1_ideal", "--nphotons", "-1", "--output", "x.npz"])
    assert "must be > 0" in capsys.readouterr().err


def test_unknown_scenario_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown scenario"):
        resolve_scenario("gs9")
