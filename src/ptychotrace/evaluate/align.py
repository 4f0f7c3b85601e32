"""Putting a prediction in the truth's frame: sub-pixel registration, phase offset / ramp removal,
amplitude scale.

Conventions (all of them hold for every function here):
- Images are 2-D (H, W) arrays indexed [row, col]; shifts are (dy, dx) in pixels, rows first.
- ``register_subpixel(pred, truth)`` returns the shift that must be *applied to pred* (with
  :func:`apply_shift`) to overlay it on ``truth``. If ``pred`` is ``truth`` moved by ``s``, the
  answer is ``-s``.
- Phases are in radians. Phase differences are always wrapped to (-pi, pi].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal.windows import tukey
from skimage.registration import phase_cross_correlation

__all__ = [
    "register_subpixel",
    "apply_shift",
    "integer_shift_mask",
    "wrap_phase",
    "remove_phase_offset",
    "remove_phase_ramp",
    "amplitude_scale",
    "AMPLITUDE_SCALE_MODES",
]

AMPLITUDE_SCALE_MODES = ("none", "recorded", "least_squares")

# Fraction of the support tapered at each side before the sub-pixel refinement. Cropping to the
# mask makes the image non-periodic; the taper stops the crop edge (which does not move with the
# content) from pulling the correlation peak towards zero shift.
_TUKEY_ALPHA = 0.5


def wrap_phase(a):
    """Wrap radians to (-pi, pi]: ``angle(exp(i a))``. Same shape as ``a``, float64."""
    return np.angle(np.exp(1j * np.asarray(a, dtype=np.float64)))


def _as_bool_mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask shape {m.shape} does not match image shape {tuple(shape)}")
    return m


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _tukey2d(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(tukey(shape[0], _TUKEY_ALPHA), tukey(shape[1], _TUKEY_ALPHA))


def _prepared(image: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean-free on the support, 0 elsewhere (so the support edge is not a step in the data)."""
    out = np.zeros(image.shape, dtype=np.float64)
    out[support] = image[support] - image[support].mean()
    return out


def integer_shift_mask(mask, shift_yx) -> np.ndarray:
    """Shift a boolean (H, W) mask by ``round(shift_yx)`` whole pixels, filling with False.

    Masks are not Fourier-shifted (that would blur a yes/no answer); rounding moves the boundary by
    at most half a pixel relative to a sub-pixel shift of the data.
    """
    m = np.asarray(mask, dtype=bool)
    dy, dx = (int(np.round(s)) for s in shift_yx)
    out = np.zeros_like(m)
    h, w = m.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_r = slice(max(0, -dy), h - max(0, dy))
    dst_r = slice(max(0, dy), h - max(0, -dy))
    src_c = slice(max(0, -dx), w - max(0, dx))
    dst_c = slice(max(0, dx), w - max(0, -dx))
    out[dst_r, dst_c] = m[src_r, src_c]
    return out


