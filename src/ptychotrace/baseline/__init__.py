"""Iterative ptychographic reconstruction with the known probe and positions: the classical
reference next to the PINN (see docs/baseline.md)."""

from .solver import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    DEFAULT_ITERATIONS,
    LIKELIHOODS,
    NATIVE_ALGORITHMS,
    BaselineResult,
    converged_at,
    coverage_mask,
    illumination_map,
    reconstruct,
)

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "DEFAULT_ITERATIONS", "LIKELIHOODS",
           "NATIVE_ALGORITHMS", "BaselineResult", "converged_at", "coverage_mask",
           "illumination_map", "reconstruct"]
