"""Photon hold-out by binomial thinning: validation data for early stopping without ground truth.

``split_photons(counts, holdout, seed)`` splits every pixel's counts ``I = I_fit + I_out`` with
``I_out ~ Binomial(I, holdout)``. For Poisson counts ``I ~ Poisson(lam)`` the two parts are
*independent* Poisson draws with means ``(1 - holdout) lam`` and ``holdout lam``: a model fitted to
``I_fit`` (with the probe scaled by ``sqrt(1 - holdout)``, so that its expected counts carry the
same fraction of the photons) is tested by ``I_out`` on photons it has never seen. The held-out
Poisson deviance keeps falling while the fit recovers signal and rises once it starts modelling the
noise of ``I_fit``, whatever the dose: the stopping point comes from the data.

One code path for both users: the iterative baseline (``baseline/solver.py``, early stopping of
LSQ-ML / rPIE) and the PINN's inference refinement (``infer/predict.py: refine_object``).
Thinning needs integer counts; :func:`holdout_reason` says when it cannot be used.

The same held-out deviance also picks the strength of a low-pass (:func:`choose_smoothing`): shot
noise that a fit absorbed raises the deviance on unseen photons and a low-pass removes it, while at
high dose any blur costs more than it removes. Both reconstructions can use it (the PINN's
refinement by default, the baseline when asked), so comparisons can put like next to like.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

#: Low-pass widths (Gaussian sigma, object pixels) tried by :func:`choose_smoothing`.
SMOOTH_SIGMAS_PX = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def split_photons(counts: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: ``I = I_fit + I_out`` with ``I_out ~ Binomial(I, holdout)``.

    For Poisson counts the two parts are *independent* Poisson draws with means
    ``(1 - holdout) lam`` and ``holdout * lam``, so the held-out photons test the model without
    having been fitted. Requires integer counts. Returns (I_fit, I_out) as float32, deterministic
    for a fixed ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    n = np.rint(counts).astype(np.int64)
    out = rng.binomial(n, holdout).astype(np.float32)
    return (n - out).astype(np.float32), out


def holdout_reason(counts: np.ndarray, holdout: float) -> str | None:
    """Why the hold-out cannot be used (None if it can): disabled, or non-integer counts."""
    if holdout <= 0:
        return "disabled (holdout=0)"
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    # files store sqrt(counts) in float32, so integers come back within float rounding
    if not np.allclose(counts, np.rint(counts), rtol=1e-5, atol=1e-3):
        return "counts are not integers (noise-free or background-subtracted data): no thinning"
    return None


def smooth_canvas(canvas: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian low-pass (``sigma`` px, real and imaginary parts) of a complex (H, W) canvas."""
    if sigma <= 0:
        return canvas
    c = canvas.numpy()
    out = gaussian_filter(c.real, sigma, mode="nearest") + 1j * gaussian_filter(
        c.imag, sigma, mode="nearest")
    return torch.from_numpy(out.astype(np.complex64))


def choose_smoothing(canvas: torch.Tensor, deviance: Callable[[torch.Tensor], float]
                     ) -> tuple[float, list[tuple[float, float]]]:
    """The low-pass width from ``SMOOTH_SIGMAS_PX`` with the lowest held-out ``deviance``; the scan
    stops after two widths in a row worse than the best so far. Returns (sigma, [(sigma, dev)])."""
    scores: list[tuple[float, float]] = []
    best_sigma, best_dev, worse = 0.0, math.inf, 0
    for sigma in SMOOTH_SIGMAS_PX:
        dev = deviance(smooth_canvas(canvas, sigma))
        scores.append((sigma, dev))
        if dev < best_dev:
            best_sigma, best_dev, worse = sigma, dev, 0
        else:
            worse += 1
            if worse >= 2:
                break
    return best_sigma, scores


__all__ = ["split_photons", "holdout_reason", "smooth_canvas", "choose_smoothing",
           "SMOOTH_SIGMAS_PX"]
