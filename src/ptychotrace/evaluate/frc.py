"""Fourier ring correlation between two 2-D images, with the 1/2-bit and 0.5 criteria.

FRC(r) = Re(sum_ring F1 conj(F2)) / sqrt(sum_ring |F1|^2 * sum_ring |F2|^2).
Spatial frequencies are in cycles/pixel (Nyquist = 0.5); resolutions are in pixels
(= 1 / crossing frequency).
"""

from __future__ import annotations

import numpy as np
from scipy.signal.windows import hann, tukey

__all__ = ["fourier_ring_correlation", "half_bit_threshold", "WINDOWS"]

WINDOWS = ("tukey", "hann", None)
_TUKEY_ALPHA = 0.5


def half_bit_threshold(n_r):
    """van Heel & Schatz (2005) 1/2-bit threshold for rings holding ``n_r`` pixels (array-like).

    T = (0.2071 + 1.9102/sqrt(n)) / (1.2071 + 0.9102/sqrt(n)); tends to 0.1716 for large n.
    """
    n = np.asarray(n_r, dtype=np.float64)
    inv = 1.0 / np.sqrt(np.maximum(n, 1.0))
    return (0.2071 + 1.9102 * inv) / (1.2071 + 0.9102 * inv)


def _window(name, shape):
    if name is None:
        return None
    if name == "tukey":
        return np.outer(tukey(shape[0], _TUKEY_ALPHA), tukey(shape[1], _TUKEY_ALPHA))
    if name == "hann":
        return np.outer(hann(shape[0], sym=False), hann(shape[1], sym=False))
    raise ValueError(f"window must be one of {WINDOWS}, got {name!r}")


def _first_crossing(freq: np.ndarray, values: np.ndarray, threshold: np.ndarray):
    """First frequency where ``values`` falls below ``threshold``, linearly interpolated between
    ring samples. Returns (frequency or None, note or None)."""
    d = values - threshold
    ok = np.isfinite(d)
    if not ok.any():
        return None, "FRC undefined on every ring"
    below = np.flatnonzero(ok & (d < 0))
    if below.size == 0:
        return None, "FRC stays above the threshold up to Nyquist (0.5 cycles/pixel)"
    k = int(below[0])
    if k == 0:
        return float(freq[0]), "FRC below the threshold from the first ring"
    # Previous finite sample: skipped (undefined) rings are bridged.
    prev = np.flatnonzero(ok[:k])
    j = int(prev[-1]) if prev.size else k
    if j == k:
        return float(freq[k]), None
    f0, f1, d0, d1 = freq[j], freq[k], d[j], d[k]
    return float(f0 + (f1 - f0) * d0 / (d0 - d1)), None


