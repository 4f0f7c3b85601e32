"""Native iterative ptychography with a known probe and known positions (the classical reference).

Problem: find the object canvas ``O`` that explains the measured counts ``I_j`` of the chosen split
through ``I_j ~ Poisson(|far_field(P * extract(O, x_j, y_j))|^2)``, with the physical probe ``P``
and the positions fixed as given. Every operator is ptychotrace's own (``far_field`` /
``inverse_far_field``, bilinear ``extract_patches`` and its exact adjoint ``scatter_patches``): the
baseline and the PINN see the same forward model, so a difference between them is a difference of
inversion, not of physics. Measurements and the reasons for every default: docs/baseline.md.

Algorithms (``ALGORITHMS``):

``lsqml`` (default): full-batch least-squares maximum-likelihood update (Odstrcil, Menzel &
    Guizar-Sicairos, Opt. Express 26, 3108 (2018), object-only form):
    1. exit waves ``psi_j = P * O_j`` and far fields ``F_j`` for all patterns at once;
    2. an exit-wave target from the likelihood (see ``LIKELIHOODS``): the far field's modulus is
       moved towards the data, its phase kept; ``chi_j = F^-1(F'_j) - psi_j``;
    3. the object direction ``d = scatter(conj(P) chi) / (hypot(D, mu + gamma max D) + delta max D)``
       with the illumination ``D = scatter(|P|^2)`` in photons: the row sums of the normal matrix
       ``E^H |P|^2 E``, which majorise it, so a unit step is an error-reduction step that cannot
       increase the amplitude cost. The damping (:func:`lsq_preconditioner`) shrinks the step where
       the probe delivers few photons: ``mu`` (``damping_photons``, default
       ``LSQ_DAMPING_PHOTONS``) is a floor in photons, ``gamma`` (``damping``, default 0) is
       PtychoShelves' / pty-chi's relative form ``sqrt(D^2 + (gamma max D)^2)``. Why photons:
       the amplitude residual has noise variance ~1/4 per detector pixel at any dose, so the
       noise of a pixel's undamped step is ~``0.5 / sqrt(D)``; ``D + mu`` is the Wiener
       (Tikhonov) shrinkage for a step of prior size ``0.5 / sqrt(mu)``. A photon floor damps
       dim rims and low doses and vanishes at high dose, where a relative ``gamma`` would slow
       convergence in every dim pixel (measured in docs/baseline.md). ``mu = gamma = 0`` is the
       undamped update exactly;
    4. the step ``beta`` minimising ``sum_j ||chi_j - P * extract(beta d)_j||^2`` in closed form
       (clipped to ``[0, BETA_MAX]``; it grows from 1 to ~2 as the iterations go), ``O += beta d``.
    Why it is the default: monotone and free of tuning apart from the damping; one vectorised pass
    over all patterns per iteration (2 FFTs, 2 extractions, 1 scatter), far cheaper on a CPU than
    a Python-level loop over positions; and on gs1_ideal it reached the best quality of the
    native algorithms at both 1e9 and 1e4 photons (docs/baseline.md).
``rpie``: regularised PIE (Maiden, Johnson & Li, Optica 4, 736 (2017)) in seeded random
    minibatches of ``batch_size`` patterns (1 = classic sequential rPIE):
    ``O += scatter(conj(P) chi) / ((1 - alpha) D_b + alpha max D_b)`` with ``D_b`` the
    illumination of the minibatch and ``alpha = RPIE_ALPHA``. Fewer epochs, more time per epoch.
``cdtools``: the optional CDTools (``cdtools-py``, extra ``baseline``) FancyPtycho model with
    everything but the object frozen; see :mod:`ptychotrace.baseline.cdtools_adapter`. Not the
    default: its own FFT convention (intensity-equivalent), its own sub-pixel model
    (Fourier-shifted probe instead of our bilinear object interpolation, so it cannot fit our
    simulated data exactly), a metre-based geometry that has to be faked, Adam with a learning
    rate to choose, and a dependency that CI does not install.

Likelihoods (``LIKELIHOODS``) decide the far-field target ``F'``:

``amplitude`` (default): Gaussian noise on ``sqrt(I)`` (the variance-stabilised Poisson), modulus
    projection ``F' = sqrt(I) F / |F|``. Cost ``mean((|F| - sqrt(I))^2)`` per detector pixel
    (~0.25 at the noise floor for counts >> 1, less at low counts).
``poisson``: Poisson negative log-likelihood ``lam - I log lam``, target one Newton step in the
    far-field modulus: ``F' = F * 2I / (|F|^2 + I)`` (equal to the projection at ``|F|^2 = I``,
    never amplifies a modulus by more than 2). Cost: mean half-deviance
    ``lam - I + I log(I/lam)`` per pixel (~0.5 at the noise floor for counts >> 1).
    Measured on gs1_ideal it was worse than ``amplitude`` at 1e4 and 1e3 photons (the
    amplitude target is the better-conditioned one for this ER-type update, as Godard et al.,
    Opt. Express 20, 25914 (2012) found), so it is an option, not the default.

Early stopping without ground truth: a fraction ``holdout`` (default 0.1) of every pixel's photons
is split off by binomial thinning, ``I_out ~ Binomial(I, holdout)``. For Poisson data the two parts
are independent Poisson draws with means ``(1 - holdout) lam`` and ``holdout lam``; the solver fits
the rest (with the probe scaled by ``sqrt(1 - holdout)``), evaluates the held-out photons' Poisson
deviance at every iterate for free (same forward pass), returns the iterate where it is lowest and
stops after ``patience`` iterations without improvement. At high dose the held-out cost keeps
falling and all iterations run; at low dose the fit starts to model noise after a few iterations
and the hold-out stops it there. Non-integer counts (noise-free simulations) cannot be thinned:
the hold-out is switched off and recorded as such. The thinning code lives in
:mod:`ptychotrace.physics.holdout`, shared with the PINN's inference refinement.

Regions: ``covered`` is exactly the PINN evaluation's coverage: the weights of
``stitch_to_object_frame`` with the central ``window`` x ``window`` pixels of every patch (default
20, the stitch window M) at the same positions, thresholded at ``COVERAGE_MIN_WEIGHT``.
``illuminated`` is where the probe intensity summed over the scan, ``scatter(|P|^2)``, is at least
``ILLUMINATED_FRACTION`` of its maximum; outside it the data do not constrain the object and the
returned object is 0 there (like the stitcher's 0 where no patch reaches). With the ideal disk
probe (radius ~10.9 px) the corners of a 20 x 20 window are dark, so ``covered`` holds a few
percent of pixels that no iterative method can recover: metrics are reported on ``covered`` and on
``covered & illuminated``.

The object starts at 1 everywhere (no ground truth is used); only the chosen split's counts,
positions and the dataset's probe enter the reconstruction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import Dataset
from ..physics.forward import (
    extract_patches,
    far_field,
    inverse_far_field,
    required_pad,
    scatter_patches,
)
from ..physics.holdout import choose_smoothing, holdout_reason, smooth_canvas, split_photons
from ..physics.stitching import ILLUMINATED_FRACTION, illumination_map
from .result import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    DEFAULT_ITERATIONS,
    LIKELIHOODS,
    NATIVE_ALGORITHMS,
    BaselineResult,
    Progress,
    check_likelihood,
    converged_at,
    coverage_mask,
)

#: Default minibatch sizes (None = all patterns in one batch).
DEFAULT_BATCH_SIZE = {"lsqml": None, "rpie": 16}
#: rPIE regularisation alpha (Maiden et al. 2017 recommend 0.05-0.25 for the object).
RPIE_ALPHA = 0.1
#: LSQ-ML illumination floor, relative to the maximum illumination (guards unlit pixels: D = 0).
LSQ_DELTA = 1e-3
#: LSQ-ML preconditioner damping floor mu in photons: the direction is divided by
#: ``hypot(D, mu + gamma max D)``. 2 photons: on gs1_ideal at 1e4 photons per pattern it damps like
#: pty-chi's relative 0.1 (max D is ~20 photons there) and best among those measured; at 1e9 it
#: is ~1e-6 of max D, i.e. no change (docs/baseline.md).
LSQ_DAMPING_PHOTONS = 2.0
#: Relative damping gamma, pty-chi's ``preconditioning_damping_factor`` (0.1 there); 0 here by
#: default, because at 1e9 photons it cost 0.014 amplitude SSIM in 100 iterations (docs/baseline.md).
LSQ_DAMPING = 0.0
#: Upper clip of the closed-form LSQ step.
BETA_MAX = 4.0
#: Default fraction of every pixel's photons held out (binomial thinning) for early stopping.
DEFAULT_HOLDOUT = 0.1
#: Stop once the hold-out cost has not improved for this many iterations.
DEFAULT_PATIENCE = 10
#: Patterns per chunk of a full-batch pass (bounds memory at ~ chunk * N^2 * 40 bytes).
CHUNK = 1024

@dataclass(frozen=True)
class _Problem:
    """The split's data on torch, positions shifted onto the padded canvas.

    ``probe`` is the probe seen by the fitted photons: ``sqrt(1 - holdout) * P`` (thinning keeps
    a fraction of the photons, which scales every expected count by it)."""

    probe: torch.Tensor                # (N, N) complex64, sqrt(photons)
    counts: torch.Tensor               # (P, N, N) float32, fitted photons
    sqrt_counts: torch.Tensor          # (P, N, N) float32
    holdout_counts: torch.Tensor | None  # (P, N, N) float32 held-out photons, or None
    holdout_ratio: float               # E[held-out] / E[fitted] = h / (1 - h)
    xs: torch.Tensor                   # (P,) float64, padded-canvas pixels
    ys: torch.Tensor
    canvas_shape: tuple[int, int]
    object_shape: tuple[int, int]
    pad: int
    valid: torch.Tensor | None = None  # (N, N) bool detector mask, True = measured (None = all)


def select_indices(ds: Dataset, split: str, group_limit: int | None) -> np.ndarray:
    """Indices of the split's patterns in dataset order, the first ``group_limit`` of them."""
    if split == "all":
        idx = np.arange(ds.n_patterns)
    elif split in ("train", "test"):
        idx = ds.indices(split)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if len(idx) == 0:
        raise ValueError(f"the dataset has no '{split}' patterns")
    if group_limit is not None:
        if group_limit < 1:
            raise ValueError(f"group_limit must be >= 1, got {group_limit}")
        idx = idx[:group_limit]
    return idx


