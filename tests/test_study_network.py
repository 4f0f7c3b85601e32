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


def test_generalisation_scores_trained_models_and_refuses_bad_paths(load_benchmark, tmp_path):
    """bench_generalisation --models: a trained run directory is scored network-only on the
    scenario's test split and the four unseen objects (finite scores, patterns counted), a model
    of another N is refused, and so is an argument that is not NAME=existing-dir."""
    import json

    import pytest

    from ptychotrace.config import resolve_scenario
    from ptychotrace.simulate import simulate
    from ptychotrace.train.trainer import train

    mod = load_benchmark("bench_generalisation")
    tiny = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 64,
            "simulation.buffer": 8.0, "grouping.group_count": 48, "training.batch_size": 8,
            "training.nepochs": 1, "training.device": "cpu", "training.arch": "unet",
            "training.input_transform": "backprop"}
    cfg, _, _ = resolve_scenario("gs1_custom", tiny, use_profile=False)
    ds = simulate(cfg.simulation)[0]
    train(cfg, ds, tmp_path / "run", progress=False, log=lambda *a: None)
    out = tmp_path / "gen.json"
    common = ["--scenario", "gs1_custom", "--object-size", "96", "--patterns", "64",
              "--unseen-patterns", "24", "--output", str(out)]
    assert mod.main(["--models", f"bp={tmp_path / 'run'}", "--N", "32", *common]) == 0
    rec = json.loads(out.read_text())
    scores = rec["models"]["bp"]["scores"]
    assert set(scores) == {"train_object_test", "lines_unseen", "grf_unseen", "siemens_unseen",
                           "texture_unseen"}
    assert all(np.isfinite(s["amp_ssim"]) and s["patterns"] > 0 for s in scores.values())
    assert rec["models"]["bp"]["network"]["input_transform"] == "backprop"
    with pytest.raises(SystemExit, match="model N 32"):
        mod.main(["--models", f"bp={tmp_path / 'run'}", "--N", "64", *common])
    with pytest.raises(SystemExit, match="NAME=DIR"):
        mod.main(["--models", str(tmp_path / "run"), *common])
