"""The LSQ-ML object update (Odstrcil et al. 2018, object-only form): the preconditioned
direction ``scatter(conj(P) chi) / (hypot(D, mu + gamma max D) + delta max D)`` and its
closed-form step (details and measurements: :mod:`ptychotrace.baseline.solver`, docs/baseline.md)."""

from __future__ import annotations

import math

import torch

from ..physics.forward import extract_patches, scatter_patches
from .passes import forward_pass
from .problem import Problem

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


def lsqml_update(obj, prob: Problem, parts, den) -> tuple[torch.Tensor, float]:
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


def lsqml_minibatch_epoch(obj, prob: Problem, likelihood: str, batch_size: int, den,
                          gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """One epoch of minibatch LSQ-ML (pty-chi's default batching): the patterns in a seeded random
    order, ``batch_size`` at a time; each batch moves the object along its own preconditioned
    direction with its own closed-form step. ``den`` is the preconditioner of *all* patterns, so
    a batch's step is a partial step of the full-batch update (pixels it does not light stay).
    Returns the object and the mean step over the epoch's batches."""
    order = torch.randperm(len(prob.xs), generator=gen)
    betas = []
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        chi, _, _, xs, ys = forward_pass(obj, prob, sel, likelihood, True)
        obj, beta = lsqml_update(obj, prob, [(chi, xs, ys)], den)
        betas.append(beta)
    return obj, sum(betas) / len(betas)
