"""The three scalings, kept apart: dose scale (physics), input normalisation (network), display.

- dose scale ``s`` [sqrt(photons)]: ``s = sqrt(nphotons / mean_j sum|P0 * O_j|^2)`` from the
  training split (mode ``dataset``), or ``sqrt(nphotons) / (N/2)`` (mode ``closed_form``) when no
  dataset statistic exists. The physical probe is ``s * P0``.
- input normalisation gain (dimensionless, applied to amplitudes): ``sqrt((N/2)^2 / mean_j sum X_j^2)``
  from the training split; it only shapes the network input and never enters the physics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DoseScale:
    value: float                      # s, sqrt(photons) per unit-normalised probe amplitude
    mode: str                         # "dataset" | "closed_form"
    nphotons: float                   # target mean expected photons per pattern
    batch_mean_sum_intensity: float | None  # mean_j sum|P0*O_j|^2 on the split it came from
    derived_from: str                 # "train" | "closed_form"
    closed_form_value: float          # sqrt(nphotons)/(N/2), always recorded for comparison

    def to_dict(self) -> dict:
        return asdict(self)


def closed_form_dose_scale(nphotons: float, n: int) -> float:
    return float(np.sqrt(nphotons) / (n / 2))


def dataset_dose_scale(nphotons: float, mean_sum_intensity: float, n: int) -> DoseScale:
    """Dose scale from ``mean_j sum|P0 * O_j|^2`` measured on the training split."""
    if nphotons <= 0:
        raise ValueError(f"nphotons must be > 0, got {nphotons}")
    if not np.isfinite(mean_sum_intensity) or mean_sum_intensity <= 0:
        raise ValueError(f"mean summed intensity must be finite and > 0, got {mean_sum_intensity}")
    return DoseScale(value=float(np.sqrt(nphotons / mean_sum_intensity)), mode="dataset",
                     nphotons=float(nphotons), batch_mean_sum_intensity=float(mean_sum_intensity),
                     derived_from="train", closed_form_value=closed_form_dose_scale(nphotons, n))


def fallback_dose_scale(nphotons: float, n: int) -> DoseScale:
    value = closed_form_dose_scale(nphotons, n)
    return DoseScale(value=value, mode="closed_form", nphotons=float(nphotons),
                     batch_mean_sum_intensity=None, derived_from="closed_form",
                     closed_form_value=value)


def mean_sum_intensity(patterns: np.ndarray) -> float:
    """mean over patterns of the summed values of (P, N, N) intensities, in float64."""
    if patterns.ndim != 3 or len(patterns) == 0:
        raise ValueError(f"expected (P, N, N) intensities, got shape {patterns.shape}")
    return float(patterns.reshape(len(patterns), -1).sum(axis=1, dtype=np.float64).mean())


def input_normalisation_gain(amplitudes: np.ndarray) -> float:
    """Gain g with ``mean_j sum (g*X_j)^2 == (N/2)^2`` for amplitudes X (P, N, N) (float64 math)."""
    n = amplitudes.shape[-1]
    energy = float(np.mean(np.sum(np.square(amplitudes, dtype=np.float64),
                                  axis=tuple(range(1, amplitudes.ndim)))))
    if not np.isfinite(energy) or energy <= 0:
        raise ValueError("cannot normalise network input: diffraction energy is zero or not finite")
    return float(np.sqrt((n / 2) ** 2 / energy))