def apply_shift(image, shift_yx):
    """Shift a real or complex (H, W) image by ``shift_yx`` = (dy, dx) pixels (positive = towards
    larger indices) with a Fourier phase ramp (scipy.ndimage.fourier_shift).

    The shift is circular: content leaving one edge re-enters at the other, and a sharp edge rings.
    For real input the real part is returned, so a fractional shift loses the Nyquist component of
    an even-sized axis (it cannot be represented on the samples); complex input round-trips exactly.
    Returns float64 for real input, complex128 for complex input.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"apply_shift expects a 2-D image, got shape {a.shape}")
    is_complex = np.iscomplexobj(a)
    spec = np.fft.fft2(a.astype(np.complex128))
    shifted = np.fft.ifft2(ndimage.fourier_shift(spec, shift=tuple(float(s) for s in shift_yx)))
    return shifted if is_complex else shifted.real


def register_subpixel(pred, truth, mask=None, upsample_factor: int = 100):
    """Sub-pixel translation that overlays ``pred`` on ``truth``.

    pred, truth: (H, W) real images (pass amplitudes; complex input is reduced to its modulus).
    mask: (H, W) bool, True where ``pred`` is meaningful (e.g. the scan coverage). The truth is
      used wherever it is finite.
    Returns ``(shift_yx, error)``: shift_yx (2,) float64 pixels to apply to ``pred``
    (:func:`apply_shift`), error = skimage's translation-invariant normalised RMS error of the
    sub-pixel stage (dimensionless; NaN when not available).

    Method, and why: skimage's upsampled registration cannot take masks and its masked one
    (Padfield 2012) is whole-pixel only, so two stages are used, with or without a mask
    (mask=None means every finite pixel; frames are not assumed periodic):
    (1) masked normalised cross-correlation gives the whole-pixel shift, with pred's mask and the
        truth's finite pixels as the two supports (robust to large offsets and to the zeros
        outside coverage);
    (2) after moving pred and its mask by that whole-pixel shift, both images are cut to the
        mask's bounding box, made mean-free on the mask and zero outside it, Tukey-tapered, and an
        upsampled plain cross-correlation (Guizar-Sicairos 2008, ``normalization=None``: more
        robust to noise and contrast differences than phase normalisation) gives the sub-pixel
        remainder, to 1/upsample_factor px. The result is (1) + (2).
    The taper costs a small bias towards the box (about 0.01 px on smooth test images).
    """
    p = np.abs(np.asarray(pred)) if np.iscomplexobj(pred) else np.asarray(pred, dtype=np.float64)
    t = np.abs(np.asarray(truth)) if np.iscomplexobj(truth) else np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must be the same 2-D shape")
    p = p.astype(np.float64)
    t = t.astype(np.float64)

    support_p = _as_bool_mask(mask, p.shape) & np.isfinite(p)
    support_t = np.isfinite(t)
    if support_p.sum() < 4:
        raise ValueError("registration mask selects fewer than 4 finite pixels")
    p0 = np.where(support_p, p, 0.0)
    t0 = np.where(support_t, t, 0.0)

    # (1) whole-pixel shift from masked normalised cross-correlation.
    coarse = phase_cross_correlation(t0, p0, reference_mask=support_t, moving_mask=support_p)[0]
    coarse = np.round(np.asarray(coarse, dtype=np.float64))

    # (2) sub-pixel remainder on the (moved) mask's bounding box.
    p1 = np.real(apply_shift(p0, coarse)) if np.any(coarse) else p0
    m1 = integer_shift_mask(support_p, coarse) & support_t
    if m1.sum() < 4:
        return coarse, float("nan")
    box = _bbox(m1)
    m_box = m1[box]
    win = _tukey2d(m_box.shape)
    a = _prepared(t0[box], m_box) * win
    b = _prepared(p1[box], m_box) * win
    fine, error, _ = phase_cross_correlation(a, b, upsample_factor=upsample_factor,
                                             normalization=None)
    return coarse + np.asarray(fine, dtype=np.float64), float(error)


def _phase_of(x) -> np.ndarray:
    x = np.asarray(x)
    return np.angle(x) if np.iscomplexobj(x) else x.astype(np.float64)


def _weights(weights, shape, valid) -> np.ndarray:
    if weights is None:
        return valid.astype(np.float64)
    w = np.asarray(weights)
    w = np.abs(w) if np.iscomplexobj(w) else w.astype(np.float64)
    return np.where(valid & np.isfinite(w), w, 0.0)


def remove_phase_offset(pred_phase_or_complex, truth, mask=None, weights=None):
    """Remove the global phase offset between prediction and truth.

    pred_phase_or_complex, truth: (H, W) phases in radians, or complex fields (their angle is used).
    mask: (H, W) bool region used for the estimate (None = all finite pixels).
    weights: (H, W) non-negative weights, e.g. the truth amplitude (None = uniform).
    offset = angle(sum(w * exp(i (pred - truth)))) over the mask (a circular mean, so it is
    correct across the +-pi wrap).
    Returns ``(corrected, offset_rad)``: corrected = wrap(pred - offset) on the whole (H, W) array,
    float64 radians; offset_rad a float (0.0 when the weighted sum is zero).
    """
    p = _phase_of(pred_phase_or_complex)
    t = _phase_of(truth)
    valid = _as_bool_mask(mask, p.shape) & np.isfinite(p) & np.isfinite(t)
    w = _weights(weights, p.shape, valid)
    z = np.sum(w[valid] * np.exp(1j * (p[valid] - t[valid])))
    offset = float(np.angle(z)) if np.abs(z) > 0 else 0.0
    return wrap_phase(p - offset), offset


def remove_phase_ramp(pred_phase_or_complex, truth, mask=None, weights=None):
    """Fit and remove a linear phase ramp ``a + b*x + c*y`` of the wrapped difference pred - truth.

    x = column index, y = row index (pixels, origin at pixel [0, 0]); a in rad, b and c in rad/px.
    The fit is weighted least squares on the wrapped difference. A ramp steep enough to wrap
    inside the region would defeat a direct fit, so the slopes are first estimated from the
    weighted mean phase of neighbour products (wrap-free), that ramp is removed, and the least
    squares fit is done on the wrapped remainder; the two are summed.
    Returns ``(corrected, coeffs)``: corrected = wrap(pred - ramp) on the whole (H, W) array in
    radians; coeffs = {offset_rad, slope_x_rad_per_px, slope_y_rad_per_px, origin, pixels_used}.
    """
    p = _phase_of(pred_phase_or_complex)
    t = _phase_of(truth)
    valid = _as_bool_mask(mask, p.shape) & np.isfinite(p) & np.isfinite(t)
    if valid.sum() < 3:
        raise ValueError("phase ramp fit needs at least 3 valid pixels")
    w = _weights(weights, p.shape, valid)
    d = np.where(valid, wrap_phase(p - t), 0.0)
    z = w * np.exp(1j * d)

    # Wrap-free slope estimate: phase of sum z[y, x+1] * conj(z[y, x]) (likewise along y).
    zx = np.sum(z[:, 1:] * np.conj(z[:, :-1]))
    zy = np.sum(z[1:, :] * np.conj(z[:-1, :]))
    b0 = float(np.angle(zx)) if np.abs(zx) > 0 else 0.0
    c0 = float(np.angle(zy)) if np.abs(zy) > 0 else 0.0

    yy, xx = np.indices(p.shape, dtype=np.float64)
    resid = wrap_phase(d - b0 * xx - c0 * yy)
    # Circular mean first so the remainder is centred before the (non-circular) linear fit.
    zr = np.sum(w[valid] * np.exp(1j * resid[valid]))
    a0 = float(np.angle(zr)) if np.abs(zr) > 0 else 0.0
    resid = wrap_phase(resid - a0)

    sw = np.sqrt(w[valid])
    design = np.stack([np.ones(valid.sum()), xx[valid], yy[valid]], axis=1) * sw[:, None]
    sol, *_ = np.linalg.lstsq(design, resid[valid] * sw, rcond=None)
    a = a0 + float(sol[0])
    b = b0 + float(sol[1])
    c = c0 + float(sol[2])
    ramp = a + b * xx + c * yy
    coeffs = {
        "offset_rad": float(wrap_phase(a)),
        "slope_x_rad_per_px": b,
        "slope_y_rad_per_px": c,
        "origin": "pixel [row 0, col 0]; x = column index, y = row index",
        "pixels_used": int(valid.sum()),
    }
    return wrap_phase(p - ramp), coeffs


def amplitude_scale(pred, truth, mask=None, mode: str = "none", recorded_value=None,
                    recorded_source: str = "recorded"):
    """Scalar that multiplies the predicted amplitude, as the telemetry ``prediction_scale`` block.

    pred, truth: (H, W) amplitudes (complex input is reduced to its modulus). mask: (H, W) bool
    covered region (None = all). mode: "none" | "recorded" | "least_squares".
    - least_squares: value = sum(p*t) / sum(p*p) over finite covered pixels (minimises
      sum (value*p - t)^2).
    - recorded: value = ``recorded_value`` (e.g. from the checkpoint); None -> not applied.
    - none: nothing applied.
    The least-squares numbers are always filled in, as a diagnostic, whatever the mode.
    Returns {mode, value, applied, source, reason (only when not applied),
    least_squares {finite_count, numerator, denominator, value}}; plain Python types.
    The caller multiplies the amplitude by ``value`` when ``applied`` is True.
    """
    if mode not in AMPLITUDE_SCALE_MODES:
        raise ValueError(f"amplitude scale mode must be one of {AMPLITUDE_SCALE_MODES}, got {mode!r}")
    p = np.abs(np.asarray(pred)) if np.iscomplexobj(pred) else np.asarray(pred, dtype=np.float64)
    t = np.abs(np.asarray(truth)) if np.iscomplexobj(truth) else np.asarray(truth, dtype=np.float64)
    valid = _as_bool_mask(mask, p.shape) & np.isfinite(p) & np.isfinite(t)
    pv = p[valid].astype(np.float64)
    tv = t[valid].astype(np.float64)
    num = float(np.sum(pv * tv))
    den = float(np.sum(pv * pv))
    ls_ok = valid.any() and den > 0 and np.isfinite(num) and np.isfinite(den)
    ls = {
        "finite_count": int(valid.sum()),
        "numerator": num if np.isfinite(num) else None,
        "denominator": den if np.isfinite(den) else None,
        "value": num / den if ls_ok else None,
    }
    block: dict = {"mode": mode, "value": None, "applied": False, "source": None}
    if mode == "none":
        block["reason"] = "amplitude_scale_mode is 'none'"
    elif mode == "recorded":
        block["source"] = recorded_source
        if recorded_value is None:
            block["reason"] = "no recorded scale available"
        elif not np.isfinite(float(recorded_value)):
            block["reason"] = f"recorded scale is not finite ({recorded_value!r})"
        else:
            block["value"] = float(recorded_value)
            block["applied"] = True
    else:
        block["source"] = "least_squares_fit_on_covered_region"
        if ls_ok:
            block["value"] = ls["value"]
            block["applied"] = True
        elif not valid.any():
            block["reason"] = "no finite covered pixels"
        else:
            block["reason"] = "sum(p*p) is zero or non-finite"
    block["least_squares"] = ls
    return block
