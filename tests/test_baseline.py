"""Iterative baseline: reconstruction quality on a tiny noise-free problem, cost, determinism,
photon hold-out, coverage consistency with the stitcher, and the ``baseline`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptychotrace.baseline import reconstruct
from ptychotrace.baseline.solver import coverage_mask, split_photons
from ptychotrace.data.dataset import TEST, TRAIN, Dataset, save_dataset
from ptychotrace.physics.forward import expected_counts, extract_patches, pad_canvas, required_pad
from ptychotrace.physics.stitching import stitch_to_object_frame

N = 16
SIZE = 48


def _disk_probe(n: int, radius: float, photons: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - (n // 2)
    disk = (np.hypot(yy, xx) <= radius).astype(np.float64)
    from scipy.ndimage import gaussian_filter

    p = gaussian_filter(disk, 0.7) + 1e-9
    p *= np.sqrt(photons / np.sum(p ** 2))
    return p.astype(np.complex64)


def _object(size: int, seed: int = 3) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    amp = 1.0 + 0.6 * gaussian_filter(rng.standard_normal((size, size)), 2.0) / 0.15
    amp = np.clip(amp, 0.3, 2.5)
    phase = 0.8 * gaussian_filter(rng.standard_normal((size, size)), 3.0) / 0.1
    return (amp * np.exp(1j * np.clip(phase, -2, 2))).astype(np.complex64)


def _dataset(noise: bool, photons: float = 1e6, step: float = 3.0, jitter: float = 0.4,
             seed: int = 0) -> Dataset:
    """Dense, slightly jittered grid scan of a small object; every pattern in the test split."""
    obj = _object(SIZE)
    rng = np.random.default_rng(seed)
    grid = np.arange(6.0, SIZE - 6.0 + 1e-9, step)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    xs = gx.ravel() + rng.uniform(-jitter, jitter, gx.size)
    ys = gy.ravel() + rng.uniform(-jitter, jitter, gy.size)
    probe = _disk_probe(N, 4.5, photons)
    pad = required_pad(N)
    canvas = pad_canvas(torch.from_numpy(obj), pad)
    with torch.no_grad():
        patches = extract_patches(canvas, torch.from_numpy(xs + pad), torch.from_numpy(ys + pad), N)
        lam = expected_counts(torch.from_numpy(probe), patches).numpy()
    counts = rng.poisson(lam).astype(np.float32) if noise else lam.astype(np.float32)
    n = len(xs)
    split = np.full(n, TEST, dtype=np.int8)
    split[:2] = TRAIN  # two training patterns that must not be used
    counts[:2] = 1e6   # poison them: if used, the reconstruction breaks
    return Dataset(xcoords=xs, ycoords=ys, counts=counts, probe=probe, obj=obj,
                   scan_index=np.arange(n), split=split, metadata={})


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are tiny: one thread avoids OpenMP oversubscription on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clean():
    return _dataset(noise=False)


def _pearson(a, b, mask):
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def test_lsqml_reconstructs_noise_free(clean):
    res = reconstruct(clean, iterations=60)
    assert res.obj.shape == clean.obj.shape and res.obj.dtype == np.complex64
    assert res.n_patterns == len(clean.indices("test"))
    region = res.covered_illuminated
    assert region.mean() > 0.2
    r = _pearson(np.abs(res.obj), np.abs(clean.obj), region)
    assert r > 0.95, r
    # the physical probe fixes the amplitude scale: no rescale needed
    ratio = np.abs(res.obj)[region].mean() / np.abs(clean.obj)[region].mean()
    assert abs(ratio - 1) < 0.05
    # noise-free (non-integer) counts: the photon hold-out is switched off, last iterate returned
    assert res.holdout_history == [] and res.best_iteration == res.iterations
    assert "not integers" in res.params["holdout_note"]
    costs = res.cost_history
    assert len(costs) == res.iterations + 1
    assert costs[-1] < 0.01 * costs[0]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(costs, costs[1:], strict=False))  # monotone
    s = res.summary()
    json.dumps(s)
    assert s["patterns_per_second"] > 0 and s["seconds_per_pattern"] > 0


def test_rpie_reconstructs_noise_free(clean):
    res = reconstruct(clean, iterations=15, algorithm="rpie")
    r = _pearson(np.abs(res.obj), np.abs(clean.obj), res.covered_illuminated)
    assert r > 0.95, r
    assert res.cost_history[-1] < 0.05 * res.cost_history[0]


def test_deterministic_under_seed():
    ds = _dataset(noise=True, photons=1e5)
    a = reconstruct(ds, iterations=6, algorithm="rpie", seed=5, batch_size=8)
    b = reconstruct(ds, iterations=6, algorithm="rpie", seed=5, batch_size=8)
    c = reconstruct(ds, iterations=6, algorithm="rpie", seed=6, batch_size=8)
    assert np.array_equal(a.obj, b.obj) and a.cost_history == b.cost_history
    assert not np.array_equal(a.obj, c.obj)
    d = reconstruct(ds, iterations=6, seed=5)
    e = reconstruct(ds, iterations=6, seed=5)
    assert np.array_equal(d.obj, e.obj) and d.holdout_history == e.holdout_history


def test_holdout_early_stopping_on_noisy_data():
    # ~30 photons per pattern on a sparse scan: the fit starts modelling noise within a few
    # iterations, so the held-out photons stop it
    ds = _dataset(noise=True, photons=30, step=5.0)
    res = reconstruct(ds, iterations=40, patience=3)
    assert res.params["holdout"] == pytest.approx(0.1)
    assert len(res.holdout_history) == len(res.cost_history)
    assert res.best_iteration == int(np.argmin(res.holdout_history))
    assert 1 <= res.best_iteration < res.iterations < 40
    assert "did not improve" in res.stop_reason
    assert res.iterations - res.best_iteration == 3
    assert res.refit_iterations == res.best_iteration  # redone on all photons
    assert res.total_iterations == res.iterations + res.refit_iterations
    r = _pearson(np.abs(res.obj), np.abs(ds.obj), res.covered_illuminated)
    assert r > 0.5, r
    no_refit = reconstruct(ds, iterations=40, patience=3, refit=False)
    assert no_refit.refit_iterations == 0 and no_refit.best_iteration == res.best_iteration
    assert not np.array_equal(no_refit.obj, res.obj)
    # high dose: the held-out cost keeps falling, every iteration runs
    high = reconstruct(_dataset(noise=True, photons=1e5), iterations=8, patience=3)
    assert high.iterations == 8 and high.best_iteration == 8 and high.refit_iterations == 0


def test_smoothing_is_opt_in_and_its_width_follows_the_dose():
    """The PINN refinement's hold-out-chosen low-pass, available to the baseline on request."""
    low = _dataset(noise=True, photons=30, step=5.0)
    plain = reconstruct(low, iterations=40, patience=3)
    assert plain.params["smooth"] is False and plain.params["smooth_sigma_px"] == 0.0
    smoothed = reconstruct(low, iterations=40, patience=3, smooth=True)
    assert smoothed.params["smooth_sigma_px"] > 0 and len(smoothed.params["smooth_scores"]) >= 2
    # the chosen width has the lowest held-out deviance of the widths scored
    scores = dict((s, d) for s, d in smoothed.params["smooth_scores"])
    assert scores[smoothed.params["smooth_sigma_px"]] == min(scores.values())
    assert not np.array_equal(plain.obj, smoothed.obj)
    high = reconstruct(_dataset(noise=True, photons=1e6), iterations=8, patience=3, smooth=True)
    assert high.params["smooth_sigma_px"] < smoothed.params["smooth_sigma_px"]
    off = reconstruct(low, iterations=10, holdout=0.0, smooth=True)
    assert off.params["smooth_sigma_px"] == 0.0 and "needs the hold-out" in off.params["smooth_note"]


