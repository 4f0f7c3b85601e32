"""Label-free stitch weights (infer/stitch_weights.py) and the weighted stitch: the fitted error
profile follows a known radius-dependent noise, flat noise gives flat weights, the weighted
average lowers the error, and the covered region does not depend on the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychotrace.config import InferenceConfig
from ptychotrace.infer.predict import predict
from ptychotrace.infer.stitch_weights import (
    BIN_PX,
    MAX_PAIRS,
    consistency_weights,
    overlapping_pairs,
    window_radii,
)
from ptychotrace.physics.stitching import stitch_to_object_frame
from ptychotrace.train.checkpoint import load_model

N, M, SIZE = 32, 16, 112


def _scan(step: float = 5.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    grid = np.arange(N / 2, SIZE - N / 2 + 1e-9, step)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    xs = gx.ravel() + rng.uniform(-0.4, 0.4, gx.size)
    ys = gy.ravel() + rng.uniform(-0.4, 0.4, gy.size)
    return xs, ys


def _patches(xs, ys, sigma_of_r, seed: int = 1):
    """Patches of a smooth amplitude object at rounded positions plus Gaussian noise whose
    standard deviation depends on the radius in the window (sigma_of_r(radius) -> (N, N))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    obj = 1.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    radius, _ = window_radii(N, M)
    sig = sigma_of_r(radius)
    start = N // 2
    out = np.empty((len(xs), N, N))
    for k, (x, y) in enumerate(zip(np.round(xs).astype(int), np.round(ys).astype(int),
                                   strict=True)):
        out[k] = obj[y - start:y - start + N, x - start:x - start + N]
    truth = out.copy()
    out += rng.standard_normal(out.shape) * sig
    return out.astype(np.float32), truth.astype(np.float32), obj


def test_fit_recovers_a_radius_dependent_error_and_flat_noise_gives_flat_weights():
    xs, ys = _scan()
    amp, _, _ = _patches(xs, ys, lambda r: 0.02 + 0.02 * r)      # std grows with the radius
    w, rec = consistency_weights(amp, xs, ys, M)
    radius, inside = window_radii(N, M)
    assert w.shape == (N, N) and w.dtype == np.float32
    assert (w[~inside] == 0).all() and (w[inside] > 0).all() and np.isclose(w.max(), 1)
    var = np.array(rec["variance_by_radius"])
    bins = np.minimum((radius / BIN_PX).astype(int), len(var) - 1)
    expected = np.array([np.mean((0.02 + 0.02 * radius[inside & (bins == b)]) ** 2)
                         for b in range(len(var))])
    # each bin's mean noise variance over its window pixels: within 15 %, and 40 % for the
    # central bin, which holds only ~12 of the window's 256 pixels (the fit's noise)
    np.testing.assert_allclose(var[1:], expected[1:], rtol=0.15)
    np.testing.assert_allclose(var[0], expected[0], rtol=0.4)
    assert np.all(np.diff(var) > 0)                              # and ordered like it
    assert w[N // 2, N // 2] > 3 * w[inside & (radius > 9)].max()
    flat_amp, _, _ = _patches(xs, ys, lambda r: np.full_like(r, 0.05))
    wf, _ = consistency_weights(flat_amp, xs, ys, M)
    assert wf[inside].min() > 0.7                                # ~ the uniform stitch


def test_weighted_stitch_lowers_the_error_and_keeps_the_covered_region():
    xs, ys = _scan()
    amp, _, obj = _patches(xs, ys, lambda r: 0.02 + 0.03 * r)
    w, _ = consistency_weights(amp, xs, ys, M)
    t = torch.as_tensor
    uni = stitch_to_object_frame(t(amp), t(xs), t(ys), (SIZE, SIZE), M)
    wtd = stitch_to_object_frame(t(amp), t(xs), t(ys), (SIZE, SIZE), M, t(w))
    assert torch.equal(uni.covered, wtd.covered) and torch.equal(uni.weight, wtd.weight)
    cov = uni.covered.numpy()
    err_u = np.abs(uni.image.numpy() - obj)[cov].mean()
    err_w = np.abs(wtd.image.numpy() - obj)[cov].mean()
    assert err_w < 0.85 * err_u, (err_w, err_u)
    # all-ones weights are the uniform stitch
    ones = stitch_to_object_frame(t(amp), t(xs), t(ys), (SIZE, SIZE), M, torch.ones(N, N))
    torch.testing.assert_close(ones.image, uni.image)
    with pytest.raises(ValueError, match="non-negative"):
        stitch_to_object_frame(t(amp), t(xs), t(ys), (SIZE, SIZE), M, torch.ones(N, N + 1))
    with pytest.raises(ValueError, match="non-negative"):
        stitch_to_object_frame(t(amp), t(xs), t(ys), (SIZE, SIZE), M, -torch.ones(N, N))


def test_too_little_overlap_or_exact_agreement_falls_back_to_uniform():
    xs = np.array([20.0, 80.0])                                  # far apart: no shared pixel
    ys = np.array([20.0, 80.0])
    amp, truth, _ = _patches(xs, ys, lambda r: np.full_like(r, 0.05))
    w, rec = consistency_weights(amp, xs, ys, M)
    assert w is None and "uniform" in rec["reason"] and rec["pairs"] == 0
    xs, ys = _scan()
    _, truth, _ = _patches(xs, ys, lambda r: np.zeros_like(r))  # noise-free: patches agree
    w, rec = consistency_weights(truth, xs, ys, M)
    assert w is None and "agree" in rec["reason"]
    # patches of the same group never pair (their merge makes them agree by construction)
    groups = np.arange(len(xs)) // 4
    every = overlapping_pairs(xs, ys, M)
    assert (groups[every[:, 0]] == groups[every[:, 1]]).any()
    apart = overlapping_pairs(xs, ys, M, groups)
    assert len(apart) and (groups[apart[:, 0]] != groups[apart[:, 1]]).all()
    assert len(every) <= MAX_PAIRS and np.all(np.abs(np.round(xs[every[:, 0]]) -
                                                     np.round(xs[every[:, 1]])) < M)


def test_predict_with_consistency_weights_records_them(tmp_path):
    from ptychotrace.config import resolve_scenario
    from ptychotrace.simulate import simulate
    from ptychotrace.train.trainer import train

    cfg, _, _ = resolve_scenario("gs1_ideal", {
        "simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 64,
        "simulation.buffer": 8.0, "grouping.group_count": 32, "training.batch_size": 8,
        "training.nepochs": 1, "training.device": "cpu"}, use_profile=False)
    ds, _ = simulate(cfg.simulation)
    train(cfg, ds, tmp_path, progress=False, log=lambda *a: None)
    model = load_model(tmp_path)
    uni = predict(model, ds, InferenceConfig(stitch_window=12, refine_steps=0))
    con = predict(model, ds, InferenceConfig(stitch_window=12, refine_steps=0,
                                             stitch_weights="consistency"))
    assert uni.steps["stitch_weights"] == {"method": "uniform"}
    rec = con.steps["stitch_weights"]
    assert rec["method"] == "consistency" and rec["pairs"] > 0
    np.testing.assert_array_equal(uni.covered, con.covered)
    assert np.isfinite(con.amplitude).all() and (con.amplitude[~con.covered] == 0).all()
    # a convex combination of the same patch values: within their range
    lo, hi = np.abs(con.patches).min(), np.abs(con.patches).max()
    assert con.amplitude[con.covered].min() >= lo - 1e-5
    assert con.amplitude[con.covered].max() <= hi + 1e-5
    with pytest.raises(ValueError):
        InferenceConfig(stitch_weights="gaussian")