def object_shape_of(ds: Dataset) -> tuple[int, int]:
    """(H, W) of the object frame: the ground truth's shape, else the metadata's object size, else
    the smallest frame that holds every position."""
    if ds.obj is not None:
        return int(ds.obj.shape[0]), int(ds.obj.shape[1])
    frame = (ds.metadata.get("geometry") or {}).get("object_frame")   # real data (ptychotrace.io)
    if frame:
        return int(frame["height_px"]), int(frame["width_px"])
    size = (ds.metadata.get("simulation") or {}).get("object_size")
    if size:
        return int(size), int(size)
    return int(math.ceil(ds.ycoords.max())) + 1, int(math.ceil(ds.xcoords.max())) + 1


def _problem(ds: Dataset, idx: np.ndarray, object_shape: tuple[int, int], holdout: float,
             seed: int) -> tuple[_Problem, str | None]:
    n = ds.patch_size
    pad = required_pad(n)
    h, w = object_shape
    counts = np.ascontiguousarray(ds.counts[idx], dtype=np.float32)
    if ds.valid is not None:
        # masked pixels are excluded from every cost and update (the model's own modulus is kept
        # there); 0 here only keeps their values out of the hold-out decision and its RNG draws
        counts = np.where(ds.valid, counts, np.float32(0))
    reason = holdout_reason(counts, holdout)
    probe = np.asarray(ds.probe, dtype=np.complex64)
    held = None
    ratio = 0.0
    if reason is None:
        counts, held_np = split_photons(counts, holdout, seed)
        held = torch.from_numpy(held_np)
        probe = (probe * np.float32(math.sqrt(1.0 - holdout))).astype(np.complex64)
        ratio = holdout / (1.0 - holdout)
    fit = torch.from_numpy(counts)
    return _Problem(
        probe=torch.from_numpy(probe), counts=fit, sqrt_counts=fit.sqrt(), holdout_counts=held,
        holdout_ratio=ratio,
        xs=torch.from_numpy(ds.xcoords[idx].astype(np.float64) + pad),
        ys=torch.from_numpy(ds.ycoords[idx].astype(np.float64) + pad),
        canvas_shape=(h + 2 * pad, w + 2 * pad), object_shape=(h, w), pad=pad,
        valid=None if ds.valid is None else torch.from_numpy(np.asarray(ds.valid, bool))), reason