def test_split_photons_is_a_binomial_thinning():
    rng = np.random.default_rng(0)
    counts = rng.poisson(7.0, size=(50, 8, 8)).astype(np.float32)
    fit, held = split_photons(counts, 0.25, seed=1)
    assert np.array_equal(fit + held, counts)
    assert (held >= 0).all() and (fit >= 0).all()
    assert abs(held.sum() / counts.sum() - 0.25) < 0.02


def test_coverage_matches_the_stitcher(clean):
    idx = clean.indices("test")
    cov = coverage_mask(clean, idx, clean.obj.shape, 6)
    st = stitch_to_object_frame(torch.ones(len(idx), N, N), torch.from_numpy(clean.xcoords[idx]),
                                torch.from_numpy(clean.ycoords[idx]), clean.obj.shape, 6)
    assert np.array_equal(cov, st.covered.numpy())


def test_minibatch_lsqml_reconstructs_and_one_batch_is_the_full_batch_step(clean):
    # minibatches of 10: every batch's own closed-form step with the preconditioner of all
    # patterns; the fit still converges on noise-free data
    mb = reconstruct(clean, iterations=30, batch_size=10)
    assert mb.params["batch_size"] == 10
    assert _pearson(np.abs(mb.obj), np.abs(clean.obj), mb.covered_illuminated) > 0.95
    assert mb.cost_history[-1] < 0.01 * mb.cost_history[0]
    # one batch holding every pattern is the full-batch update (only the summation order of the
    # scatter differs: shuffled patterns)
    n = mb.n_patterns
    full = reconstruct(clean, iterations=3, batch_size=None)
    one = reconstruct(clean, iterations=3, batch_size=n)
    np.testing.assert_allclose(one.cost_history, full.cost_history, rtol=1e-4)
    np.testing.assert_allclose(one.step_history, full.step_history, rtol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        reconstruct(clean, iterations=1, batch_size=0)


def test_group_limit_and_bad_arguments(clean):
    res = reconstruct(clean, iterations=2, group_limit=10)
    assert res.n_patterns == 10 and np.array_equal(res.indices, clean.indices("test")[:10])
    with pytest.raises(ValueError, match="algorithm"):
        reconstruct(clean, algorithm="nope")
    with pytest.raises(ValueError, match="likelihood"):
        reconstruct(clean, iterations=1, likelihood="gauss")
    with pytest.raises(ValueError, match="iterations"):
        reconstruct(clean, iterations=0)


def test_poisson_likelihood_runs(clean):
    res = reconstruct(clean, iterations=20, likelihood="poisson")
    assert res.likelihood == "poisson"
    assert res.cost_history[-1] < 0.05 * res.cost_history[0]


def test_command_writes_files_and_refuses_existing_dir(tmp_path, capsys):
    from ptychotrace.commands import baseline as cmd

    ds = _dataset(noise=True, photons=1e5)
    data = save_dataset(tmp_path / "tiny.npz", ds)
    out = tmp_path / "bl"
    argv = ["--data", str(data), "--output-dir", str(out), "--iterations", "5", "--no-progress",
            "--stitch-window", "6"]

    import argparse

    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["baseline", *argv])
    assert args.handler(args) == 0
    for name in (*cmd.OUTPUT_FILES, cmd.COMPARISON_FILE):
        assert (out / name).is_file(), name
    amp = np.load(out / "amplitude.npy")
    assert amp.dtype == np.float32 and amp.shape == ds.obj.shape
    assert np.load(out / "phase.npy").dtype == np.float32
    stats = json.loads((out / "stats.json").read_text())
    assert stats["reconstruction"]["n_patterns"] == len(ds.indices("test"))
    cmp = json.loads((out / cmd.COMPARISON_FILE).read_text())
    assert cmp["amplitude"]["pearson_r"] is not None
    region = cmp["evaluation_region"]  # the shared recipe: covered & illuminated
    assert region["evaluated_fraction"] <= region["stitch_covered_fraction"]
    assert cmp["amplitude"]["coverage_fraction"] == pytest.approx(region["evaluated_fraction"])

    with pytest.raises(FileExistsError):
        args.handler(parser.parse_args(["baseline", *argv]))
    args = parser.parse_args(["baseline", *argv, "--force"])
    assert args.handler(args) == 0
    assert any(p.name.startswith("bl.bak-") for p in tmp_path.iterdir())


