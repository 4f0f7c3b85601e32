"""The photon hold-out's say in what the baseline returns: the iterate chosen by the held-out
photons, refitted on every photon when it stopped early (so early stopping costs no photons), and
optionally low-passed with the width the held-out deviance chooses (the PINN refinement's rule,
:func:`ptychotrace.physics.holdout.choose_smoothing`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..physics.holdout import choose_smoothing, smooth_canvas
from .iterate import Run
from .passes import full_pass
from .problem import Problem


@dataclass(frozen=True)
class Choice:
    """The returned canvas object and how it was chosen."""

    obj: torch.Tensor                   # padded canvas, complex64
    refit_iterations: int | None        # iterations redone on all photons (None = no refit)
    sigma_px: float                     # Gaussian low-pass width applied, object pixels (0 = none)
    smooth_scores: list                 # [(sigma_px, held-out deviance)] of the widths scored


def choose_object(run: Run, prob: Problem, likelihood: str, *, refit: bool, smooth: bool,
                  rerun: Callable[[int], torch.Tensor]) -> Choice:
    """``rerun(k)``: the last object of k iterations from the start on all photons."""
    best_obj, refit_iterations = run.best_obj, None
    sigma, smooth_scores = 0.0, []
    if smooth and prob.holdout_counts is not None:
        sigma, smooth_scores = choose_smoothing(
            run.best_obj, lambda c: full_pass(c, prob, likelihood, False)[2])
    if (refit and prob.holdout_counts is not None and 0 < run.best_k < len(run.costs) - 1):
        # stopped early: redo the chosen number of iterations with every photon
        best_obj = rerun(run.best_k)
        refit_iterations = run.best_k
    return Choice(obj=smooth_canvas(best_obj, sigma), refit_iterations=refit_iterations,
                  sigma_px=sigma, smooth_scores=smooth_scores)