# --------------------------------------------------------------------------------------------
# Costs and exit-wave targets
# --------------------------------------------------------------------------------------------
def _half_deviance(lam: torch.Tensor, counts: torch.Tensor,
                   valid: torch.Tensor | None = None) -> float:
    """sum(lam - I + I log(I / lam)) in float64 (0 for a perfect fit), over valid pixels."""
    lam64 = lam.to(torch.float64).clamp_min(1e-12)
    i64 = counts.to(torch.float64)
    log_term = torch.where(i64 > 0, i64 * torch.log(i64.clamp_min(1e-300) / lam64),
                           torch.zeros_like(i64))
    term = lam64 - i64 + log_term
    if valid is not None:
        term = torch.where(valid, term, torch.zeros_like(term))
    return float(term.sum())


def _pass(obj: torch.Tensor, prob: _Problem, sel: torch.Tensor, likelihood: str,
          want_residual: bool):
    """Forward pass on the selected patterns.

    Returns (chi or None, fit cost sum, hold-out cost sum, xs, ys) where
    chi = exit-wave target - exit wave (the likelihood's target, see the module docstring)."""
    n = prob.probe.shape[-1]
    xs, ys = prob.xs[sel], prob.ys[sel]
    psi = prob.probe * extract_patches(obj, xs, ys, n)
    f = far_field(psi)
    lam = f.real.square() + f.imag.square()
    counts, sqrt_counts = prob.counts[sel], prob.sqrt_counts[sel]
    held = 0.0
    if prob.holdout_counts is not None:
        held = _half_deviance(lam * prob.holdout_ratio, prob.holdout_counts[sel], prob.valid)
    if likelihood == "amplitude":
        amp = lam.sqrt()
        sq = (amp - sqrt_counts).to(torch.float64).square()
        cost = float((sq if prob.valid is None else torch.where(prob.valid, sq, 0.0)).sum())
        # modulus projection F' = sqrt(I) F / |F|; where the model is exactly 0 take phase 0
        ratio = sqrt_counts / amp.clamp_min(1e-30)
    else:
        cost = _half_deviance(lam, counts, prob.valid)
        # one Newton step in the modulus of the Poisson NLL: F' = F * 2I / (|F|^2 + I)
        ratio = 2.0 * counts / (lam + counts).clamp_min(1e-30)
    if not want_residual:
        return None, cost, held, xs, ys
    target = torch.where(lam > 0, f * ratio, sqrt_counts.to(f.dtype))
    if prob.valid is not None:   # masked pixels: no measurement, keep the model's far field
        target = torch.where(prob.valid, target, f)
    chi = inverse_far_field(target) - psi
    return chi, cost, held, xs, ys


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------
def _chunks(n: int):
    for start in range(0, n, CHUNK):
        yield torch.arange(start, min(start + CHUNK, n))


