"""Detector preparation at load: saturation -> mask, crop to N around the beam centre, bin.

Rules (stated once, recorded in ``Geometry.detector``):
- saturation: a pixel whose count exceeds ``saturation_count`` in any pattern is bad in all
  patterns (the dataset has one detector mask);
- crop: an (N*bin) x (N*bin) box whose centre pixel ``(N*bin)//2`` (the DC pixel of the FFT
  convention) sits on the beam centre rounded to the nearest pixel; the beam centre is given, or
  the intensity centroid of the mean pattern over the good pixels;
- bin: counts summed over bin x bin blocks; a binned pixel is bad if ANY of its pixels is bad
  (a partial sum would bias the likelihood low), and the pixel size is multiplied by ``bin``.
Masked pixels keep whatever value they had; they are excluded from the physics, not filled.
"""

from __future__ import annotations

import numpy as np

from ..data.dataset import DatasetError
from .geometry import DetectorPreparation


def beam_centre(counts: np.ndarray, bad: np.ndarray | None) -> tuple[float, float]:
    """(row, column) intensity centroid of the mean pattern over good pixels."""
    mean = np.asarray(counts, np.float64).mean(axis=0)
    if bad is not None:
        mean = np.where(bad, 0.0, mean)
    total = mean.sum()
    if not total > 0:
        raise DatasetError("cannot find the beam centre: the mean pattern has no counts on good "
                           "pixels; give it with --beam-centre ROW COL")
    rows, cols = np.indices(mean.shape)
    return float((rows * mean).sum() / total), float((cols * mean).sum() / total)


def prepare_detector(counts: np.ndarray, bad: np.ndarray | None, n: int | None = None,
                     centre: tuple[float, float] | None = None, bin_factor: int = 1,
                     saturation_count: float | None = None, source: str = "data"
                     ) -> tuple[np.ndarray, np.ndarray | None, DetectorPreparation]:
    """counts (P, H, W) -> (P, N, N) float32; bad (H, W) bool or None -> (N, N) bool or None.

    ``n`` None keeps the frame (it must then be square and divisible by ``bin_factor``)."""
    p, h, w = counts.shape
    if bin_factor < 1:
        raise DatasetError(f"{source}: bin factor must be >= 1, got {bin_factor}")
    n_sat = 0
    if saturation_count is not None:
        if not saturation_count > 0:
            raise DatasetError(f"{source}: saturation count must be > 0, got {saturation_count}")
        sat = (counts > saturation_count).any(axis=0)
        n_sat = int(sat.sum())
        bad = sat if bad is None else (bad | sat)
    box, centre_rec, centre_from = None, None, None
    if n is not None:
        side = n * bin_factor
        if side > min(h, w):
            raise DatasetError(f"{source}: cannot crop {side} px (N={n} x bin {bin_factor}) from a "
                               f"{h}x{w} detector")
        if centre is None:
            centre, centre_from = beam_centre(counts, bad), "centroid of the mean pattern"
        else:
            centre_from = "given"
        centre_rec = (float(centre[0]), float(centre[1]))
        r0 = int(np.floor(centre[0] + 0.5)) - side // 2
        c0 = int(np.floor(centre[1] + 0.5)) - side // 2
        if r0 < 0 or c0 < 0 or r0 + side > h or c0 + side > w:
            raise DatasetError(f"{source}: a {side} px box around the beam centre (row "
                               f"{centre[0]:.1f}, col {centre[1]:.1f}) leaves the {h}x{w} detector; "
                               "give a smaller --crop N or the centre with --beam-centre")
        box = (r0, r0 + side, c0, c0 + side)
        counts = counts[:, r0:r0 + side, c0:c0 + side]
        bad = None if bad is None else bad[r0:r0 + side, c0:c0 + side]
    elif h != w or h % bin_factor:
        raise DatasetError(f"{source}: patterns are {h}x{w}; give --crop N to crop a square frame"
                           + (f" divisible by the bin factor {bin_factor}" if h % bin_factor else ""))
    if bin_factor > 1:
        s = counts.shape[-1] // bin_factor
        counts = counts.reshape(p, s, bin_factor, s, bin_factor).sum(axis=(2, 4), dtype=np.float64)
        if bad is not None:
            bad = bad.reshape(s, bin_factor, s, bin_factor).any(axis=(1, 3))
    counts = np.ascontiguousarray(counts, dtype=np.float32)
    if bad is not None and bad.all():
        raise DatasetError(f"{source}: the detector mask leaves no valid pixel")
    rec = DetectorPreparation(original_shape=(h, w), beam_centre_px=centre_rec,
                              beam_centre_from=centre_from, crop_box=box, bin_factor=bin_factor,
                              saturation_count=saturation_count, saturated_pixels=n_sat,
                              masked_fraction=0.0 if bad is None else float(bad.mean()))
    return counts, bad, rec
