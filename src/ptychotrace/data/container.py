"""Grouped, network-ready NumPy buffers for one split (the 'training container').

Everything here is NumPy so telemetry can measure it without touching a device. Units:
``X`` dimensionless (normalised amplitude), ``counts`` photons, ``Y_amp`` object amplitude,
``Y_phi`` radians, positions and offsets in object pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..physics.forward import extract_patches, pad_canvas, required_pad, to_tensor
from ..physics.scaling import input_normalisation_gain
from ..physics.scan import Groups, ScanPositions, make_groups
from .dataset import Dataset


@dataclass(frozen=True)
class GroupedData:
    """One split grouped into G groups of C = gridsize^2 patterns.

    X: (G, C, N, N) float32 network input ``sqrt(counts) * input_gain``;
    counts: (G, C, N, N) float32 measured photons (Poisson targets);
    xcoords, ycoords: (G, C) float64 global patch centres; dx, dy: (G, C) offsets from the group
    centre; pattern_index: (G, C) rows of the source dataset;
    Y_amp, Y_phi: (G, C, N, N) float32 ground-truth labels cut from the truth object with the
    simulator's extractor, or None when the dataset has no ground truth;
    valid: (N, N) bool detector mask (True = measured) or None. Masked pixels are dropped from the
    likelihood; in the network input X they are 0 so that their values cannot reach the loss.
    """

    X: np.ndarray
    counts: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    pattern_index: np.ndarray
    Y_amp: np.ndarray | None
    Y_phi: np.ndarray | None
    gridsize: int
    input_gain: float
    split: str
    valid: np.ndarray | None = None

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def Y_I(self) -> np.ndarray | None:  # noqa: N802 - name fixed by the telemetry contract
        return None if self.Y_amp is None else np.square(self.Y_amp)

    def take(self, index: np.ndarray) -> GroupedData:
        def pick(a):
            return None if a is None else a[index]

        return GroupedData(self.X[index], self.counts[index], self.xcoords[index],
                           self.ycoords[index], self.dx[index], self.dy[index],
                           self.pattern_index[index], pick(self.Y_amp), pick(self.Y_phi),
                           self.gridsize, self.input_gain, self.split, self.valid)


def train_input_gain(ds: Dataset) -> float:
    """Input-normalisation gain from the training split's amplitudes sqrt(counts)."""
    train = ds.indices("train")
    if len(train) == 0:
        raise ValueError("dataset has no training patterns; cannot derive the input gain")
    amp = np.sqrt(ds.counts[train])
    if ds.valid is not None:   # masked pixels carry no measurement: keep them out of the gain
        amp = np.where(ds.valid, amp, np.float32(0))
    return input_normalisation_gain(amp)


def truth_patches(obj: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, n: int) -> np.ndarray:
    """(P, N, N) complex64 patches of the ground truth (zero outside the object)."""
    pad = required_pad(n)
    canvas = pad_canvas(to_tensor(obj), pad)
    with torch.no_grad():
        out = extract_patches(canvas, to_tensor(xcoords + pad), to_tensor(ycoords + pad), n)
    return out.numpy()


def block_step_px(dx: np.ndarray, gridsize: int) -> float | None:
    """The raster step inside the groups, in pixels: the median over groups of the x span of the
    members' offsets ``dx`` (G, C) divided by ``gridsize - 1``; None for gridsize 1 or no groups.
    For raster blocks it is the block geometry the network sees (the offsets are +-step/2 at
    gridsize 2)."""
    g = int(gridsize)
    if g < 2 or dx.size == 0:
        return None
    span = dx.max(axis=1) - dx.min(axis=1)
    return float(np.median(span) / (g - 1))


def grouping_method_kwargs(grouping: dict) -> dict:
    """The grouping-method keywords of ``build_grouped`` from a grouping config dict (a
    checkpoint's or ``GroupingConfig.model_dump()``); checkpoints written before the
    method existed group by 'knn'."""
    return {"method": grouping.get("group_method", "knn"),
            "block_step": grouping.get("block_step_px"),
            "block_stride": int(grouping.get("block_stride", 1))}


def build_grouped(ds: Dataset, split: str, gridsize: int, group_count: int, neighbor_count: int,
                  seed: int, input_gain: float, *, method: str = "knn",
                  block_step: float | None = None, block_stride: int = 1) -> GroupedData:
    """Group one split (physics/scan.py ``make_groups``) and assemble its buffers.
    ``group_count`` is capped at the split size."""
    rows = ds.indices(split)
    if len(rows) == 0:
        raise ValueError(f"dataset has no '{split}' patterns")
    pos = ScanPositions(ds.xcoords[rows], ds.ycoords[rows])
    groups: Groups = make_groups(pos, gridsize, min(group_count, len(rows)), neighbor_count,
                                 seed, method, block_step, block_stride)
    idx = rows[groups.indices]                                    # (G, C) dataset rows
    counts = ds.counts[idx]                                       # (G, C, N, N)
    x_in = (np.sqrt(counts) * np.float32(input_gain)).astype(np.float32)
    if ds.valid is not None:
        x_in = np.where(ds.valid, x_in, np.float32(0)).astype(np.float32)
    y_amp = y_phi = None
    if ds.obj is not None:
        n = ds.patch_size
        patches = truth_patches(ds.obj, ds.xcoords[idx].ravel(), ds.ycoords[idx].ravel(), n)
        patches = patches.reshape(*idx.shape, n, n)
        y_amp = np.abs(patches).astype(np.float32)
        y_phi = np.angle(patches).astype(np.float32)
    return GroupedData(X=x_in, counts=counts, xcoords=ds.xcoords[idx], ycoords=ds.ycoords[idx],
                       dx=groups.dx, dy=groups.dy, pattern_index=idx, Y_amp=y_amp, Y_phi=y_phi,
                       gridsize=gridsize, input_gain=float(input_gain), split=split,
                       valid=ds.valid)