def _full_pass(obj, prob: _Problem, likelihood: str, want_residual: bool):
    """All patterns in chunks: (list of (chi, xs, ys), fit cost sum, hold-out cost sum)."""
    parts, cost, held = [], 0.0, 0.0
    for sel in _chunks(len(prob.xs)):
        chi, c, h, xs, ys = _pass(obj, prob, sel, likelihood, want_residual)
        cost += c
        held += h
        parts.append((chi, xs, ys))
    return parts, cost, held


def lsq_preconditioner(illumination: torch.Tensor, delta: float = LSQ_DELTA,
                       damping: float = LSQ_DAMPING,
                       damping_photons: float = LSQ_DAMPING_PHOTONS) -> torch.Tensor:
    """The LSQ-ML direction's denominator ``hypot(D, mu + gamma max D) + delta max D``.

    illumination: (H, W) float ``D = scatter(|P|^2)`` in photons; returns the same shape and
    units. ``damping`` = gamma (relative to max D), ``damping_photons`` = mu (photons). With both 0
    it is ``D + delta max D`` exactly (hypot(x, 0) = |x|); more damping gives a larger
    denominator (a smaller step) where ``D`` is small against the damping and leaves pixels with
    ``D >> mu + gamma max D`` almost unchanged."""
    for name, value in (("damping", damping), ("damping_photons", damping_photons),
                        ("delta", delta)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"LSQ-ML {name} must be finite and >= 0, got {value!r}")
    d_max = float(illumination.max())
    floor = torch.full_like(illumination, damping_photons + damping * d_max)
    return torch.hypot(illumination, floor) + delta * d_max


