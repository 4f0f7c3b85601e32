"""Inference: batched prediction + stitching, the twin ambiguity and its overlap fix, refinement,
and the train/infer commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptychotrace.cli import main
from ptychotrace.config import InferenceConfig, resolve_scenario
from ptychotrace.data.container import truth_patches
from ptychotrace.data.dataset import save_dataset
from ptychotrace.infer.predict import (
    predict,
    predict_test_split,
    refine_object,
    twin_consistency,
    twin_flip_mode,
    twin_of,
)
from ptychotrace.physics.forward import expected_counts
from ptychotrace.physics.probe import focused_probe, ideal_probe
from ptychotrace.physics.stitching import stitch_to_object_frame
from ptychotrace.simulate import simulate
from ptychotrace.train.checkpoint import load_model
from ptychotrace.train.trainer import train

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 64,
        "simulation.buffer": 8.0, "grouping.group_count": 32, "training.batch_size": 8,
        "training.nepochs": 2, "training.device": "cpu", "inference.stitch_window": 12}


@pytest.fixture(scope="module")
def ideal_run(tmp_path_factory):
    cfg, _, _ = resolve_scenario("gs1_ideal", TINY, use_profile=False)
    ds, _ = simulate(cfg.simulation)
    out = tmp_path_factory.mktemp("ideal")
    train(cfg, ds, out, progress=False, log=lambda *a: None)
    return cfg, ds, out


def test_twin_is_exact_for_the_ideal_probe_and_broken_by_the_custom_probe():
    rng = np.random.default_rng(0)
    obj = torch.as_tensor(rng.uniform(0.5, 2, (3, 32, 32)) * np.exp(1j * rng.uniform(-1, 1, (3, 32, 32)))
                          ).to(torch.complex64)
    ideal = ideal_probe(32)
    mode = twin_flip_mode(ideal)
    assert mode is not None
    p = torch.as_tensor(ideal)
    a, b = expected_counts(p, obj), expected_counts(p, twin_of(obj, mode))
    assert float((a - b).abs().max() / a.max()) < 1e-5           # indistinguishable patterns
    custom = focused_probe(32)
    assert twin_flip_mode(custom) is None
    pc = torch.as_tensor(custom)
    for m in ("flip", "roll"):
        c, d = expected_counts(pc, obj), expected_counts(pc, twin_of(obj, m))
        assert float((c - d).abs().max() / c.max()) > 1e-2       # the custom probe tells them apart


def test_twin_consistency_recovers_orientation_from_overlaps():
    cfg, _, _ = resolve_scenario("gs1_ideal", {"simulation.N": 32, "simulation.object_size": 96,
                                               "simulation.buffer": 8.0,
                                               "simulation.base_total_images": 120},
                                 use_profile=False)
    ds, _ = simulate(cfg.simulation)
    te = ds.indices("test")
    truth = truth_patches(ds.obj, ds.xcoords[te], ds.ycoords[te], 32)
    mode = twin_flip_mode(ds.probe)
    rng = np.random.default_rng(3)
    flip = rng.random(len(te)) < 0.5
    scrambled = truth.copy()
    scrambled[flip] = twin_of(torch.as_tensor(truth[flip]), mode).numpy()
    fixed, rec = twin_consistency(scrambled, ds.xcoords[te], ds.ycoords[te], ds.probe, mode)
    assert rec["applied"] and rec["pairs"] > len(te)
    err = np.abs(np.abs(fixed) - np.abs(truth)).reshape(len(te), -1).max(1)
    pos = np.column_stack([ds.xcoords[te], ds.ycoords[te]])
    dist = np.hypot(*(pos[:, None, :] - pos[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    overlapped = dist.min(1) < 2 * rec["support_radius_px"]
    assert overlapped.mean() > 0.9
    # every patch that overlaps a neighbour is back in its true orientation
    assert (err[overlapped] < 1e-4).all(), np.flatnonzero(overlapped & (err >= 1e-4))
    before = np.abs(np.abs(scrambled) - np.abs(truth)).reshape(len(te), -1).max(1)
    assert (before < 1e-4).mean() < 0.6


def test_predict_stitches_in_the_object_frame(ideal_run):
    cfg, ds, out = ideal_run
    model = load_model(out)
    default = predict_test_split(model, ds, cfg)
    assert default.steps["refine"]["applied"] and default.steps["twin_fix"]["applied"]
    pred = predict_test_split(model, ds, cfg.model_copy(update={
        "inference": cfg.inference.model_copy(update={"refine_steps": 0})}))
    assert not pred.steps["refine"]["applied"]
    np.testing.assert_array_equal(default.covered, pred.covered)
    h, w = ds.obj.shape
    assert pred.amplitude.shape == (h, w) and pred.amplitude.dtype == np.float32
    assert pred.n_patterns == len(ds.indices("test")) and pred.groups_available == pred.n_groups
    assert 0 < pred.coverage_fraction < 1 and pred.patterns_per_second > 0
    assert np.isfinite(pred.amplitude).all() and (pred.amplitude[~pred.covered] == 0).all()
    # covered rows are the test half (upper y), never the training half
    rows = np.flatnonzero(pred.covered.any(axis=1))
    assert rows.min() >= ds.ycoords[ds.indices("test")].min() - 7
    # same stitcher as everyone else: re-stitching the returned patches reproduces the image
    st = stitch_to_object_frame(torch.as_tensor(np.abs(pred.patches)), torch.as_tensor(pred.xcoords),
                                torch.as_tensor(pred.ycoords), (h, w), cfg.inference.stitch_window)
    np.testing.assert_allclose(np.where(st.covered.numpy(), st.image.numpy(), 0), pred.amplitude,
                               rtol=1e-6, atol=1e-6)
    limited = predict(model, ds, InferenceConfig(stitch_window=12, group_limit=5, refine_steps=0))
    assert limited.n_groups == 5 and limited.groups_available == pred.n_groups
    assert limited.covered.sum() < pred.covered.sum()
    # batching does not change the result
    b1 = predict(model, ds, InferenceConfig(stitch_window=12, batch_size=1, refine_steps=0))
    b64 = predict(model, ds, InferenceConfig(stitch_window=12, batch_size=64, refine_steps=0))
    np.testing.assert_allclose(b1.amplitude, b64.amplitude, rtol=1e-5, atol=1e-5)


def test_refinement_lowers_the_test_nll_from_the_pinn_start(ideal_run):
    cfg, ds, out = ideal_run
    model = load_model(out)
    pred = predict(model, ds, InferenceConfig(stitch_window=12, refine_steps=0))
    te = ds.indices("test")
    mc = model.checkpoint["scales"]["loss_normaliser"]["mean_counts"]
    obj, rec = refine_object(pred.obj, pred.covered, model.probe, ds.counts[te], ds.xcoords[te],
                             ds.ycoords[te], mc, model.net_cfg.amp_ref, 8, 0.02)
    assert rec["nll_last"] < 0.7 * rec["nll_first"]
    assert obj.shape == ds.obj.shape and np.isfinite(obj).all()


def test_refinement_start_fills_uncovered_pixels_with_the_networks_own_phase():
    """A network trained on amplitudes returns its object with an arbitrary global phase; the
    refinement's start must not put a phase step between covered and uncovered pixels."""
    from ptychotrace.infer.refine import start_object
    covered = np.zeros((8, 8), bool)
    covered[2:6, 2:6] = True
    amp = np.where(covered, 2.0, 0.0)
    init = (amp * np.exp(2.5j)).astype(np.complex64)         # the network's offset: 2.5 rad
    start = start_object(init, covered, amp_scale=3.0)
    assert np.allclose(start[covered], init[covered])
    assert np.allclose(start[~covered], 2.0 * np.exp(2.5j), atol=1e-5)
    assert np.allclose(start_object(init, np.zeros_like(covered), 3.0), 3.0)   # nothing covered


