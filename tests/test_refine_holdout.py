"""Inference refinement with a photon hold-out: early stopping on noise-dominated data, the best
iterate returned, the old behaviour at holdout 0, determinism, and one thinning code path shared
with the baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychotrace.baseline import solver
from ptychotrace.config import InferenceConfig
from ptychotrace.infer.predict import refine_object
from ptychotrace.model.losses import poisson_nll
from ptychotrace.physics import holdout
from ptychotrace.physics.forward import expected_counts, extract_patches, pad_canvas, required_pad

N = 16
SIZE = 40


def _problem(photons: float, seed: int = 0):
    """A smooth object, a disk probe carrying ``photons`` per pattern, a dense jittered scan and
    Poisson counts. Returns (truth, probe, counts, xs, ys, mean_counts)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    amp = np.clip(1.0 + 0.4 * gaussian_filter(rng.standard_normal((SIZE, SIZE)), 2.0) / 0.15,
                  0.4, 2.0)
    truth = (amp * np.exp(0.3j * gaussian_filter(rng.standard_normal((SIZE, SIZE)), 3.0) / 0.1)
             ).astype(np.complex64)
    yy, xx = np.mgrid[:N, :N] - N // 2
    p = gaussian_filter((np.hypot(yy, xx) <= 4.5).astype(np.float64), 0.7) + 1e-9
    probe = (p * np.sqrt(photons / np.sum(p ** 2))).astype(np.complex64)
    grid = np.arange(6.0, SIZE - 6.0 + 1e-9, 3.0)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    xs = gx.ravel() + rng.uniform(-0.4, 0.4, gx.size)
    ys = gy.ravel() + rng.uniform(-0.4, 0.4, gy.size)
    pad = required_pad(N)
    with torch.no_grad():
        patches = extract_patches(pad_canvas(torch.from_numpy(truth), pad),
                                  torch.from_numpy(xs + pad), torch.from_numpy(ys + pad), N)
        lam = expected_counts(torch.from_numpy(probe), patches).numpy()
    counts = rng.poisson(lam).astype(np.float32)
    return truth, torch.from_numpy(probe), counts, xs, ys, float(counts.sum((1, 2)).mean())


def _refine(init, prob, steps, **kw):
    _, probe, counts, xs, ys, mc = prob
    return refine_object(init, np.ones(init.shape, bool), probe, counts, xs, ys, mc, 1.0, steps,
                         0.02, **kw)


def test_holdout_stops_early_on_noise_and_returns_the_best_iterate():
    prob = _problem(photons=20.0)          # ~0.08 photons per detector pixel: noise dominates
    truth = prob[0]
    obj, rec = _refine(truth, prob, 60, holdout=0.2, patience=5, seed=1, refit=False,
                       smooth=False, backoffs=0)
    assert rec["holdout"] == 0.2 and rec["holdout_note"] is None
    # started at the truth: every step fits noise, so the hold-out turns almost at once
    assert rec["best_step"] < 10 and rec["steps"] < 60
    assert "did not improve" in rec["stop_reason"]
    assert rec["holdout_history_len"] == rec["steps"] + 1 == len(rec["holdout_history"])
    assert int(np.argmin(rec["holdout_history"])) == rec["best_step"]
    # the returned object is the best iterate, not the last: rerunning exactly best_step steps
    # (no early stop) ends on the same object
    again, rec2 = _refine(truth, prob, rec["best_step"], holdout=0.2, patience=None, seed=1,
                          refit=False, smooth=False, backoffs=0)
    assert rec2["best_step"] == rec["best_step"]
    np.testing.assert_array_equal(obj, again)
    # and it is closer to the truth than the overfitted plain 60 steps
    plain, _ = _refine(truth, prob, 60, holdout=0.0)
    assert np.abs(obj - truth).mean() < np.abs(plain - truth).mean()


def test_holdout_lets_every_step_run_when_the_data_carry_signal():
    prob = _problem(photons=1e6)
    flat = np.full((SIZE, SIZE), 1.0, np.complex64)
    _, rec = _refine(flat, prob, 8, holdout=0.1, patience=3, seed=0)
    assert rec["steps"] == 8 and rec["best_step"] == 8 and rec["stop_reason"] == "steps"
    assert rec["backoffs_used"] == 0 and rec["best_path"] == [[8, 0.02]]
    assert np.all(np.diff(rec["holdout_history"]) < 0)
    assert rec["refit_steps"] == 8                     # the returned object used every photon


def test_holdout_chooses_the_low_pass_from_the_dose():
    """Low dose: the held-out deviance asks for a low-pass, and it brings the object closer to the
    truth; high dose: any real blur costs held-out likelihood, so (next to) none is applied."""
    low = _problem(photons=100.0)
    truth = low[0]
    noisy = truth + 0.3 * np.random.default_rng(0).standard_normal(truth.shape).astype(np.float32)
    plain, _ = _refine(noisy, low, 20, holdout=0.0)
    obj, rec = _refine(noisy, low, 20, holdout=0.2, patience=None, seed=2)
    assert rec["smooth_sigma_px"] >= 0.5 and rec["smooth_note"] is None
    sig, dev = np.array(rec["smooth_scores"]).T
    assert sig[np.argmin(dev)] == rec["smooth_sigma_px"] and sig[0] == 0
    assert np.abs(obj - truth).mean() < np.abs(plain - truth).mean()
    high = _problem(photons=1e7)
    _, rec_hi = _refine(truth, high, 3, holdout=0.1, seed=2)
    assert rec_hi["smooth_sigma_px"] <= 0.25
    _, rec_off = _refine(truth, high, 3, holdout=0.1, seed=2, smooth=False)
    assert rec_off["smooth_sigma_px"] == 0 and rec_off["smooth_scores"] == []


