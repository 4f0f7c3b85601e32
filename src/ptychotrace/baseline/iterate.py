"""The baseline's iteration driver: full-batch cost and hold-out cost at every iterate, the
best iterate by the held-out photons, and the stopping rules (iterations, hold-out patience,
cost convergence, divergence)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..physics.stitching import ILLUMINATED_FRACTION, illumination_map
from .lsqml import LSQ_DAMPING, LSQ_DAMPING_PHOTONS, lsq_preconditioner, lsqml_minibatch_epoch, lsqml_update
from .passes import full_pass
from .problem import Problem
from .result import converged_at
from .rpie import rpie_epoch

#: Stop once the hold-out cost has not improved for this many iterations.
DEFAULT_PATIENCE = 10



@dataclass
class Run:
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
def iterate(prob: Problem, algorithm: str, lik: str, iterations: int, batch_size: int | None,
             seed: int, delta: float, patience: int | None, tol: float | None,
             callback, progress, *, damping: float = LSQ_DAMPING,
             damping_photons: float = LSQ_DAMPING_PHOTONS,
             init: torch.Tensor | None = None) -> Run:
    """The iteration loop: full-batch cost (and hold-out cost) at every iterate 0..K, from
    ``init`` (canvas-shaped complex64; None = a flat object of amplitude 1)."""
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
    if init is None:
        obj = torch.ones(prob.canvas_shape, dtype=torch.complex64)
    else:
        if tuple(init.shape) != tuple(prob.canvas_shape):
            raise ValueError(f"init must have the canvas shape {prob.canvas_shape}, "
                             f"got {tuple(init.shape)}")
        obj = init.to(torch.complex64).clone()
    best_obj, best_k, best_held = obj, 0, math.inf
    for k in range(iterations + 1):
        last = k == iterations
        full_batch_lsq = algorithm == "lsqml" and batch_size is None
        parts, cost, held = full_pass(obj, prob, lik, want_residual=full_batch_lsq and not last)
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
        if full_batch_lsq:
            obj, beta = lsqml_update(obj, prob, parts, lsq_den)
            steps.append(beta)
        elif algorithm == "lsqml":
            obj, beta = lsqml_minibatch_epoch(obj, prob, lik, batch_size, lsq_den, gen)
            steps.append(beta)
        else:
            obj = rpie_epoch(obj, prob, lik, batch_size or len(prob.xs), gen)
    return Run(best_obj=best_obj, last_obj=obj, best_k=best_k, costs=costs,
                held_costs=held_costs, steps=steps, stop_reason=stop_reason,
                illumination=full_illum, illuminated=illuminated)