@pytest.mark.parametrize("method", ["adam", "lsqml"])
def test_both_refinement_methods_lower_the_held_out_deviance(ideal_run, method):
    """Each method, through predict(): the chosen iterate's held-out deviance is below the
    network's (iterate 0), the record names the method, and the object stays finite."""
    cfg, ds, out = ideal_run
    model = load_model(out)
    pred = predict(model, ds, InferenceConfig(stitch_window=12, refine_steps=6,
                                              refine_method=method))
    rec = pred.steps["refine"]
    assert rec["method"] == method and rec["applied"]
    hist = rec["holdout_history"]
    assert len(hist) >= 2 and min(hist) < hist[0]
    assert np.isfinite(pred.object_full).all() and pred.amplitude.shape == ds.obj.shape


def test_lsqml_refinement_is_the_baseline_solver_from_the_network_start(ideal_run):
    """refine_method lsqml is reconstruct(init=start) on the patterns the network used: the same
    object as calling the baseline directly (one solver, not a copy of it)."""
    from dataclasses import replace

    from ptychotrace.baseline import reconstruct
    from ptychotrace.data.dataset import TEST, TRAIN
    from ptychotrace.infer.refine import start_object
    cfg, ds, out = ideal_run
    model = load_model(out)
    icfg = InferenceConfig(stitch_window=12, refine_steps=4, refine_method="lsqml",
                           refine_smooth=False)
    net = predict(model, ds, icfg.model_copy(update={"refine_steps": 0}))
    ref = predict(model, ds, icfg)
    used = np.unique(ref.pattern_index)
    split = np.full(ds.n_patterns, TRAIN, dtype=ds.split.dtype)
    split[used] = TEST
    start = start_object(net.obj, net.covered, model.net_cfg.amp_ref)
    direct = reconstruct(replace(ds, split=split), "test", iterations=4, window=12, init=start,
                         seed=int(cfg.training.seed), smooth=False)
    both = ref.covered & direct.illuminated
    assert both.sum() > 100
    assert np.allclose(ref.obj[both], direct.obj[both], atol=1e-5)


