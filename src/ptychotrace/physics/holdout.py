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
"""

from __future__ import annotations

import numpy as np


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


__all__ = ["split_photons", "holdout_reason"]