def _lsqml_update(obj, prob: _Problem, parts, den) -> tuple[torch.Tensor, float]:
    """Preconditioned direction and closed-form LSQ step from the residuals of a full pass."""
    n = prob.probe.shape[-1]
    conj_p = prob.probe.conj()
    grad = None
    for chi, xs, ys in parts:
        g = scatter_patches(conj_p * chi, xs, ys, prob.canvas_shape)
        grad = g if grad is None else grad + g
    direction = grad / den
    num = den_step = 0.0
    for chi, xs, ys in parts:
        dpsi = prob.probe * extract_patches(direction, xs, ys, n)
        num += float((dpsi.conj() * chi).real.to(torch.float64).sum())
        den_step += float((dpsi.real.square() + dpsi.imag.square()).to(torch.float64).sum())
    beta = min(max(num / den_step, 0.0), BETA_MAX) if den_step > 0 else 0.0
    return obj + beta * direction, beta


def _rpie_epoch(obj, prob: _Problem, likelihood: str, batch_size: int,
                gen: torch.Generator) -> torch.Tensor:
    """One epoch of minibatch rPIE in a seeded random order."""
    conj_p = prob.probe.conj()
    order = torch.randperm(len(prob.xs), generator=gen)
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        chi, _, _, xs, ys = _pass(obj, prob, sel, likelihood, True)
        d = illumination_map(prob.probe, xs, ys, prob.canvas_shape)
        den = (1 - RPIE_ALPHA) * d + RPIE_ALPHA * float(d.max())
        obj = obj + scatter_patches(conj_p * chi, xs, ys, prob.canvas_shape) / den
    return obj


@dataclass
class _Run:
    best_obj: torch.Tensor
    last_obj: torch.Tensor
    best_k: int
    costs: list[float]
    held_costs: list[float]
    steps: list[float]
    stop_reason: str
    illumination: torch.Tensor   # canvas, fitted photons
    illuminated: torch.Tensor    # canvas bool


@torch.no_grad()
def _iterate(prob: _Problem, algorithm: str, lik: str, iterations: int, batch_size: int | None,
             seed: int, delta: float, patience: int | None, tol: float | None,
             callback, progress, *, damping: float = LSQ_DAMPING,
             damping_photons: float = LSQ_DAMPING_PHOTONS) -> _Run:
    """The iteration loop: full-batch cost (and hold-out cost) at every iterate 0..K."""
    gen = torch.Generator().manual_seed(int(seed))
    n_pix = float(prob.counts.numel() if prob.valid is None
                  else prob.counts.shape[0] * int(prob.valid.sum()))
    h, w = prob.object_shape
    crop = (slice(prob.pad, prob.pad + h), slice(prob.pad, prob.pad + w))
    costs: list[float] = []
    held_costs: list[float] = []
    steps: list[float] = []
    stop_reason = "iterations"
    full_illum = illumination_map(prob.probe, prob.xs, prob.ys, prob.canvas_shape)
    lsq_den = lsq_preconditioner(full_illum, delta, damping, damping_photons)
    illuminated = full_illum >= ILLUMINATED_FRACTION * float(full_illum.max())
    zero = torch.zeros((), dtype=torch.complex64)
    obj = torch.ones(prob.canvas_shape, dtype=torch.complex64)
    best_obj, best_k, best_held = obj, 0, math.inf
    for k in range(iterations + 1):
        last = k == iterations
        parts, cost, held = _full_pass(obj, prob, lik,
                                       want_residual=(algorithm == "lsqml" and not last))
        costs.append(cost / n_pix)
        if prob.holdout_counts is not None:
            held_costs.append(held / n_pix)
        if not math.isfinite(costs[-1]) or not bool(torch.isfinite(obj).all()):
            raise FloatingPointError(f"baseline diverged at iterate {k} (cost {costs[-1]})")
        if prob.holdout_counts is None or held_costs[-1] < best_held:
            best_obj, best_k = obj, k
            best_held = held_costs[-1] if held_costs else math.inf
        if callback is not None:
            callback(k, torch.where(illuminated, obj, zero)[crop].numpy().copy())
        if k > 0 and progress:
            progress(k, iterations)
        if last:
            break
        if prob.holdout_counts is not None and patience is not None and k - best_k >= patience:
            stop_reason = f"hold-out cost did not improve for {patience} iterations"
            break
        if tol is not None and converged_at(costs, tol) is not None:
            stop_reason = f"fit cost converged (tol {tol:g})"
            break
        if algorithm == "lsqml":
            obj, beta = _lsqml_update(obj, prob, parts, lsq_den)
            steps.append(beta)
        else:
            obj = _rpie_epoch(obj, prob, lik, batch_size or len(prob.xs), gen)
    return _Run(best_obj=best_obj, last_obj=obj, best_k=best_k, costs=costs,
                held_costs=held_costs, steps=steps, stop_reason=stop_reason,
                illumination=full_illum, illuminated=illuminated)


