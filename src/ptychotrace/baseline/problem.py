"""The baseline's problem: the chosen split's counts, probe and positions on torch, with the
photon hold-out split off (binomial thinning, :mod:`ptychotrace.physics.holdout`) and positions
shifted onto the padded canvas. See :mod:`ptychotrace.baseline.solver` for the method."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import Dataset
from ..physics.forward import required_pad
from ..physics.holdout import holdout_reason, split_photons

#: Default fraction of every pixel's photons held out (binomial thinning) for early stopping.
DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True)
class Problem:
    """The split's data on torch, positions shifted onto the padded canvas.

    ``probe`` is the probe seen by the fitted photons: ``sqrt(1 - holdout) * P`` (thinning keeps
    a fraction of the photons, which scales every expected count by it)."""

    probe: torch.Tensor                # (N, N) complex64, sqrt(photons)
    counts: torch.Tensor               # (P, N, N) float32, fitted photons
    sqrt_counts: torch.Tensor          # (P, N, N) float32
    holdout_counts: torch.Tensor | None  # (P, N, N) float32 held-out photons, or None
    holdout_ratio: float               # E[held-out] / E[fitted] = h / (1 - h)
    xs: torch.Tensor                   # (P,) float64, padded-canvas pixels
    ys: torch.Tensor
    canvas_shape: tuple[int, int]
    object_shape: tuple[int, int]
    pad: int
    valid: torch.Tensor | None = None  # (N, N) bool detector mask, True = measured (None = all)


def select_indices(ds: Dataset, split: str, group_limit: int | None) -> np.ndarray:
    """Indices of the split's patterns in dataset order, the first ``group_limit`` of them."""
    if split == "all":
        idx = np.arange(ds.n_patterns)
    elif split in ("train", "test"):
        idx = ds.indices(split)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if len(idx) == 0:
        raise ValueError(f"the dataset has no '{split}' patterns")
    if group_limit is not None:
        if group_limit < 1:
            raise ValueError(f"group_limit must be >= 1, got {group_limit}")
        idx = idx[:group_limit]
    return idx


def object_shape_of(ds: Dataset) -> tuple[int, int]:
    """(H, W) of the object frame: the ground truth's shape, else the metadata's object size, else
    the smallest frame that holds every position."""
    if ds.obj is not None:
        return int(ds.obj.shape[0]), int(ds.obj.shape[1])
    frame = (ds.metadata.get("geometry") or {}).get("object_frame")   # real data (ptychotrace.io)
    if frame:
        return int(frame["height_px"]), int(frame["width_px"])
    size = (ds.metadata.get("simulation") or {}).get("object_size")
    if size:
        return int(size), int(size)
    return int(math.ceil(ds.ycoords.max())) + 1, int(math.ceil(ds.xcoords.max())) + 1


def build_problem(ds: Dataset, idx: np.ndarray, object_shape: tuple[int, int], holdout: float,
             seed: int) -> tuple[Problem, str | None]:
    n = ds.patch_size
    pad = required_pad(n)
    h, w = object_shape
    counts = np.ascontiguousarray(ds.counts[idx], dtype=np.float32)
    if ds.valid is not None:
        # masked pixels are excluded from every cost and update (the model's own modulus is kept
        # there); 0 here only keeps their values out of the hold-out decision and its RNG draws
        counts = np.where(ds.valid, counts, np.float32(0))
    reason = holdout_reason(counts, holdout)
    probe = np.asarray(ds.probe, dtype=np.complex64)
    held = None
    ratio = 0.0
    if reason is None:
        counts, held_np = split_photons(counts, holdout, seed)
        held = torch.from_numpy(held_np)
        probe = (probe * np.float32(math.sqrt(1.0 - holdout))).astype(np.complex64)
        ratio = holdout / (1.0 - holdout)
    fit = torch.from_numpy(counts)
    return Problem(
        probe=torch.from_numpy(probe), counts=fit, sqrt_counts=fit.sqrt(), holdout_counts=held,
        holdout_ratio=ratio,
        xs=torch.from_numpy(ds.xcoords[idx].astype(np.float64) + pad),
        ys=torch.from_numpy(ds.ycoords[idx].astype(np.float64) + pad),
        canvas_shape=(h + 2 * pad, w + 2 * pad), object_shape=(h, w), pad=pad,
        valid=None if ds.valid is None else torch.from_numpy(np.asarray(ds.valid, bool))), reason
