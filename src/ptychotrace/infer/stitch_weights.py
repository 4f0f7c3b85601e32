"""Label-free stitch weights: how much to trust each pixel of a predicted patch, by its distance
from the patch centre, estimated from how overlapping patches disagree.

Why: the network's patch error grows from the patch centre outwards (on gs1_ideal the amplitude
MAE is ~2x larger 8-10 px out than at the centre; docs/benchmarks.md), yet the uniform stitch
averages every pixel of the central M x M window alike. Inverse-variance weights lower the error
of the average where several patches cover a pixel. Ground truth is not needed: if patch ``i``'s
amplitude at radius ``r`` carries an error of variance ``s(r)``, independent between patches, the
squared difference of two patches at a shared object pixel has expectation ``s(r_i) + s(r_j)``.
Binning the radii and solving the non-negative least squares over all overlapping pairs gives
``s`` per bin; the weight of a window pixel is ``1 / s(r)`` (floored, normalised to a maximum of
1). Where errors do not depend on the radius the weights come out flat (the uniform stitch).

Correlated errors (two patches wrong the same way) cancel in the difference, so ``s`` is a lower
bound of the error variance; the weights only use its shape over ``r``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from scipy.spatial import cKDTree

#: Radius bin width in patch pixels.
BIN_PX = 2.0
#: At most this many overlapping patch pairs enter the fit (an evenly spaced subset of them, so
#: the result is deterministic): the fit has a handful of unknowns, and large scans stay fast.
MAX_PAIRS = 4000
#: Variance floor relative to the largest fitted variance: bounds the weight ratio to 1 / floor.
VARIANCE_FLOOR = 0.05
#: Fewer shared window pixels than this over all pairs: too little to fit; uniform weights.
MIN_SHARED_PIXELS = 500


def window_radii(patch_size: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) distance of every patch pixel from the centre of the central ``window`` x ``window``
    square (pixels), and the (N, N) bool mask of that square (as ``central_window``)."""
    start = patch_size // 2 - window // 2
    centre = start + (window - 1) / 2
    yy, xx = np.mgrid[:patch_size, :patch_size] - centre
    inside = np.zeros((patch_size, patch_size), bool)
    inside[start:start + window, start:start + window] = True
    return np.hypot(yy, xx), inside


def overlapping_pairs(xs: np.ndarray, ys: np.ndarray, window: int,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """(K, 2) index pairs ``i < j`` whose central windows overlap (rounded offsets below
    ``window`` on both axes), excluding pairs of the same group (a group's merged patches agree by
    construction), thinned to at most ``MAX_PAIRS`` evenly spaced ones."""
    pts = np.stack([np.round(xs), np.round(ys)], axis=1)
    pairs = cKDTree(pts).query_pairs(window - 0.5, p=np.inf, output_type="ndarray")
    if len(pairs) and groups is not None:
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    if len(pairs) > MAX_PAIRS:
        pairs = pairs[np.linspace(0, len(pairs) - 1, MAX_PAIRS).round().astype(np.int64)]
    return pairs


def consistency_weights(amplitude: np.ndarray, xs: np.ndarray, ys: np.ndarray, window: int,
                        groups: np.ndarray | None = None) -> tuple[np.ndarray | None, dict]:
    """Inverse-variance window weights from the disagreement of overlapping patches.

    amplitude: (P, N, N) predicted patch amplitudes; xs, ys: (P,) positions in object pixels;
    window: the stitch window M; groups: (P,) group id of each patch (gridsize > 1) or None.
    Returns ((N, N) float32 weights, 0 outside the window and in (0, 1] inside, or None when
    there is too little overlap to fit) and a JSON-able record of the fit."""
    p, n, _ = amplitude.shape
    radius, inside = window_radii(n, window)
    n_bins = int(np.floor(radius[inside].max() / BIN_PX)) + 1
    bins = np.minimum((radius / BIN_PX).astype(np.int64), n_bins - 1)
    pairs = overlapping_pairs(np.asarray(xs, float), np.asarray(ys, float), window, groups)
    xi, yi = np.round(xs).astype(np.int64), np.round(ys).astype(np.int64)
    count = np.zeros((n_bins, n_bins))
    total = np.zeros((n_bins, n_bins))
    amp = np.asarray(amplitude, np.float64)
    for i, j in pairs:
        ox, oy = int(xi[j] - xi[i]), int(yi[j] - yi[i])
        # object pixel (v, u) of patch i is pixel (v - oy, u - ox) of patch j
        vi, ui = slice(max(0, oy), n + min(0, oy)), slice(max(0, ox), n + min(0, ox))
        vj, uj = slice(max(0, -oy), n + min(0, -oy)), slice(max(0, -ox), n + min(0, -ox))
        shared = inside[vi, ui] & inside[vj, uj]
        if not shared.any():
            continue
        d2 = (amp[i][vi, ui] - amp[j][vj, uj])[shared] ** 2
        np.add.at(count, (bins[vi, ui][shared], bins[vj, uj][shared]), 1.0)
        np.add.at(total, (bins[vi, ui][shared], bins[vj, uj][shared]), d2)
    record = {"method": "consistency", "bin_px": BIN_PX, "pairs": int(len(pairs)),
              "shared_pixels": int(count.sum())}
    if count.sum() < MIN_SHARED_PIXELS:
        record["reason"] = (f"only {int(count.sum())} shared window pixels between overlapping "
                            f"patches (< {MIN_SHARED_PIXELS}): uniform weights")
        return None, record
    # normal equations of  sum_{pixels} (s_a + s_b - d^2)^2  over the bin pairs (a, b)
    per_bin = count.sum(0) + count.sum(1)          # pixel pairs each bin takes part in
    gram = np.diag(per_bin) + count + count.T
    rhs = total.sum(0) + total.sum(1)
    observed = per_bin > 0
    var = np.zeros(n_bins)
    sub = np.ix_(observed, observed)
    var[observed], _ = nnls(gram[sub], rhs[observed])
    if not np.any(var > 0):
        record["reason"] = "overlapping patches agree exactly: uniform weights"
        return None, record
    # bins no pair reached take the nearest observed bin's variance
    idx = np.flatnonzero(observed)
    for b in np.flatnonzero(~observed):
        var[b] = var[idx[np.argmin(np.abs(idx - b))]]
    var = np.maximum(var, VARIANCE_FLOOR * var.max())
    weights = np.where(inside, 1.0 / var[bins], 0.0)
    weights /= weights.max()
    record["variance_by_radius"] = [float(v) for v in var]
    record["weight_by_radius"] = [float(var.min() / v) for v in var]
    return weights.astype(np.float32), record