def test_train_and_infer_commands(tmp_path):
    cfg, _, _ = resolve_scenario("gs1_ideal", TINY, use_profile=False)
    ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
    data = save_dataset(tmp_path / "d.npz", ds)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--output-dir", str(run), "--nepochs", "1",
                 "--batch-size", "8", "--no-progress", "--device", "cpu",
                 "--time-limit", "1000"]) == 0
    assert (run / "train_outputs" / "checkpoints" / "best.pt").is_file()
    saved = json.loads((run / "train_outputs" / "config.json").read_text())["training"]
    assert saved["nepochs"] == 1
    assert saved["time_limit_s"] == 1000   # what changes a result is in the saved config
    # refuses to overwrite a trained model
    assert main(["train", "--data", str(data), "--output-dir", str(run), "--no-progress"]) == 2
    inf = tmp_path / "inf"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(inf),
                 "--group-limit", "10", "--refine-steps", "2"]) == 0
    amp = np.load(inf / "amplitude.npy")
    assert amp.dtype == np.float32 and amp.shape == ds.obj.shape
    assert (inf / "amplitude.png").is_file() and (inf / "phase.png").is_file()
    stats = json.loads((inf / "stats.json").read_text())
    assert stats["prediction"]["n_groups"] == 10
    assert stats["prediction"]["steps"]["refine"]["applied"]
    from ptychotrace.records import ComparisonRecord

    assert stats["comparison"]["amplitude"]["pearson_r"] is not None
    cmp = ComparisonRecord.read(inf / "comparison_metrics.json")
    assert -1 <= cmp.amplitude.pearson_r <= 1
    assert cmp.prediction_scale.least_squares.value > 0