def test_cdtools_adapter_when_installed(clean):
    pytest.importorskip("cdtools")
    res = reconstruct(clean, iterations=30, algorithm="cdtools")
    r = _pearson(np.abs(res.obj), np.abs(clean.obj), res.covered_illuminated)
    assert r > 0.9, r


def _one_undamped_step(ds: Dataset) -> np.ndarray:
    """One LSQ-ML iteration from ones, written out from the forward operators (amplitude target,
    direction scatter(conj(P) chi) / (D + delta max D), closed-form step), in the object frame."""
    from ptychotrace.baseline.solver import BETA_MAX, LSQ_DELTA
    from ptychotrace.physics.forward import far_field, inverse_far_field, scatter_patches
    from ptychotrace.physics.stitching import ILLUMINATED_FRACTION, illumination_map

    idx = ds.indices("test")
    pad = required_pad(N)
    shape = (SIZE + 2 * pad, SIZE + 2 * pad)
    probe = torch.from_numpy(ds.probe)
    xs = torch.from_numpy(ds.xcoords[idx] + pad)
    ys = torch.from_numpy(ds.ycoords[idx] + pad)
    sqrt_i = torch.from_numpy(ds.counts[idx]).sqrt()
    obj = torch.ones(shape, dtype=torch.complex64)
    psi = probe * extract_patches(obj, xs, ys, N)
    f = far_field(psi)
    chi = inverse_far_field(f * sqrt_i / f.abs().clamp_min(1e-30)) - psi
    d_map = illumination_map(probe, xs, ys, shape)
    direction = scatter_patches(probe.conj() * chi, xs, ys, shape) / (
        d_map + LSQ_DELTA * float(d_map.max()))
    dpsi = probe * extract_patches(direction, xs, ys, N)
    beta = float((dpsi.conj() * chi).real.double().sum()) / float(dpsi.abs().square().double().sum())
    out = (obj + min(max(beta, 0.0), BETA_MAX) * direction)[pad:pad + SIZE, pad:pad + SIZE]
    lit = (d_map >= ILLUMINATED_FRACTION * float(d_map.max()))[pad:pad + SIZE, pad:pad + SIZE]
    return torch.where(lit, out, torch.zeros((), dtype=out.dtype)).numpy()