def fourier_ring_correlation(a, b, mask=None, window: str | None = "tukey") -> dict:
    """(Long by choice: one FRC computation in order; a third is the docstring.)
    FRC of two (H, W) real or complex images of the same shape.

    mask: optional (H, W) bool region (e.g. the scan coverage). Both images are cut to the mask's
      bounding box (the FRC needs a rectangle; the box is the smallest one holding the region) and
      the pixels of the box outside the mask are set to the image's mean over the mask, so
      uncovered pixels carry no signal. Non-finite pixels are treated as outside the mask.
    Preprocessing: each image is made mean-free on the region (so DC does not leak into low rings
      through the window), then multiplied by the apodisation ``window``:
      "tukey" (alpha 0.5, default), "hann", or None (only for periodic images, e.g. synthetic
      tests; a crop of a larger scene has edges that correlate between the two images and
      inflate the FRC along the axes).
    Rings: ring r holds frequencies with round(|k| * L) == r, L = min(box height, box width), |k|
      in cycles/pixel (so rings are 1/L wide); rings 1 .. L//2 are reported (DC omitted).
    Returns a dict (plain Python types):
      curve: [{spatial_frequency, frc, half_bit_threshold, n_pixels}] (frc None where undefined),
      half_bit_crossing_frequency, half_bit_resolution (px = 1/frequency),
      frc50_crossing_frequency, frc50 (px = 1/frequency of the 0.5 crossing),
      each None (with a ``*_note``) when the curve never crosses; half_bit_crossed and
      frc50_crossed (False: never crossed up to Nyquist, so the resolution is at least 2 px;
      None: undefined); plus window, shape (the box),
      box [row0, row1, col0, col1] (half-open).
    Crossings are the first drop below the criterion, linearly interpolated between rings.
    Long by design (75 lines of code after this docstring):
    one linear recipe (window, rings, thresholds, crossings) kept in order."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"FRC needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    region = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        region &= np.asarray(mask, dtype=bool)
    out: dict = {"window": window, "curve": [], "half_bit_crossing_frequency": None,
                 "half_bit_resolution": None, "frc50_crossing_frequency": None, "frc50": None}
    if region.sum() < 4:
        out["note"] = "fewer than 4 valid pixels in the region"
        out["half_bit_resolution_note"] = out["frc50_note"] = out["note"]
        return out
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out["box"] = [int(r0), int(r1), int(c0), int(c1)]
    reg = region[r0:r1, c0:c1]
    h, w = reg.shape
    out["shape"] = [int(h), int(w)]
    length = min(h, w)
    if length < 4:
        out["note"] = f"region box {h}x{w} is too small for an FRC"
        out["half_bit_resolution_note"] = out["frc50_note"] = out["note"]
        return out

    ctype = np.complex128
    win = _window(window, (h, w))
    spectra = []
    for img in (a, b):
        x = img[r0:r1, c0:c1].astype(ctype if np.iscomplexobj(img) else np.float64)
        x = np.where(reg, x - x[reg].mean(), 0)
        if win is not None:
            x = x * win
        spectra.append(np.fft.fft2(x))
    f1, f2 = spectra

    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.fftfreq(w)[None, :]
    kr = np.sqrt(ky * ky + kx * kx)
    ring = np.rint(kr * length).astype(np.int64)
    n_rings = length // 2
    keep = ring <= n_rings
    ring_k = ring[keep]
    cross = np.bincount(ring_k, weights=np.real(f1 * np.conj(f2))[keep], minlength=n_rings + 1)
    p1 = np.bincount(ring_k, weights=(np.abs(f1) ** 2)[keep], minlength=n_rings + 1)
    p2 = np.bincount(ring_k, weights=(np.abs(f2) ** 2)[keep], minlength=n_rings + 1)
    npix = np.bincount(ring_k, minlength=n_rings + 1)

    sel = np.arange(1, n_rings + 1)
    denom = np.sqrt(p1[sel] * p2[sel])
    # Relative floor: a ring with (numerically) no power in either image has no defined FRC.
    floor = 1e-12 * max(float(np.max(denom)), np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.where(denom > floor, cross[sel] / denom, np.nan)
    freq = sel / float(length)
    thr = half_bit_threshold(npix[sel])

    out["curve"] = [
        {"spatial_frequency": float(f), "frc": float(v) if np.isfinite(v) else None,
         "half_bit_threshold": float(t), "n_pixels": int(n)}
        for f, v, t, n in zip(freq, frc, thr, npix[sel], strict=True)
    ]
    for key, res_key, t in (("half_bit_crossing_frequency", "half_bit_resolution", thr),
                            ("frc50_crossing_frequency", "frc50", np.full_like(freq, 0.5))):
        fcross, note = _first_crossing(freq, frc, t)
        out[key] = fcross
        out[res_key] = (1.0 / fcross) if fcross else None
        # crossed: False means "stays above the threshold up to Nyquist" (resolution at least
        # 2 px); None means the FRC is undefined on every ring.
        out[f"{key.split('_crossing')[0]}_crossed"] = (
            True if fcross is not None else (None if note and "undefined" in note else False))
        if note:
            out[f"{res_key}_note"] = note
    return out
