"""Prediction vs ground truth metrics (physics spec section 7, telemetry comparison_metrics.json).

Every number is reduced in float64 and returned as a plain Python float/int/list, so the dicts are
JSON-serialisable as they are. No NaN or inf is ever returned: a value that is not finite is
``None`` and a sibling ``<key>_note`` says why.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from .align import (
    amplitude_scale,
    apply_shift,
    integer_shift_mask,
    register_subpixel,
    remove_phase_offset,
    remove_phase_ramp,
    wrap_phase,
)
from .frc import fourier_ring_correlation

__all__ = ["compare_channel", "compare_reconstruction", "output_range_check", "HEADLINE_KEYS",
           "REGISTRATION_MIN_SHIFT_PX", "BOUND_RELATIVE_TOLERANCE"]

#: Shifts at or below this norm (pixels) are recorded but not applied.
REGISTRATION_MIN_SHIFT_PX = 0.01
#: A pixel is "at the bound" when |value - bound| <= this * max(|bound|, tiny).
BOUND_RELATIVE_TOLERANCE = 1e-6
#: SSIM window side (pixels), skimage's default; shrunk (odd, >= 3) for smaller regions.
SSIM_WIN_SIZE = 7
#: Keys repeated on the full canvas.
HEADLINE_KEYS = ("mae", "rmse", "pearson_r", "ssim", "psnr")
_CHANNELS = ("amplitude", "phase")


def _num(out: dict, key: str, value, note: str | None = None) -> None:
    """Store a finite float, or None plus ``<key>_note``."""
    if value is not None:
        v = float(value)
        if math.isfinite(v):
            out[key] = v
            return
        note = note or f"non-finite value ({v})"
    out[key] = None
    out[f"{key}_note"] = note or "not computed"


def _stats(x: np.ndarray) -> dict:
    """min, max, mean, std (population), median of a 1-D float64 array (non-empty)."""
    return {"min": float(np.min(x)), "max": float(np.max(x)), "mean": float(np.mean(x)),
            "std": float(np.std(x)), "median": float(np.median(x))}


def output_range_check(pred, mask, bound) -> dict:
    """Fraction of the mask's finite pixels of ``pred`` (real (H, W)) within
    BOUND_RELATIVE_TOLERANCE (relative) of ``bound`` -- a saturated amplitude activation."""
    p = np.asarray(pred, dtype=np.float64)
    valid = np.asarray(mask, dtype=bool) & np.isfinite(p)
    b = float(bound)
    tol = BOUND_RELATIVE_TOLERANCE * max(abs(b), np.finfo(np.float64).tiny)
    n = int(valid.sum())
    out = {"bound": b, "relative_tolerance": BOUND_RELATIVE_TOLERANCE, "count": n}
    if n == 0:
        out["fraction_at_bound"] = None
        out["fraction_at_bound_note"] = "no finite pixels in the region"
    else:
        out["fraction_at_bound"] = float(np.count_nonzero(np.abs(p[valid] - b) <= tol) / n)
    return out


def _ssim(p: np.ndarray, t: np.ndarray, valid: np.ndarray, data_range: float, out: dict) -> None:
    """SSIM on the bounding box of ``valid``, averaged over pixels whose window lies inside it.

    Inside the box, pixels outside ``valid`` are set (in both images) to the truth's mean over
    ``valid``; the SSIM map (full=True) is then averaged over ``valid`` eroded by the window, i.e.
    only over windows made entirely of region pixels, so nothing outside the region enters. If the
    erosion leaves nothing, all ``valid`` pixels are averaged instead (noted).
    """
    out["ssim_data_range"] = float(data_range)
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    vb = valid[box]
    side = min(vb.shape)
    win = min(SSIM_WIN_SIZE, side if side % 2 else side - 1)
    out["ssim_win_size"] = int(win) if win >= 3 else None
    if win < 3:
        _num(out, "ssim", None, f"region box {vb.shape} too small for an SSIM window")
        return
    if not (data_range > 0 and math.isfinite(data_range)):
        _num(out, "ssim", None, f"data range {data_range} is not positive and finite")
        return
    fill = float(t[valid].mean())
    pb = np.where(vb, p[box], fill)
    tb = np.where(vb, t[box], fill)
    smap = structural_similarity(tb, pb, win_size=win, data_range=float(data_range), full=True)[1]
    inner = ndimage.binary_erosion(vb, structure=np.ones((win, win), bool), border_value=0)
    if inner.any():
        out["ssim_support"] = "pixels whose whole window lies in the region"
        use = inner
    else:
        out["ssim_support"] = "all region pixels (region thinner than the window; windows partly filled)"
        use = vb
    out["ssim_pixels"] = int(use.sum())
    _num(out, "ssim", float(np.mean(smap[use], dtype=np.float64)))


def compare_channel(pred, truth, mask=None, data_range=None, channel: str = "amplitude",
                    activation_bound=None, frc_window: str | None = "tukey",
                    include_frc: bool = True) -> dict:
    """(Long by choice: a fixed recipe of one channel, read top to bottom; 20 lines are the docstring.)
    Metrics of one real channel on a region.

    pred, truth: (H, W) real arrays (amplitude: any units, both the same; phase: radians).
    mask: (H, W) bool region (None = whole array); non-finite pixels of either image are
      excluded (counted in ``nonfinite_count``).
    data_range: SSIM data range and PSNR peak; None = max - min of the truth on the region.
    channel: "amplitude" or "phase". For phase the prediction is re-expressed as
      ``truth + wrap(pred - truth)`` so every metric (errors, bias, pearson, SSIM, PSNR, FRC and
      pred_stats) sees the wrapped difference; phase is never rescaled.
    activation_bound: for amplitude, the bound of the output activation (checked on ``pred`` as
      given).
    Returns {channel, count, nonfinite_count, coverage_fraction (mask pixels / all pixels), mae,
    rmse, max_abs, pearson_r, ssim, ssim_data_range, ssim_win_size, ssim_support, ssim_pixels,
    psnr {value, peak}, frc (see fourier_ring_correlation), pred_stats, truth_stats
    {min, max, mean, std, median}, bias_summary {mean, median, p05, p95} of pred - truth,
    output_range_check ({bound, fraction_at_bound, ...} or None + output_range_check_note)}.
    Long by design (75 lines of code after this docstring):
    one linear recipe (region, registration, scale, metrics) kept in order."""
    if channel not in _CHANNELS:
        raise ValueError(f"channel must be one of {_CHANNELS}, got {channel!r}")
    t = np.asarray(truth)
    p = np.asarray(pred)
    if np.iscomplexobj(p) or np.iscomplexobj(t):
        raise ValueError("compare_channel takes real images; pass amplitude or phase")
    t = t.astype(np.float64)
    p = p.astype(np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must be the same 2-D shape")
    region = np.ones(p.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if region.shape != p.shape:
        raise ValueError(f"mask shape {region.shape} does not match image shape {p.shape}")
    valid = region & np.isfinite(p) & np.isfinite(t)
    if channel == "phase":
        # Keep the prediction on the truth's branch so its difference is the wrapped one.
        p = np.where(valid, t + wrap_phase(p - t), p)

    n = int(valid.sum())
    out: dict = {"channel": channel, "count": n, "nonfinite_count": int(region.sum()) - n,
                 "coverage_fraction": float(region.mean())}

    if channel == "phase":
        out["output_range_check"] = None
        out["output_range_check_note"] = "not applicable to the phase channel"
    elif activation_bound is None:
        out["output_range_check"] = None
        out["output_range_check_note"] = "no activation bound given"
    else:
        out["output_range_check"] = output_range_check(p, valid, activation_bound)

    if n == 0:
        why = "no finite pixels in the region"
        for key in ("mae", "rmse", "max_abs", "pearson_r", "ssim"):
            _num(out, key, None, why)
        out["psnr"] = {"value": None, "peak": None, "value_note": why}
        out["pred_stats"] = out["truth_stats"] = out["bias_summary"] = out["frc"] = None
        return out

    pv, tv = p[valid], t[valid]
    d = pv - tv
    absd = np.abs(d)
    mse = float(np.mean(d * d))
    _num(out, "mae", np.mean(absd))
    _num(out, "rmse", math.sqrt(mse))
    _num(out, "max_abs", np.max(absd))

    sp, st = float(np.std(pv)), float(np.std(tv))
    if n < 2 or sp == 0.0 or st == 0.0:
        _num(out, "pearson_r", None, "undefined: constant prediction or truth on the region")
    else:
        r = float(np.mean((pv - pv.mean()) * (tv - tv.mean())) / (sp * st))
        _num(out, "pearson_r", min(1.0, max(-1.0, r)))

    peak = float(np.max(tv) - np.min(tv)) if data_range is None else float(data_range)
    _ssim(p, t, valid, peak, out)

    psnr: dict = {"peak": peak, "peak_source": "truth max - min on the region"
                  if data_range is None else "given data_range"}
    if not (peak > 0 and math.isfinite(peak)):
        _num(psnr, "value", None, f"peak {peak} is not positive and finite")
    elif mse == 0.0:
        _num(psnr, "value", None, "identical on the region (mse = 0): PSNR is infinite")
    else:
        _num(psnr, "value", 10.0 * math.log10(peak * peak / mse))
    out["psnr"] = psnr

    out["pred_stats"] = _stats(pv)
    out["truth_stats"] = _stats(tv)
    q05, q50, q95 = np.percentile(d, [5.0, 50.0, 95.0])
    out["bias_summary"] = {"mean": float(np.mean(d)), "median": float(q50), "p05": float(q05),
                           "p95": float(q95)}
    if include_frc:
        out["frc"] = fourier_ring_correlation(p, t, mask=valid, window=frc_window)
    return out


#: Largest registration shift that is applied (pixels). Predictions are stitched in the object frame,
#: so frames agree by construction; a larger "shift" means the correlation failed (e.g. a nearly
#: flat prediction) and applying it would compare unrelated regions. It is still reported.
REGISTRATION_MAX_SHIFT_PX = 8.0


def _registration(pred: np.ndarray, truth: np.ndarray, covered: np.ndarray, register: bool,
                  max_shift_px: float | None = REGISTRATION_MAX_SHIFT_PX):
    """Register pred (complex (H, W)) to truth by amplitude on the covered region.

    Returns (pred_aligned, covered_aligned, block). The data get the sub-pixel Fourier shift, the
    mask the rounded shift (see integer_shift_mask). Before the Fourier shift, uncovered and
    non-finite pixels are filled with the covered mean, so the coverage edge is a small step
    rather than a drop to zero (less ringing into the region); afterwards the pixels outside the
    moved mask are set back to 0 and non-finite pixels are restored as NaN where they moved to.
    """
    block: dict = {"shift_px": None, "applied": False, "min_shift_px": REGISTRATION_MIN_SHIFT_PX,
                   "convention": "(dy, dx) px applied to the prediction to overlay it on the truth",
                   "mask_shift_px": [0, 0]}
    finite = np.isfinite(pred)
    reg_mask = covered & finite
    if not register:
        block["note"] = "registration disabled"
        return pred, covered, block
    if reg_mask.sum() < 16:
        block["note"] = "too few finite covered pixels to register"
        return pred, covered, block
    for name, img in (("truth", truth), ("prediction", pred)):
        amp = np.abs(img[reg_mask])
        if not np.std(amp) > 1e-9 * max(float(np.mean(amp)), np.finfo(np.float64).tiny):
            # A flat amplitude (pure phase object, empty prediction) carries nothing to correlate.
            block["note"] = f"{name} amplitude has no contrast on the covered region; not registered"
            return pred, covered, block
    shift, error = register_subpixel(np.abs(pred), np.abs(truth), mask=reg_mask)
    block["shift_px"] = [float(s) for s in shift]
    _num(block, "error", error, "not available")
    if float(np.hypot(*shift)) <= REGISTRATION_MIN_SHIFT_PX:
        return pred, covered, block
    block["max_shift_px"] = max_shift_px
    if max_shift_px is not None and float(np.hypot(*shift)) > max_shift_px:
        block["note"] = (f"shift {float(np.hypot(*shift)):.2f} px exceeds max_shift_px {max_shift_px}; "
                         "reported, not applied (the correlation is not trustworthy)")
        return pred, covered, block
    fill = np.mean(pred[reg_mask])
    moved = apply_shift(np.where(reg_mask, pred, fill), shift)
    covered_moved = integer_shift_mask(covered, shift)
    moved = np.where(covered_moved, moved, 0)
    lost = integer_shift_mask(covered & ~finite, shift)
    moved[lost] = np.nan
    block["applied"] = True
    block["mask_shift_px"] = [int(np.round(s)) for s in shift]
    return moved, covered_moved, block


def compare_reconstruction(pred_complex, truth_complex, covered, *, register: bool = True,
                           phase_ramp: bool = False, amplitude_scale_mode: str = "none",
                           recorded_scale=None, activation_bound=None,
                           amplitude_data_range=None, phase_data_range=None,
                           max_shift_px: float | None = REGISTRATION_MAX_SHIFT_PX,
                           frc_window: str | None = "tukey") -> dict:
    """(Long by choice: the spec's steps (a)-(e) in order; a third is the docstring.)
    The standard comparison of a stitched complex prediction with the complex ground truth.

    pred_complex, truth_complex: (H, W) complex object transmissions in the same frame (same
    canvas); covered: (H, W) bool scan coverage of the prediction.
    Recipe (physics spec section 7):
    (a) register the prediction amplitude to the truth amplitude on the covered region
        (register_subpixel); apply the shift only if its norm > REGISTRATION_MIN_SHIFT_PX:
        Fourier shift of the complex prediction, rounded whole-pixel shift of the mask;
    (b) amplitude scale per ``amplitude_scale_mode`` ("none" | "recorded" with ``recorded_scale``
        | "least_squares"), fitted on the registered covered region;
    (c) global phase offset removal weighted by the truth amplitude, then optionally a linear
        ramp (``phase_ramp``), both estimated on the covered region and applied everywhere;
    (d) amplitude and phase metrics (compare_channel) on the covered region;
    (e) headline metrics over the full canvas.
    amplitude_data_range, phase_data_range: SSIM data range / PSNR peak per channel (None = the
    truth's max - min on the region evaluated; a constant truth phase then gives ssim and psnr
    None with a note).
    The output range check uses the prediction amplitude as produced (before registration and
    scale), on the original covered region, because interpolation and scaling move values off
    the activation's bound.
    Returns a JSON-serialisable dict: {amplitude, phase (compare_channel blocks, each with
    registration {shift_px, applied}), full_canvas {coverage_fraction, amplitude {...}, phase
    {...}}, registration (details), prediction_scale, phase_offset_removed_rad, phase_ramp,
    coverage_fraction, canvas_shape}.
    Long by design (69 lines of code after this docstring):
    one linear recipe (both channels, full canvas, record) kept in order."""
    pred = np.asarray(pred_complex).astype(np.complex128)
    truth = np.asarray(truth_complex).astype(np.complex128)
    cov = np.asarray(covered, dtype=bool)
    if not (pred.shape == truth.shape == cov.shape) or pred.ndim != 2:
        raise ValueError(f"shapes differ or are not 2-D: pred {pred.shape}, truth {truth.shape}, "
                         f"covered {cov.shape}")
    if not np.isfinite(truth).all():
        raise ValueError("the ground truth has non-finite pixels")

    range_check = None
    if activation_bound is not None:
        range_check = output_range_check(np.abs(pred), cov, activation_bound)
        range_check["applies_to"] = "prediction amplitude as produced, before registration and scale"

    # (a) registration
    pred_r, cov_r, reg = _registration(pred, truth, cov, register, max_shift_px)

    # (b) amplitude scale
    amp_p = np.abs(pred_r)
    amp_t = np.abs(truth)
    scale_block = amplitude_scale(amp_p, amp_t, cov_r, mode=amplitude_scale_mode,
                                  recorded_value=recorded_scale)
    if scale_block["applied"]:
        amp_p = amp_p * scale_block["value"]

    # (c) phase offset and optional ramp
    ph_t = np.angle(truth)
    ph_p, offset = remove_phase_offset(np.angle(pred_r), ph_t, cov_r, weights=amp_t)
    ramp = None
    if phase_ramp:
        ph_p, ramp = remove_phase_ramp(ph_p, ph_t, cov_r, weights=amp_t)
    # Non-finite predictions stay non-finite after the angle; keep them visible to the metrics.
    ph_p = np.where(np.isfinite(pred_r), ph_p, np.nan)

    # (d) covered region
    reg_short = {"shift_px": reg["shift_px"], "applied": reg["applied"]}
    ranges = {"amplitude": amplitude_data_range, "phase": phase_data_range}
    amp = compare_channel(amp_p, amp_t, cov_r, data_range=ranges["amplitude"], channel="amplitude",
                          frc_window=frc_window)
    if range_check is not None:
        amp["output_range_check"] = range_check
        amp.pop("output_range_check_note", None)
    amp["registration"] = dict(reg_short)
    phs = compare_channel(ph_p, ph_t, cov_r, data_range=ranges["phase"], channel="phase",
                          frc_window=frc_window)
    phs["registration"] = dict(reg_short)

    # (e) full canvas: same prepared images, no mask (uncovered pixels hold 0 amplitude).
    full: dict = {"coverage_fraction": float(cov.mean()),
                  "coverage_fraction_after_registration": float(cov_r.mean())}
    for name, p_img, t_img in (("amplitude", amp_p, amp_t), ("phase", ph_p, ph_t)):
        c = compare_channel(p_img, t_img, None, data_range=ranges[name], channel=name,
                            include_frc=False)
        full[name] = {k: v for k, v in c.items()
                      if k in HEADLINE_KEYS or k.split("_note")[0] in HEADLINE_KEYS
                      or k in ("count", "ssim_data_range")}

    return {
        "amplitude": amp,
        "phase": phs,
        "full_canvas": full,
        "registration": reg,
        "prediction_scale": scale_block,
        "phase_offset_removed_rad": float(offset),
        "phase_offset_weighting": "truth amplitude on the covered region",
        "phase_ramp": ramp,
        "coverage_fraction": float(cov.mean()),
        "canvas_shape": [int(s) for s in pred.shape],
    }


def evaluate_reconstruction(pred_complex, truth_complex, covered, illuminated=None, *,
                            evaluation=None, recorded_scale=None, activation_bound=None) -> dict:
    """The one evaluation recipe used by ``run``, ``baseline`` and ``sweep``.

    The evaluation region is ``covered & illuminated``: the stitcher's coverage (summed window
    weight >= 0.5) restricted to pixels the probe actually reaches over the scan (summed |P|^2 >=
    1% of its maximum; see physics.stitching.illuminated_in_object_frame). Outside the illuminated
    pixels the data do not constrain the object, so a method's value there says nothing about it.
    ``evaluation`` is an :class:`~ptychotrace.config.EvaluationConfig` (defaults when None).
    Returns compare_reconstruction's dict plus an ``evaluation_region`` block.
    """
    from ..config import EvaluationConfig

    ev = evaluation or EvaluationConfig()
    covered = np.asarray(covered, dtype=bool)
    region = covered if illuminated is None else covered & np.asarray(illuminated, dtype=bool)
    out = compare_reconstruction(
        pred_complex, truth_complex, region, register=ev.register_subpixel,
        phase_ramp=ev.phase_ramp, amplitude_scale_mode=ev.prediction_scale_source.value,
        recorded_scale=recorded_scale, activation_bound=activation_bound)
    out["evaluation_region"] = {
        "rule": "stitch coverage (summed window weight >= 0.5) & illuminated (summed |P|^2 >= 1% "
                "of max)" if illuminated is not None else "given mask",
        "stitch_covered_fraction": float(covered.mean()),
        "illuminated_fraction": None if illuminated is None else float(np.mean(illuminated)),
        "evaluated_fraction": float(region.mean()),
        "covered_outside_illuminated_px": 0 if illuminated is None else int(
            (covered & ~np.asarray(illuminated, dtype=bool)).sum()),
        "settings": {"register_subpixel": ev.register_subpixel, "phase_ramp": ev.phase_ramp,
                     "amplitude_scale_mode": ev.prediction_scale_source.value},
    }
    return out