def test_zero_damping_is_the_undamped_lsqml_step(clean):
    """Both dampings 0 reproduce the plain LSQ-ML update (the solver before the damping)."""
    from ptychotrace.baseline.solver import LSQ_DELTA, lsq_preconditioner

    res = reconstruct(clean, iterations=1, holdout=0.0, damping=0.0, damping_photons=0.0)
    np.testing.assert_allclose(res.obj, _one_undamped_step(clean), rtol=1e-5, atol=1e-5)
    assert res.params["lsq_damping"] == 0.0 and res.params["lsq_damping_photons"] == 0.0
    # 1e6 photons per pattern: the default photon floor is negligible against D, a relative
    # damping is not
    default = reconstruct(clean, iterations=1, holdout=0.0)
    np.testing.assert_allclose(default.obj, res.obj, rtol=1e-4, atol=1e-4)
    relative = reconstruct(clean, iterations=1, holdout=0.0, damping=0.1, damping_photons=0.0)
    assert not np.allclose(relative.obj, res.obj, rtol=1e-4, atol=1e-4)
    d = torch.tensor([[0.0, 1e-30, 0.5], [3.0, 7.0, 10.0]])
    undamped = lsq_preconditioner(d, LSQ_DELTA, 0.0, 0.0)
    assert torch.equal(undamped, d + LSQ_DELTA * 10.0)               # bit-exact
    # the relative form is pty-chi's sqrt(D^2 + (gamma max D)^2)
    torch.testing.assert_close(lsq_preconditioner(d, 0.0, 0.1, 0.0), torch.sqrt(d**2 + 1.0))
    for bad in ({"damping": -0.1}, {"damping_photons": float("nan")}):
        with pytest.raises(ValueError, match="damping"):
            reconstruct(clean, iterations=1, **bad)


