"""Input faults for the analyzer's fault suite: what a run would see if one input were wrong.

``inject(ds, fault)`` returns a new Dataset (the original is not modified) in which one input is
wrong the way it goes wrong in practice; the counts stay the measured ones unless the fault is in
their units. Used by tests/test_faults.py and the fault runs of docs/scenarios.md.

Faults (name: what changes):
    counts_units   counts x COUNTS_FACTOR (data stored in other units; the dose metadata kept)
    probe_scale    probe amplitude x 2 (probe stored 2x too strong)
    wrong_probe    the other probe model (ideal disk <-> focused), scaled to the same energy
    swap_xy        x and y of the scan positions exchanged
    jitter         random position errors, normal with JITTER_PX px per axis (seeded)
    offset         a constant position offset OFFSET_PX = (dy, dx) px
    truth_shift    the ground truth shifted by TRUTH_SHIFT_PX = (dy, dx) px (evaluation frame)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..data.dataset import Dataset
from ..physics.probe import focused_probe, ideal_probe

COUNTS_FACTOR = 3.2e-6       # the reported case: reconstruction at sqrt(3.2e-6) = 0.0018x
JITTER_PX = 2.0
OFFSET_PX = (3.0, -2.0)
TRUTH_SHIFT_PX = (3, 4)
INPUT_FAULTS = ("counts_units", "probe_scale", "wrong_probe", "swap_xy", "jitter", "offset",
                "truth_shift")


def _other_probe(probe: np.ndarray) -> np.ndarray:
    """The other probe model at the same energy sum|P|^2 (photons)."""
    n = probe.shape[0]
    ideal = ideal_probe(n)
    # the ideal disk is real and centro-symmetric; the focused probe is complex
    is_ideal = float(np.abs(np.imag(probe)).max()) < 1e-6 * float(np.abs(probe).max())
    other = focused_probe(n) if is_ideal else ideal
    e_old = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    e_new = float(np.sum(np.abs(other.astype(np.complex128)) ** 2))
    return (other * np.sqrt(e_old / e_new)).astype(np.complex64)


def inject(ds: Dataset, fault: str, seed: int = 0) -> Dataset:
    """A copy of ``ds`` with one input fault (see the module docstring)."""
    if fault == "counts_units":
        return dataclasses.replace(ds, counts=(ds.counts * np.float32(COUNTS_FACTOR)))
    if fault == "probe_scale":
        return dataclasses.replace(ds, probe=(ds.probe * np.float32(2.0)).astype(np.complex64))
    if fault == "wrong_probe":
        return dataclasses.replace(ds, probe=_other_probe(ds.probe))
    if fault == "swap_xy":
        return dataclasses.replace(ds, xcoords=ds.ycoords.copy(), ycoords=ds.xcoords.copy())
    if fault == "jitter":
        rng = np.random.default_rng(seed)
        h, w = ds.obj.shape if ds.obj is not None else (np.inf, np.inf)
        x = np.clip(ds.xcoords + rng.normal(0, JITTER_PX, ds.n_patterns), 0, w - 1)
        y = np.clip(ds.ycoords + rng.normal(0, JITTER_PX, ds.n_patterns), 0, h - 1)
        return dataclasses.replace(ds, xcoords=x, ycoords=y)
    if fault == "offset":
        dy, dx = OFFSET_PX
        return dataclasses.replace(ds, xcoords=ds.xcoords + dx, ycoords=ds.ycoords + dy)
    if fault == "truth_shift":
        if ds.obj is None:
            raise ValueError("truth_shift needs a ground truth")
        return dataclasses.replace(ds, obj=np.roll(ds.obj, TRUTH_SHIFT_PX, axis=(0, 1)))
    raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(INPUT_FAULTS)}")
