"""One forward pass of the baseline: exit waves, far fields, the likelihood's fit cost, the
held-out photons' Poisson deviance and the exit-wave residual ``chi`` (the likelihood's target
minus the exit wave), for a selection of patterns or for all of them in chunks. The targets and
costs per likelihood are described in :mod:`ptychotrace.baseline.solver`."""

from __future__ import annotations

import torch

from ..physics.forward import extract_patches, far_field, inverse_far_field
from .problem import Problem

#: Patterns per chunk of a full-batch pass (bounds memory at ~ chunk * N^2 * 40 bytes).
CHUNK = 1024


def half_deviance(lam: torch.Tensor, counts: torch.Tensor,
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


def forward_pass(obj: torch.Tensor, prob: Problem, sel: torch.Tensor, likelihood: str,
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
        held = half_deviance(lam * prob.holdout_ratio, prob.holdout_counts[sel], prob.valid)
    if likelihood == "amplitude":
        amp = lam.sqrt()
        sq = (amp - sqrt_counts).to(torch.float64).square()
        cost = float((sq if prob.valid is None else torch.where(prob.valid, sq, 0.0)).sum())
        # modulus projection F' = sqrt(I) F / |F|; where the model is exactly 0 take phase 0
        ratio = sqrt_counts / amp.clamp_min(1e-30)
    else:
        cost = half_deviance(lam, counts, prob.valid)
        # one Newton step in the modulus of the Poisson NLL: F' = F * 2I / (|F|^2 + I)
        ratio = 2.0 * counts / (lam + counts).clamp_min(1e-30)
    if not want_residual:
        return None, cost, held, xs, ys
    target = torch.where(lam > 0, f * ratio, sqrt_counts.to(f.dtype))
    if prob.valid is not None:   # masked pixels: no measurement, keep the model's far field
        target = torch.where(prob.valid, target, f)
    chi = inverse_far_field(target) - psi
    return chi, cost, held, xs, ys


def _chunks(n: int):
    for start in range(0, n, CHUNK):
        yield torch.arange(start, min(start + CHUNK, n))


def full_pass(obj, prob: Problem, likelihood: str, want_residual: bool):
    """All patterns in chunks: (list of (chi, xs, ys), fit cost sum, hold-out cost sum)."""
    parts, cost, held = [], 0.0, 0.0
    for sel in _chunks(len(prob.xs)):
        chi, c, h, xs, ys = forward_pass(obj, prob, sel, likelihood, want_residual)
        cost += c
        held += h
        parts.append((chi, xs, ys))
    return parts, cost, held