def _old_refine(init, prob, steps=0, lr=0.02, fill=1.0, batch_size=256, path=None):
    """The refinement loop as it was before the hold-out (reference implementation); ``path``
    [(steps, lr), ...] chains segments, each with fresh Adam moments (the back-off's replay)."""
    _, probe, counts, xs_np, ys_np, mc = prob
    pad = required_pad(N)
    canvas = pad_canvas(torch.as_tensor(init), pad, value=fill).clone()
    param = torch.nn.Parameter(torch.view_as_real(canvas).clone())
    xs, ys, cts = torch.as_tensor(xs_np + pad), torch.as_tensor(ys_np + pad), torch.as_tensor(counts)
    for n_steps, seg_lr in path if path is not None else [(steps, lr)]:
        opt = torch.optim.Adam([param], lr=seg_lr * fill)
        for _ in range(n_steps):
            opt.zero_grad(set_to_none=True)
            for s in range(0, len(xs), batch_size):
                sl = slice(s, s + batch_size)
                lam = expected_counts(probe, extract_patches(torch.view_as_complex(param), xs[sl],
                                                             ys[sl], N))
                (poisson_nll(lam, cts[sl], mc).sum() / len(xs)).backward()
            opt.step()
    return torch.view_as_complex(param.detach())[pad:pad + SIZE, pad:pad + SIZE].numpy()


def test_backoff_returns_to_the_best_iterate_and_the_refit_replays_its_path():
    """When the held-out deviance stops improving the refinement returns to its best iterate and
    goes on with a 4x smaller step; the kept path (segments of steps and step sizes) is what the
    refit replays on all photons, and the kept iterate is never worse on the hold-out than
    stopping at the first turn."""
    prob = _problem(photons=100.0)
    truth = prob[0]
    noisy = truth + 0.3 * np.random.default_rng(0).standard_normal(truth.shape).astype(np.float32)
    kw = dict(holdout=0.2, patience=4, seed=2, smooth=False)
    obj, rec = _refine(noisy, prob, 60, backoffs=2, **kw)
    _, rec0 = _refine(noisy, prob, 60, backoffs=0, refit=False, **kw)
    assert rec["backoffs_used"] >= 1 and len(rec["best_path"]) >= 2
    (k1, lr1), (k2, lr2) = rec["best_path"][:2]
    assert lr2 == pytest.approx(0.25 * lr1) and k2 > 0
    assert rec0["best_path"] == [[k1, lr1]]                 # the same first segment
    assert rec["best_step"] == rec["refit_steps"] == sum(k for k, _ in rec["best_path"])
    assert min(rec["holdout_history"]) < min(rec0["holdout_history"])
    np.testing.assert_array_equal(obj, _old_refine(noisy, prob, path=rec["best_path"]))


def test_holdout_zero_reproduces_the_plain_refinement():
    prob = _problem(photons=200.0)
    flat = np.full((SIZE, SIZE), 1.0, np.complex64)
    obj, rec = _refine(flat, prob, 5, holdout=0.0, batch_size=50)
    np.testing.assert_array_equal(obj, _old_refine(flat, prob, 5, batch_size=50))
    assert rec["steps"] == 5 and rec["best_step"] == 5 and rec["holdout"] == 0.0
    assert rec["holdout_note"] == "disabled (holdout=0)" and rec["holdout_history_len"] == 0


def test_non_integer_counts_switch_the_holdout_off_and_say_so():
    truth, probe, counts, xs, ys, mc = _problem(photons=200.0)
    prob = (truth, probe, counts + 0.37, xs, ys, mc)
    flat = np.full((SIZE, SIZE), 1.0, np.complex64)
    obj, rec = _refine(flat, prob, 3, holdout=0.1)
    assert rec["holdout"] == 0.0 and "not integers" in rec["holdout_note"]
    assert rec["steps"] == 3 and rec["holdout_history_len"] == 0
    np.testing.assert_array_equal(obj, _refine(flat, prob, 3, holdout=0.0)[0])


def test_holdout_refinement_is_deterministic_under_a_seed():
    prob = _problem(photons=50.0)
    flat = np.full((SIZE, SIZE), 1.0, np.complex64)
    a, ra = _refine(flat, prob, 6, holdout=0.1, seed=7)
    b, rb = _refine(flat, prob, 6, holdout=0.1, seed=7)
    c, rc = _refine(flat, prob, 6, holdout=0.1, seed=8)
    np.testing.assert_array_equal(a, b)
    assert ra["holdout_history"] == rb["holdout_history"]
    assert rc["holdout_history"] != ra["holdout_history"]


def test_one_thinning_code_path_and_the_config_option():
    assert solver.split_photons is holdout.split_photons
    assert solver.holdout_reason is holdout.holdout_reason
    assert InferenceConfig().refine_holdout == 0.1
    assert InferenceConfig(refine_holdout=0).refine_holdout == 0
    with pytest.raises(ValueError):
        InferenceConfig(refine_holdout=1.0)
