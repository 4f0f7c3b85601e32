"""The baseline's result and the helpers shared by the native solver and the CDTools adapter
(kept here so that neither imports the other: solver.py dispatches to cdtools_adapter.py, which
needs only this module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.dataset import Dataset
from ..physics.stitching import COVERAGE_MIN_WEIGHT, ILLUMINATED_FRACTION, stitch_to_object_frame

ALGORITHMS = ("lsqml", "rpie", "cdtools")
NATIVE_ALGORITHMS = ("lsqml", "rpie")
LIKELIHOODS = ("amplitude", "poisson")
DEFAULT_ALGORITHM = "lsqml"
#: Default maximum iteration (epoch) counts, from the convergence study in docs/baseline.md.
DEFAULT_ITERATIONS = {"lsqml": 100, "rpie": 40, "cdtools": 100}
#: Convergence: relative cost decrease per iteration, averaged over CONVERGENCE_WINDOW iterations.
CONVERGENCE_TOL = 1e-3
CONVERGENCE_WINDOW = 5

Progress = Callable[[int, int], None]

_COST_UNITS = {
    "amplitude": "mean (|F| - sqrt(I))^2 per detector pixel (~0.25 at the noise floor for counts "
                 ">> 1, less at low counts)",
    "poisson": "mean half-deviance lam - I + I log(I/lam) per detector pixel (~0.5 at the noise "
               "floor for counts >> 1)",
    "cdtools": "CDTools loss per detector pixel",
}


@dataclass
class BaselineResult:
    """An iterative reconstruction in the object frame.

    obj: (H, W) complex64 object (0 outside ``illuminated``);
    covered: (H, W) bool PINN-consistent coverage (stitch weights of the central window);
    illumination: (H, W) float32 summed probe intensity ``scatter(|P|^2)`` in photons;
    illuminated: (H, W) bool, ``illumination >= ILLUMINATED_FRACTION * max``;
    cost_history: the fit cost at iterates 0 (the initial ones) .. ``iterations`` (likelihood-specific,
    per detector pixel, see the module docstring), full batch, so ``len == iterations + 1``;
    holdout_history: the Poisson half-deviance of the held-out photons at the same iterates (empty
    without a hold-out); best_iteration: the iterate chosen (lowest hold-out cost, else the last);
    refit_iterations: iterations of the refit on all photons (0 = none; then ``obj`` is the chosen
    iterate itself). The CDTools adapter records one Adam-epoch mean loss per iteration instead.
    """

    obj: np.ndarray
    covered: np.ndarray
    illumination: np.ndarray
    illuminated: np.ndarray
    cost_history: list[float]
    algorithm: str
    likelihood: str
    split: str
    indices: np.ndarray
    iterations: int
    best_iteration: int
    converged_iteration: int | None
    wall_time_s: float
    stop_reason: str = "iterations"
    refit_iterations: int = 0
    holdout_history: list[float] = field(default_factory=list)
    step_history: list[float] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def n_patterns(self) -> int:
        return int(len(self.indices))

    @property
    def total_iterations(self) -> int:
        """Iterations run, the refit on all photons included."""
        return self.iterations + self.refit_iterations

    @property
    def patterns_per_second(self) -> float:
        """Pattern updates per second: patterns * total iterations / wall time."""
        return self.n_patterns * self.total_iterations / max(self.wall_time_s, 1e-12)

    @property
    def seconds_per_pattern(self) -> float:
        """Wall time per reconstructed pattern (all iterations included)."""
        return self.wall_time_s / max(self.n_patterns, 1)

    @property
    def covered_illuminated(self) -> np.ndarray:
        """Pixels both in the PINN's coverage and actually illuminated by the probe."""
        return self.covered & self.illuminated

    def summary(self) -> dict:
        """JSON-serialisable description (no arrays)."""
        return {
            "algorithm": self.algorithm, "likelihood": self.likelihood, "split": self.split,
            "n_patterns": self.n_patterns, "iterations": self.iterations,
            "best_iteration": self.best_iteration, "stop_reason": self.stop_reason,
            "refit_iterations": self.refit_iterations, "total_iterations": self.total_iterations,
            "converged_iteration": self.converged_iteration,
            "convergence_rule": f"mean relative fit-cost decrease over {CONVERGENCE_WINDOW} "
                                f"iterations < {CONVERGENCE_TOL:g}",
            "wall_time_s": self.wall_time_s,
            "patterns_per_second": self.patterns_per_second,
            "seconds_per_pattern": self.seconds_per_pattern,
            "seconds_per_iteration": self.wall_time_s / max(self.total_iterations, 1),
            "cost_units": _COST_UNITS.get(self.likelihood, ""),
            "cost_initial": self.cost_history[0] if self.cost_history else None,
            "cost_final": self.cost_history[-1] if self.cost_history else None,
            "cost_history": list(self.cost_history),
            "holdout_units": "mean Poisson half-deviance of the held-out photons per detector pixel",
            "holdout_history": list(self.holdout_history),
            "step_history": list(self.step_history),
            "coverage_fraction": float(self.covered.mean()),
            "illuminated_fraction": float(self.illuminated.mean()),
            "covered_illuminated_fraction": float(self.covered_illuminated.mean()),
            "coverage_rule": f"stitch_to_object_frame weights of the central "
                             f"{self.params.get('window')} px window >= {COVERAGE_MIN_WEIGHT} "
                             "(the PINN's evaluation region)",
            "illuminated_rule": f"scatter(|P|^2) >= {ILLUMINATED_FRACTION:g} * max; the object is "
                                "set to 0 outside",
            "initial_object": "ones",
            "params": dict(self.params),
        }


def check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def converged_at(costs: list[float], tol: float = CONVERGENCE_TOL,
                 window: int = CONVERGENCE_WINDOW) -> int | None:
    """First iterate k at which the mean relative cost decrease over the previous ``window``
    iterations fell below ``tol`` (None if never). ``costs[k]`` is the cost after k updates."""
    for k in range(window, len(costs)):
        prev, cur = costs[k - window], costs[k]
        if prev <= 0 or (prev - cur) / (abs(prev) * window) < tol:
            return k
    return None


def coverage_mask(ds: Dataset, idx: np.ndarray, object_shape: tuple[int, int],
                  window: int) -> np.ndarray:
    """The PINN evaluation's coverage: stitch weights of the central window >= the threshold."""
    n = ds.patch_size
    ones = torch.ones(len(idx), n, n, dtype=torch.float32)
    st = stitch_to_object_frame(ones, torch.from_numpy(ds.xcoords[idx].astype(np.float64)),
                                torch.from_numpy(ds.ycoords[idx].astype(np.float64)),
                                object_shape, window)
    return st.covered.numpy().astype(bool)
