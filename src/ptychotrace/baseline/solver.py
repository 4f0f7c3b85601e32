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

Layout (one job per module): ``problem`` (the split's data on torch, the photon hold-out split),
``passes`` (forward pass, costs, exit-wave residuals), ``lsqml`` and ``rpie`` (the updates),
``iterate`` (the loop, best iterate and stopping rules), ``holdout_choice`` (refit on all photons
and the hold-out-chosen smoothing), ``result`` (the result type and coverage); this module checks
the arguments, dispatches (``cdtools`` to :mod:`ptychotrace.baseline.cdtools_adapter`) and
assembles the :class:`BaselineResult`. Names formerly defined here are re-exported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..data.dataset import Dataset
from ..physics.holdout import holdout_reason, split_photons
from ..physics.stitching import illumination_map
from .holdout_choice import Choice, choose_object
from .iterate import DEFAULT_PATIENCE, iterate
from .lsqml import BETA_MAX, LSQ_DAMPING, LSQ_DAMPING_PHOTONS, LSQ_DELTA, lsq_preconditioner
from .passes import CHUNK, full_pass
from .problem import DEFAULT_HOLDOUT, build_problem, object_shape_of, select_indices
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
from .rpie import RPIE_ALPHA

#: Default minibatch sizes (None = all patterns in one batch).
DEFAULT_BATCH_SIZE = {"lsqml": None, "rpie": 16}


def reconstruct(ds: Dataset, split: str = "test", iterations: int | None = None,
                algorithm: str = DEFAULT_ALGORITHM, group_limit: int | None = None, seed: int = 0,
                progress: Progress | None = None, *, likelihood: str = "amplitude",
                batch_size: int | None = -1, holdout: float = DEFAULT_HOLDOUT,
                patience: int | None = DEFAULT_PATIENCE, refit: bool = True,
                smooth: bool = False, delta: float = LSQ_DELTA, damping: float = LSQ_DAMPING,
                damping_photons: float = LSQ_DAMPING_PHOTONS, window: int = 20,
                tol: float | None = None,
                callback: Callable[[int, np.ndarray], None] | None = None,
                init: np.ndarray | None = None) -> BaselineResult:
    """Reconstruct the object from ``split``'s patterns with the dataset's probe and positions.

    iterations: maximum epochs over the split (default ``DEFAULT_ITERATIONS[algorithm]``);
    group_limit: use only the first ``group_limit`` patterns of the split (dataset order);
    likelihood: ``amplitude`` (default) | ``poisson`` (module docstring);
    batch_size: patterns per update (-1 = default ``DEFAULT_BATCH_SIZE``: LSQ-ML full batch,
    rPIE 16; None = all patterns in one batch); LSQ-ML in minibatches takes each batch's own
    closed-form step (pty-chi's default batching; measured worse at 1e4, docs/baseline.md);
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
    object, for convergence studies;
    init: (H, W) complex starting object in the object frame (None = flat, amplitude 1): a warm
    start, e.g. the network's stitched object (then the run is the PINN's refinement); the margin
    of the padded canvas starts at the mean of ``init``.
    Deterministic for a fixed seed (the seed drives the photon split and the rPIE order).
    Long by design (58 lines of code after this docstring):
    argument checks and the result record around one call each to the passes."""
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
        if init is not None:
            raise ValueError("the cdtools adapter has no warm start; use rpie or lsqml")

        return reconstruct_cdtools(ds, idx, object_shape, split=split, iterations=iterations,
                                   seed=seed, progress=progress, likelihood=likelihood,
                                   window=window)
    if batch_size == -1:
        batch_size = DEFAULT_BATCH_SIZE[algorithm]
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")

    t0 = time.perf_counter()
    lik = check_likelihood(likelihood)
    prob, holdout_note = build_problem(ds, idx, object_shape, holdout, seed)
    start = None if init is None else init_canvas(init, object_shape, prob.pad)
    run = iterate(prob, algorithm, lik, iterations, batch_size, seed, delta, patience, tol,
                  callback, progress, damping=damping, damping_photons=damping_photons,
                  init=start)

    def rerun(k: int) -> torch.Tensor:
        prob_all, _ = build_problem(ds, idx, object_shape, 0.0, seed)
        return iterate(prob_all, algorithm, lik, k, batch_size, seed, delta, None, None, None,
                       None, damping=damping, damping_photons=damping_photons,
                       init=start).last_obj

    choice = choose_object(run, prob, lik, refit=refit, smooth=smooth, rerun=rerun)
    best_obj, refit_iterations = choice.obj, choice.refit_iterations
    crop = (slice(prob.pad, prob.pad + object_shape[0]), slice(prob.pad, prob.pad + object_shape[1]))
    # the illumination of all the photons (the fitted probe carries 1 - holdout of them)
    illum = run.illumination[crop] / (1.0 - (holdout if holdout_note is None else 0.0))
    illuminated = run.illuminated[crop]
    obj_frame = torch.where(illuminated, best_obj[crop], torch.zeros((), dtype=best_obj.dtype))
    wall = time.perf_counter() - t0
    window_used = min(int(window), ds.patch_size)
    covered = coverage_mask(ds, idx, object_shape, window_used)
    params = _params(ds, idx, algorithm, likelihood, batch_size=batch_size, seed=seed,
                     window=window, window_used=window_used, group_limit=group_limit, tol=tol,
                     holdout=holdout, holdout_note=holdout_note, patience=patience, refit=refit,
                     smooth=smooth, has_holdout=prob.holdout_counts is not None, choice=choice,
                     best_k=run.best_k, delta=delta, damping=damping,
                     damping_photons=damping_photons)
    return BaselineResult(
        obj=obj_frame.numpy().astype(np.complex64), covered=covered,
        illumination=illum.numpy().astype(np.float32), illuminated=illuminated.numpy(),
        cost_history=run.costs, algorithm=algorithm, likelihood=lik, split=split, indices=idx,
        iterations=len(run.costs) - 1, best_iteration=run.best_k,
        converged_iteration=converged_at(run.costs), wall_time_s=wall, stop_reason=run.stop_reason,
        refit_iterations=refit_iterations or 0, holdout_history=run.held_costs,
        step_history=run.steps, params=params)


def init_canvas(init: np.ndarray, object_shape: tuple[int, int], pad: int) -> torch.Tensor:
    """The padded canvas of a warm start: ``init`` (H, W) complex in the object frame, the margin
    at its mean (the flat start's role there). Refuses a wrong shape or non-finite values."""
    init = np.asarray(init)
    if init.shape != tuple(object_shape):
        raise ValueError(f"init must have the object frame's shape {tuple(object_shape)}, "
                         f"got {init.shape}")
    if not np.isfinite(init).all():
        raise ValueError("init holds NaN or Inf")
    fill = complex(init.mean())
    h, w = object_shape
    canvas = torch.full((h + 2 * pad, w + 2 * pad), fill, dtype=torch.complex64)
    canvas[pad:pad + h, pad:pad + w] = torch.from_numpy(init.astype(np.complex64))
    return canvas


def _params(ds: Dataset, idx: np.ndarray, algorithm: str, likelihood: str, *,
            batch_size: int | None, seed: int, window: int, window_used: int,
            group_limit: int | None, tol: float | None, holdout: float, holdout_note: str | None,
            patience: int | None, refit: bool, smooth: bool, has_holdout: bool, choice: Choice,
            best_k: int, delta: float, damping: float, damping_photons: float) -> dict:
    """The settings and dose of a native run, as recorded in ``BaselineResult.params``."""
    return {
        "batch_size": batch_size, "seed": int(seed), "window": window_used,
        "window_requested": int(window),
        "group_limit": group_limit, "tol": tol, "likelihood_requested": likelihood,
        "holdout": holdout if holdout_note is None else 0.0, "holdout_note": holdout_note,
        "patience": patience, "refit": bool(refit), "refit_iterations": choice.refit_iterations,
        "smooth": bool(smooth), "smooth_sigma_px": float(choice.sigma_px),
        "smooth_scores": [[float(a), float(b)] for a, b in choice.smooth_scores],
        "smooth_note": None if not smooth or has_holdout else
        "needs the hold-out: not applied",
        "refit_note": None if choice.refit_iterations is None else
        f"early-stopped at iterate {best_k}: refitted that many iterations on all photons",
        "rpie_alpha": RPIE_ALPHA if algorithm == "rpie" else None,
        "lsq_delta": delta if algorithm == "lsqml" else None,
        "lsq_damping": damping if algorithm == "lsqml" else None,
        "lsq_damping_photons": damping_photons if algorithm == "lsqml" else None,
        "beta_max": BETA_MAX if algorithm == "lsqml" else None,
        "torch_threads": torch.get_num_threads(),
        "photons_per_pattern": float(np.asarray(ds.counts[idx], dtype=np.float64).sum((1, 2)).mean()),
        "mean_counts_per_pixel": float(np.asarray(ds.counts[idx], dtype=np.float64).mean()),
    }


__all__ = ["ALGORITHMS", "NATIVE_ALGORITHMS", "LIKELIHOODS", "DEFAULT_ALGORITHM",
           "DEFAULT_ITERATIONS", "BaselineResult", "reconstruct", "coverage_mask",
           "illumination_map", "converged_at", "select_indices", "object_shape_of",
           "check_likelihood", "split_photons", "lsq_preconditioner", "LSQ_DAMPING",
           "LSQ_DAMPING_PHOTONS", "LSQ_DELTA", "BETA_MAX", "RPIE_ALPHA", "DEFAULT_BATCH_SIZE",
           "DEFAULT_HOLDOUT", "DEFAULT_PATIENCE", "CHUNK", "holdout_reason", "full_pass"]
