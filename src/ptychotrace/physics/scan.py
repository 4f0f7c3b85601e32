"""Scan positions (patch centres in object pixels), the y-sorted split, and grouping.

Two grouping methods: ``knn`` (physics.md section 4: a seed point and C-1 of its K nearest
neighbours, any geometry) and ``raster_blocks`` (g x g blocks of adjacent points of a raster,
so every group has the same geometry: the reference PINN's gridsize-2 data, 2 x 2 at 4 px)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class ScanPositions:
    """Patch-centre positions in object pixels: xcoords = column, ycoords = row (float64)."""

    xcoords: np.ndarray
    ycoords: np.ndarray

    def __post_init__(self):
        if self.xcoords.shape != self.ycoords.shape or self.xcoords.ndim != 1:
            raise ValueError("xcoords and ycoords must be 1-D arrays of equal length")

    def __len__(self) -> int:
        return len(self.xcoords)

    def take(self, index: np.ndarray) -> ScanPositions:
        return ScanPositions(self.xcoords[index], self.ycoords[index])


def random_positions(n: int, height: int, width: int, buffer: float, seed: int) -> ScanPositions:
    """Uniform positions in [buffer, width - buffer] x [buffer, height - buffer], seeded."""
    if n < 1:
        raise ValueError(f"number of positions must be >= 1, got {n}")
    if 2 * buffer >= min(height, width):
        raise ValueError(f"buffer {buffer} leaves no room in a {height}x{width} object")
    rng = np.random.default_rng(seed)
    x = rng.uniform(buffer, width - buffer, n)
    y = rng.uniform(buffer, height - buffer, n)
    return ScanPositions(x.astype(np.float64), y.astype(np.float64))


def grid_positions(step: float, height: int, width: int, buffer: float) -> ScanPositions:
    """Regular raster with ``step`` pixels between neighbours, inside the buffer."""
    if step <= 0:
        raise ValueError(f"grid step must be > 0, got {step}")
    xs = np.arange(buffer, width - buffer + 1e-9, step)
    ys = np.arange(buffer, height - buffer + 1e-9, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    return ScanPositions(gx.ravel().astype(np.float64), gy.ravel().astype(np.float64))


def split_by_y(ycoords: np.ndarray, split_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): sort by y; the upper ``round(n * split_fraction)`` test.

    Contiguous halves in y, so no test position sits between training positions."""
    if not 0.0 < split_fraction < 1.0:
        raise ValueError(f"split_fraction must be in (0, 1), got {split_fraction}")
    n = len(ycoords)
    n_test = int(round(n * split_fraction))
    if n_test < 1 or n_test >= n:
        raise ValueError(f"split_fraction {split_fraction} of {n} patterns leaves an empty split")
    order = np.argsort(ycoords, kind="stable")
    return np.sort(order[: n - n_test]), np.sort(order[n - n_test:])


@dataclass(frozen=True)
class Groups:
    """Groups of C = g*g neighbouring patterns of one split.

    indices: (G, C) int64 pattern indices into the split's arrays; channel c of a group is
    (row, col) = (c // g, c % g), channels ordered by y then x;
    dx, dy: (G, C) float64 offsets of each pattern from its group centre (mean position), pixels.
    """

    indices: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    gridsize: int

    def __len__(self) -> int:
        return self.indices.shape[0]


def _order_channels(idx: np.ndarray, xs: np.ndarray, ys: np.ndarray, g: int) -> np.ndarray:
    """Order C chosen points as a g x g raster: rows by y, within a row by x."""
    by_y = idx[np.argsort(ys[idx], kind="stable")]
    rows = [r[np.argsort(xs[r], kind="stable")] for r in by_y.reshape(g, g)]
    return np.concatenate(rows)


def group_neighbours(positions: ScanPositions, gridsize: int, group_count: int,
                     neighbor_count: int, seed: int) -> Groups:
    """Sample ``group_count`` groups of C = gridsize^2 distinct neighbouring patterns.

    gridsize 1: each group is one pattern (a seeded sample without replacement).
    gridsize > 1: seed points sampled without replacement; each takes its K = neighbor_count
    nearest neighbours (itself included, KD-tree) and keeps itself plus C-1 of the others.
    """
    g = int(gridsize)
    c = g * g
    n = len(positions)
    if g < 1:
        raise ValueError(f"gridsize must be >= 1, got {gridsize}")
    if n < c:
        raise ValueError(f"split has {n} patterns, fewer than the {c} needed for gridsize {g}")
    if group_count < 1:
        raise ValueError(f"group_count must be >= 1, got {group_count}")
    if group_count > n:
        raise ValueError(f"group_count {group_count} exceeds the {n} patterns of the split")
    rng = np.random.default_rng(seed)
    xs, ys = positions.xcoords, positions.ycoords
    seeds = np.sort(rng.choice(n, size=group_count, replace=False))
    if c == 1:
        indices = seeds[:, None]
    else:
        if neighbor_count < c:
            raise ValueError(f"neighbor_count {neighbor_count} must be >= C = {c}")
        k = min(neighbor_count, n)
        _, nbrs = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs[seeds], ys[seeds]]), k=k)
        indices = np.empty((group_count, c), dtype=np.int64)
        for i, row in enumerate(np.atleast_2d(nbrs)):
            own, others = row[0], row[1:]
            pick = rng.choice(others, size=c - 1, replace=False)
            indices[i] = _order_channels(np.concatenate([[own], pick]), xs, ys, g)
    indices = indices.astype(np.int64)
    cx = xs[indices].mean(axis=1, keepdims=True)
    cy = ys[indices].mean(axis=1, keepdims=True)
    return Groups(indices=indices, dx=xs[indices] - cx, dy=ys[indices] - cy, gridsize=g)