def reconstruct(ds: Dataset, split: str = "test", iterations: int | None = None,
                algorithm: str = DEFAULT_ALGORITHM, group_limit: int | None = None, seed: int = 0,
                progress: Progress | None = None, *, likelihood: str = "amplitude",
                batch_size: int | None = -1, holdout: float = DEFAULT_HOLDOUT,
                patience: int | None = DEFAULT_PATIENCE, refit: bool = True,
                smooth: bool = False, delta: float = LSQ_DELTA, damping: float = LSQ_DAMPING,
                damping_photons: float = LSQ_DAMPING_PHOTONS, window: int = 20,
                tol: float | None = None,
                callback: Callable[[int, np.ndarray], None] | None = None) -> BaselineResult:
    """Reconstruct the object from ``split``'s patterns with the dataset's probe and positions.

    iterations: maximum epochs over the split (default ``DEFAULT_ITERATIONS[algorithm]``);
    group_limit: use only the first ``group_limit`` patterns of the split (dataset order);
    likelihood: ``amplitude`` (default) | ``poisson`` (module docstring);
    batch_size: rPIE patterns per update (-1 = default ``DEFAULT_BATCH_SIZE``); LSQ-ML is full batch;
    holdout: fraction of every pixel's photons held out by binomial thinning (0 = none); the
    iterate with the lowest held-out Poisson deviance is returned, and the run stops after
    ``patience`` iterations without improvement (None = never stop early);
    refit: when the hold-out chose an earlier iterate k, rerun k iterations from the start on all
    photons and return that (so early stopping costs no photons);
    smooth: with the hold-out, a Gaussian low-pass of the result whose width is chosen by the
    held-out deviance (:func:`ptychotrace.physics.holdout.choose_smoothing`, the rule of the
    PINN's refinement); off by default so that the baseline stays the plain algorithm;
    delta, damping, damping_photons: the LSQ-ML preconditioner
    ``hypot(D, damping_photons + damping max D) + delta max D`` (:func:`lsq_preconditioner`; both
    dampings 0 give the undamped update of earlier versions);
    window: stitch window M that defines ``covered`` (the PINN's evaluation region);
    tol: also stop once :func:`converged_at` with this tolerance fires (None = off;
    ``converged_iteration`` is reported either way with ``CONVERGENCE_TOL``);
    callback: ``callback(k, object_frame)`` at every iterate k = 0.. with the current (H, W) complex
    object, for convergence studies.
    Deterministic for a fixed seed (the seed drives the photon split and the rPIE order).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    iterations = DEFAULT_ITERATIONS[algorithm] if iterations is None else int(iterations)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    idx = select_indices(ds, split, group_limit)
    object_shape = object_shape_of(ds)
    if algorithm == "cdtools":
        from .cdtools_adapter import reconstruct_cdtools

        if ds.valid is not None:
            raise ValueError("the cdtools adapter does not take a detector mask; use rpie or lsqml")

        return reconstruct_cdtools(ds, idx, object_shape, split=split, iterations=iterations,
                                   seed=seed, progress=progress, likelihood=likelihood,
                                   window=window)
    if batch_size == -1:
        batch_size = DEFAULT_BATCH_SIZE[algorithm]
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    if algorithm == "lsqml" and batch_size is not None:
        raise ValueError("lsqml is a full-batch method; batch_size applies to rpie only")

    t0 = time.perf_counter()
    lik = check_likelihood(likelihood)
    prob, holdout_note = _problem(ds, idx, object_shape, holdout, seed)
    run = _iterate(prob, algorithm, lik, iterations, batch_size, seed, delta, patience, tol,
                   callback, progress, damping=damping, damping_photons=damping_photons)
    best_obj, refit_iterations = run.best_obj, None
    sigma, smooth_scores = 0.0, []
    if smooth and prob.holdout_counts is not None:
        sigma, smooth_scores = choose_smoothing(
            run.best_obj, lambda c: _full_pass(c, prob, lik, False)[2])
    if (refit and prob.holdout_counts is not None and 0 < run.best_k < len(run.costs) - 1):
        # stopped early: redo the chosen number of iterations with every photon
        prob_all, _ = _problem(ds, idx, object_shape, 0.0, seed)
        best_obj = _iterate(prob_all, algorithm, lik, run.best_k, batch_size, seed, delta, None,
                            None, None, None, damping=damping,
                            damping_photons=damping_photons).last_obj
        refit_iterations = run.best_k
    best_obj = smooth_canvas(best_obj, sigma)
    crop = (slice(prob.pad, prob.pad + object_shape[0]), slice(prob.pad, prob.pad + object_shape[1]))
    # the illumination of all the photons (the fitted probe carries 1 - holdout of them)
    illum = run.illumination[crop] / (1.0 - (holdout if holdout_note is None else 0.0))
    illuminated = run.illuminated[crop]
    obj_frame = torch.where(illuminated, best_obj[crop], torch.zeros((), dtype=best_obj.dtype))
    wall = time.perf_counter() - t0
    window_used = min(int(window), ds.patch_size)
    covered = coverage_mask(ds, idx, object_shape, window_used)
    params = {
        "batch_size": batch_size, "seed": int(seed), "window": window_used,
        "window_requested": int(window),
        "group_limit": group_limit, "tol": tol, "likelihood_requested": likelihood,
        "holdout": holdout if holdout_note is None else 0.0, "holdout_note": holdout_note,
        "patience": patience, "refit": bool(refit), "refit_iterations": refit_iterations,
        "smooth": bool(smooth), "smooth_sigma_px": float(sigma),
        "smooth_scores": [[float(a), float(b)] for a, b in smooth_scores],
        "smooth_note": None if not smooth or prob.holdout_counts is not None else
        "needs the hold-out: not applied",
        "refit_note": None if refit_iterations is None else
        f"early-stopped at iterate {run.best_k}: refitted that many iterations on all photons",
        "rpie_alpha": RPIE_ALPHA if algorithm == "rpie" else None,
        "lsq_delta": delta if algorithm == "lsqml" else None,
        "lsq_damping": damping if algorithm == "lsqml" else None,
        "lsq_damping_photons": damping_photons if algorithm == "lsqml" else None,
        "beta_max": BETA_MAX if algorithm == "lsqml" else None,
        "torch_threads": torch.get_num_threads(),
        "photons_per_pattern": float(np.asarray(ds.counts[idx], dtype=np.float64).sum((1, 2)).mean()),
        "mean_counts_per_pixel": float(np.asarray(ds.counts[idx], dtype=np.float64).mean()),
    }
    return BaselineResult(
        obj=obj_frame.numpy().astype(np.complex64), covered=covered,
        illumination=illum.numpy().astype(np.float32), illuminated=illuminated.numpy(),
        cost_history=run.costs, algorithm=algorithm, likelihood=lik, split=split, indices=idx,
        iterations=len(run.costs) - 1, best_iteration=run.best_k,
        converged_iteration=converged_at(run.costs), wall_time_s=wall, stop_reason=run.stop_reason,
        refit_iterations=refit_iterations or 0, holdout_history=run.held_costs,
        step_history=run.steps, params=params)


__all__ = ["ALGORITHMS", "NATIVE_ALGORITHMS", "LIKELIHOODS", "DEFAULT_ALGORITHM",
           "DEFAULT_ITERATIONS", "BaselineResult", "reconstruct", "coverage_mask",
           "illumination_map", "converged_at", "select_indices", "object_shape_of",
           "check_likelihood", "split_photons", "lsq_preconditioner", "LSQ_DAMPING",
           "LSQ_DAMPING_PHOTONS"]
