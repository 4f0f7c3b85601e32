"""One epoch of regularised PIE (Maiden, Johnson & Li, Optica 4, 736 (2017)) in seeded random
minibatches (see :mod:`ptychotrace.baseline.solver`)."""

from __future__ import annotations

import torch

from ..physics.forward import scatter_patches
from ..physics.stitching import illumination_map
from .passes import forward_pass
from .problem import Problem

#: rPIE regularisation alpha (Maiden et al. 2017 recommend 0.05-0.25 for the object).
RPIE_ALPHA = 0.1



def rpie_epoch(obj, prob: Problem, likelihood: str, batch_size: int,
                gen: torch.Generator) -> torch.Tensor:
    """One epoch of minibatch rPIE in a seeded random order."""
    conj_p = prob.probe.conj()
    order = torch.randperm(len(prob.xs), generator=gen)
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        chi, _, _, xs, ys = forward_pass(obj, prob, sel, likelihood, True)
        d = illumination_map(prob.probe, xs, ys, prob.canvas_shape)
        den = (1 - RPIE_ALPHA) * d + RPIE_ALPHA * float(d.max())
        obj = obj + scatter_patches(conj_p * chi, xs, ys, prob.canvas_shape) / den
    return obj