def test_damping_shrinks_the_steps_where_the_probe_barely_reaches():
    """A larger damping divides by more where D << max D and by almost nothing more where D is
    near its maximum, so after one iteration the weakly lit pixels have moved less relative to
    the well-lit ones."""
    from ptychotrace.baseline.solver import lsq_preconditioner

    d = torch.linspace(0.0, 100.0, 101)                # photons
    for key, values in (("damping", (0.0, 0.05, 0.1, 0.3)), ("damping_photons", (0.0, 1.0, 3.0, 10.0))):
        dens = [lsq_preconditioner(d, 1e-3, **{"damping": 0.0, "damping_photons": 0.0, key: v})
                for v in values]
        for lo, hi in zip(dens, dens[1:], strict=False):
            assert bool((hi >= lo).all())
            gain = hi / lo                     # how much smaller the damped step is, per pixel
            assert bool((gain[1:] <= gain[:-1]).all()) and float(gain[-1]) < 1.05
    ds = _dataset(noise=True, photons=1e4, step=5.0)
    moved = {}
    for g in (0.0, 0.3):
        res = reconstruct(ds, iterations=1, holdout=0.0, damping=g, damping_photons=0.0)
        illum = res.illumination / res.illumination.max()
        change = np.abs(res.obj - 1)
        weak = res.illuminated & (illum < 0.1)
        strong = illum > 0.5
        assert weak.sum() > 20 and strong.sum() > 20
        moved[g] = np.median(change[weak]) / np.median(change[strong])
    # measured 0.32 against 3.45 on this fixture (a factor 11): a factor 2 is a wide margin
    assert moved[0.3] < 0.5 * moved[0.0], moved


def test_command_refuses_a_bad_damping_before_writing(tmp_path):
    import argparse

    from ptychotrace.commands import baseline as cmd

    data = save_dataset(tmp_path / "tiny.npz", _dataset(noise=True, photons=1e5))
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    for flag in ("--damping", "--damping-photons"):
        out = tmp_path / f"bl{flag}"
        # refused at the flag (the BaselineConfig bound, ge=0: argparse exits 2) or by the
        # handler; either way before anything is written
        with pytest.raises((SystemExit, ValueError)):
            args = parser.parse_args(["baseline", "--data", str(data), "--output-dir", str(out),
                                      "--no-progress", flag, "-1"])
            args.handler(args)
        assert not out.exists()


def test_baseline_config_defaults_are_the_solvers():
    """The damping defaults are defined in the solver and mirrored in BaselineConfig (the CLI)."""
    from ptychotrace.baseline.solver import LSQ_DAMPING, LSQ_DAMPING_PHOTONS
    from ptychotrace.config import BaselineConfig

    assert BaselineConfig().damping == LSQ_DAMPING
    assert BaselineConfig().damping_photons == LSQ_DAMPING_PHOTONS


def test_warm_start_from_the_truth_starts_at_the_noise_free_optimum(clean):
    """``init`` replaces the flat start: from the true object the noise-free cost at iterate 0
    is near 0 (the exact solution up to the canvas margin, which starts at the object's mean,
    not at the simulation's padding), from the flat start it is not; steps from there stay."""
    truth = clean.obj
    warm = reconstruct(clean, iterations=2, holdout=0.0, init=truth)
    flat = reconstruct(clean, iterations=2, holdout=0.0)
    assert warm.cost_history[0] < 1e-4 * flat.cost_history[0]
    inside = np.zeros_like(warm.covered)
    inside[12:-12, 12:-12] = True                 # away from the margin's mismatch
    inside &= warm.illuminated & warm.covered
    assert inside.sum() > 300
    assert np.abs(warm.obj[inside] - truth[inside]).max() < 2e-3 * np.abs(truth).max()


def test_warm_start_beats_the_flat_start_at_equal_iterations(clean):
    """A start near the answer (the truth blurred, a network's kind of error) ends closer after
    5 iterations than the flat start does."""
    from scipy.ndimage import gaussian_filter
    near = (gaussian_filter(clean.obj.real, 1.5) + 1j * gaussian_filter(clean.obj.imag, 1.5))
    warm = reconstruct(clean, iterations=5, holdout=0.0, init=near.astype(np.complex64))
    flat = reconstruct(clean, iterations=5, holdout=0.0)
    m = warm.covered & warm.illuminated
    err = lambda o: float(np.abs(np.abs(o[m]) - np.abs(clean.obj[m])).mean())  # noqa: E731
    assert err(warm.obj) < 0.5 * err(flat.obj)


def test_warm_start_refuses_a_wrong_shape_or_non_finite_values(clean):
    with pytest.raises(ValueError, match="object frame's shape"):
        reconstruct(clean, iterations=1, init=np.ones((SIZE - 1, SIZE), np.complex64))
    bad = np.ones((SIZE, SIZE), np.complex64)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        reconstruct(clean, iterations=1, init=bad)