def median_spacing(xs: np.ndarray, ys: np.ndarray) -> float:
    """Median nearest-neighbour distance (pixels), ignoring coincident points; ValueError when
    there are fewer than two distinct positions."""
    if len(xs) < 2:
        raise ValueError(f"cannot infer a raster step from {len(xs)} position(s)")
    d, _ = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs, ys]), k=min(len(xs), 8))
    d = np.where(d > 1e-9, d, np.inf).min(axis=1)                 # nearest distinct point
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("cannot infer a raster step: all positions coincide")
    return float(np.median(d))


def group_raster_blocks(positions: ScanPositions, gridsize: int, group_count: int, seed: int,
                        step: float | None = None, stride: int = 1) -> Groups:
    """Groups of g x g raster points ``step`` pixels apart (None: the raster's own spacing,
    i.e. adjacent points), so every group has the same offsets (+-step/2 for g = 2).

    A point is a block origin (top-left channel) when the g*g points ``origin + (j, i) * step``
    all exist (within 1e-3 of a step). ``stride`` keeps only the origins whose raster index
    (in raster spacings = the median nearest-neighbour distance, counted from the smallest x
    and y) is a multiple of it in both axes: on a 2-px raster, ``step=4, stride=5`` gives the
    reference PINN's test groups, 2 x 2 at 4 px with centres 10 px apart. Positions off the
    raster simply start no block, so a mosaic of rasters works. ``group_count`` of the
    candidate blocks are kept by a seeded sample without replacement (all of them, in raster
    order, when there are no more than ``group_count``).
    """
    g = int(gridsize)
    if g < 1:
        raise ValueError(f"gridsize must be >= 1, got {gridsize}")
    if stride < 1:
        raise ValueError(f"block stride must be >= 1 raster step, got {stride}")
    if group_count < 1:
        raise ValueError(f"group_count must be >= 1, got {group_count}")
    xs, ys = positions.xcoords, positions.ycoords
    if len(xs) < g * g:
        raise ValueError(f"split has {len(xs)} patterns, fewer than the {g * g} needed for "
                         f"gridsize {g}")
    raster = median_spacing(xs, ys)
    s = raster if step is None else float(step)
    if s <= 0:
        raise ValueError(f"raster step must be > 0 pixels, got {s}")
    tree = cKDTree(np.column_stack([xs, ys]))
    tol = 1e-3 * s
    blocks = [np.arange(len(xs))]
    for c in range(1, g * g):
        j, i = divmod(c, g)                                        # row j (y), column i (x)
        d, k = tree.query(np.column_stack([xs + i * s, ys + j * s]), distance_upper_bound=tol)
        blocks.append(np.where(np.isfinite(d), k, -1))
    cand = np.stack(blocks, axis=1)                                # (n, C); -1 = point missing
    ok = (cand >= 0).all(axis=1)
    if stride > 1:
        ix = np.rint((xs - xs.min()) / raster).astype(np.int64)
        iy = np.rint((ys - ys.min()) / raster).astype(np.int64)
        ok &= (ix % stride == 0) & (iy % stride == 0)
    cand = cand[ok]
    if len(cand) == 0:
        raise ValueError(f"no {g}x{g} raster block with a {s:.4g}-px step among {len(xs)} "
                         "positions: grouping.group_method 'raster_blocks' needs a raster scan "
                         "(simulation.scan 'grid') or a matching grouping.block_step_px")
    order = np.lexsort((xs[cand[:, 0]], ys[cand[:, 0]]))           # raster order: y, then x
    cand = cand[order]
    if group_count < len(cand):
        rng = np.random.default_rng(seed)
        cand = cand[np.sort(rng.choice(len(cand), size=group_count, replace=False))]
    indices = cand.astype(np.int64)
    cx = xs[indices].mean(axis=1, keepdims=True)
    cy = ys[indices].mean(axis=1, keepdims=True)
    return Groups(indices=indices, dx=xs[indices] - cx, dy=ys[indices] - cy, gridsize=g)


def make_groups(positions: ScanPositions, gridsize: int, group_count: int, neighbor_count: int,
                seed: int, method: str = "knn", block_step: float | None = None,
                block_stride: int = 1) -> Groups:
    """Group one split by ``method`` ('knn' or 'raster_blocks'); see the two functions."""
    if method == "knn" or int(gridsize) == 1:
        return group_neighbours(positions, gridsize, group_count, neighbor_count, seed)
    if method == "raster_blocks":
        return group_raster_blocks(positions, gridsize, group_count, seed, block_step,
                                   block_stride)
    raise ValueError(f"unknown grouping method {method!r}: use 'knn' or 'raster_blocks'")
