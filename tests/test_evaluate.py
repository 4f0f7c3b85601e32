"""Tests for ptychotrace.evaluate: registration, phase/scale alignment, metrics, FRC.

Expected values are derived from closed forms inside the tests, never copied from a run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from ptychotrace.evaluate import (
    amplitude_scale,
    apply_shift,
    compare_channel,
    compare_reconstruction,
    fourier_ring_correlation,
    half_bit_threshold,
    integer_shift_mask,
    output_range_check,
    register_subpixel,
    remove_phase_offset,
    remove_phase_ramp,
    wrap_phase,
)


def smooth_image(shape=(128, 128), sigma=3.0, seed=0, offset=2.0):
    """Smooth, periodic random image (Gaussian-filtered white noise with wrap-around)."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return img / img.std() + offset


def gaussian_transfer(shape, sigma):
    """Transfer function of a Gaussian blur of std ``sigma`` px at FFT frequencies (cycles/px):
    exp(-2 pi^2 sigma^2 |k|^2)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (kx**2 + ky**2))


def circular_filter(x, transfer):
    return np.real(np.fft.ifft2(np.fft.fft2(x) * transfer))


def box_mask(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def assert_plain_json(obj, path="root"):
    """Only plain Python types (np.float64 subclasses float, so check exact types) and no NaN."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str, f"{path}: key {k!r}"
            assert_plain_json(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain_json(v, f"{path}[{i}]")
    else:
        assert obj is None or type(obj) in (str, int, float, bool), f"{path}: {type(obj)}"
        if type(obj) is float:
            assert math.isfinite(obj), f"{path}: {obj}"


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize("use_mask", [False, True])
def test_register_recovers_known_subpixel_shift(use_mask):
    truth = smooth_image()
    shift = np.array([1.3, -2.7])
    pred = apply_shift(truth, shift)
    mask = None
    if use_mask:
        mask = box_mask(truth.shape, 20, 110, 15, 100)
        pred = np.where(mask, pred, 0.0)  # what a stitched canvas holds outside coverage
    found, _ = register_subpixel(pred, truth, mask=mask)
    # The correction to apply to pred is the opposite of the shift that made it.
    np.testing.assert_allclose(found, -shift, atol=0.05)


def test_register_large_shift_on_non_periodic_crop():
    big = smooth_image((220, 220), seed=3)
    shift = np.array([17.4, -9.6])
    truth = big[50:178, 50:178]
    pred_full = apply_shift(big, shift)[50:178, 50:178]
    mask = box_mask(truth.shape, 10, 118, 12, 120)
    found, _ = register_subpixel(np.where(mask, pred_full, 0.0), truth, mask=mask)
    np.testing.assert_allclose(found, -shift, atol=0.05)


def test_apply_shift_real_and_complex_round_trip():
    rng = np.random.default_rng(1)
    # A real image's Nyquist component cos(pi x) shifted by a fraction needs sin(pi x), which is 0
    # on every sample: that part is lost by any real shift, so remove it for an exact round trip.
    spec = np.fft.fft2(smooth_image((64, 48), seed=1))
    spec[32, :] = 0
    spec[:, 24] = 0
    real = np.real(np.fft.ifft2(spec))
    out = apply_shift(real, (0.4, -1.7))
    assert not np.iscomplexobj(out)
    np.testing.assert_allclose(apply_shift(out, (-0.4, 1.7)), real, atol=1e-10)
    z = real * np.exp(1j * rng.uniform(-np.pi, np.pi, real.shape))
    zs = apply_shift(z, (2.25, 0.5))
    assert np.iscomplexobj(zs)
    np.testing.assert_allclose(apply_shift(zs, (-2.25, -0.5)), z, atol=1e-10)
    # A whole-pixel shift is a roll.
    np.testing.assert_allclose(apply_shift(real, (3, -2)), np.roll(real, (3, -2), axis=(0, 1)),
                               atol=1e-10)


def test_integer_shift_mask_rounds_and_does_not_wrap():
    m = box_mask((10, 12), 0, 4, 8, 12)
    out = integer_shift_mask(m, (1.4, 2.6))  # rounds to (1, 3)
    expected = np.zeros_like(m)
    expected[1:5, 11:12] = True  # columns 8..11 + 3 -> only 11 survives, nothing wraps to the left
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- phase


def test_wrap_phase_range_and_identity():
    a = np.linspace(-10, 10, 1001)
    w = wrap_phase(a)
    assert np.all(w > -np.pi - 1e-12) and np.all(w <= np.pi + 1e-12)
    np.testing.assert_allclose(np.exp(1j * w), np.exp(1j * a), atol=1e-12)


@pytest.mark.parametrize("offset", [0.4, 3.0, -3.1])
def test_phase_offset_recovered_across_the_wrap(offset):
    rng = np.random.default_rng(2)
    # Truth phase close to +-pi, so truth + offset wraps for many pixels.
    truth = wrap_phase(np.pi + 0.5 * rng.standard_normal((40, 40)))
    pred = wrap_phase(truth + offset)
    weights = rng.uniform(0.5, 2.0, truth.shape)
    corrected, found = remove_phase_offset(pred, truth, None, weights=weights)
    assert found == pytest.approx(offset, abs=1e-9)
    np.testing.assert_allclose(np.exp(1j * corrected), np.exp(1j * truth), atol=1e-9)
    # Complex inputs give the same answer.
    _, found_c = remove_phase_offset(np.exp(1j * pred), np.exp(1j * truth), None, weights=weights)
    assert found_c == pytest.approx(offset, abs=1e-9)
    # With noise on the difference, an offset near +-pi puts differences on both sides of the
    # wrap: a plain mean of wrapped differences is then off by ~2 pi * (fraction wrapped), the
    # circular mean only by ~0.3 / sqrt(1600) rad.
    noisy = wrap_phase(truth + offset + 0.3 * rng.standard_normal(truth.shape))
    _, found_n = remove_phase_offset(noisy, truth, None, weights=weights)
    assert abs(wrap_phase(found_n - offset)) < 0.04


def test_phase_offset_ignores_masked_out_pixels():
    truth = np.zeros((20, 20))
    pred = np.full((20, 20), 0.7)
    mask = box_mask(truth.shape, 0, 10, 0, 20)
    pred[~mask] = -2.0  # a different offset outside the region must not matter
    _, found = remove_phase_offset(pred, truth, mask)
    assert found == pytest.approx(0.7, abs=1e-12)


def test_phase_ramp_recovered_including_wrapping_ramp():
    rng = np.random.default_rng(4)
    shape = (60, 70)
    truth = wrap_phase(smooth_image(shape, seed=4, offset=0.0))
    yy, xx = np.indices(shape)
    a, b, c = 1.1, 0.35, -0.12  # 0.35 rad/px wraps several times across the field
    pred = wrap_phase(truth + a + b * xx + c * yy)
    corrected, coeffs = remove_phase_ramp(pred, truth, None, weights=rng.uniform(0.5, 1.5, shape))
    assert coeffs["slope_x_rad_per_px"] == pytest.approx(b, abs=1e-9)
    assert coeffs["slope_y_rad_per_px"] == pytest.approx(c, abs=1e-9)
    assert coeffs["offset_rad"] == pytest.approx(a, abs=1e-9)
    np.testing.assert_allclose(wrap_phase(corrected - truth), 0.0, atol=1e-8)


def test_phase_ramp_with_noise_is_close():
    rng = np.random.default_rng(5)
    shape = (64, 64)
    truth = np.zeros(shape)
    yy, xx = np.indices(shape)
    pred = wrap_phase(0.2 + 0.05 * xx + 0.08 * yy + 0.1 * rng.standard_normal(shape))
    _, coeffs = remove_phase_ramp(pred, truth, None)
    # WLS slope standard error ~ 0.1 / sqrt(N * var(x)) ~ 1e-4 rad/px.
    assert coeffs["slope_x_rad_per_px"] == pytest.approx(0.05, abs=1e-3)
    assert coeffs["slope_y_rad_per_px"] == pytest.approx(0.08, abs=1e-3)


# --------------------------------------------------------------------------- amplitude scale


def test_least_squares_scale_recovers_factor_and_ignores_outside():
    truth = smooth_image((50, 50), seed=6)
    k = 0.37
    pred = truth / k
    mask = box_mask(truth.shape, 5, 45, 5, 30)
    pred[~mask] = 1e3  # garbage outside coverage
    pred[10, 10] = np.nan  # a non-finite covered pixel is skipped
    block = amplitude_scale(pred, truth, mask, "least_squares")
    assert block["applied"] is True
    assert block["value"] == pytest.approx(k, rel=1e-12)
    assert block["least_squares"]["finite_count"] == int(mask.sum()) - 1
    ls = block["least_squares"]
    assert ls["numerator"] / ls["denominator"] == pytest.approx(k, rel=1e-12)
    assert "reason" not in block


def test_amplitude_scale_modes():
    truth = np.ones((8, 8))
    pred = 2 * np.ones((8, 8))
    none = amplitude_scale(pred, truth, None, "none")
    assert none["applied"] is False and none["value"] is None and none["reason"]
    assert none["least_squares"]["value"] == pytest.approx(0.5)
    rec = amplitude_scale(pred, truth, None, "recorded", recorded_value=None)
    assert rec["applied"] is False and rec["reason"]
    rec = amplitude_scale(pred, truth, None, "recorded", recorded_value=3.5)
    assert rec["applied"] is True and rec["value"] == 3.5 and rec["source"] == "recorded"
    zero = amplitude_scale(np.zeros((8, 8)), truth, None, "least_squares")
    assert zero["applied"] is False and zero["value"] is None and zero["reason"]
    with pytest.raises(ValueError):
        amplitude_scale(pred, truth, None, "median")
    for block in (none, rec, zero):
        assert_plain_json(block)


# --------------------------------------------------------------------------- channel metrics


def test_psnr_and_errors_match_formula():
    truth = np.arange(20, dtype=np.float64).reshape(4, 5)  # range 19
    delta = np.zeros_like(truth)
    delta[1, 2], delta[3, 4] = 0.5, -1.5
    out = compare_channel(truth + delta, truth, include_frc=False)
    mse = (0.5**2 + 1.5**2) / 20
    assert out["count"] == 20
    assert out["mae"] == pytest.approx(2.0 / 20)
    assert out["rmse"] == pytest.approx(math.sqrt(mse))
    assert out["max_abs"] == pytest.approx(1.5)
    assert out["psnr"]["peak"] == pytest.approx(19.0)
    assert out["psnr"]["value"] == pytest.approx(10 * math.log10(19.0**2 / mse))
    assert out["bias_summary"]["mean"] == pytest.approx(-1.0 / 20)
    assert out["bias_summary"]["median"] == 0.0
    # An explicit data range is the stated peak.
    out2 = compare_channel(truth + delta, truth, data_range=5.0, include_frc=False)
    assert out2["psnr"]["peak"] == 5.0 and out2["ssim_data_range"] == 5.0
    assert out2["psnr"]["value"] == pytest.approx(10 * math.log10(25.0 / mse))


def direct_ssim(x, y, data_range, win=7):
    """Mean SSIM over every win x win window lying inside the image; uniform window, sample
    (ddof=1) variances, K1=0.01, K2=0.03 (Wang et al. 2004 with skimage's defaults)."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            a = x[i:i + win, j:j + win].ravel()
            b = y[i:i + win, j:j + win].ravel()
            ma, mb = a.mean(), b.mean()
            va, vb = a.var(ddof=1), b.var(ddof=1)
            cov = np.sum((a - ma) * (b - mb)) / (a.size - 1)
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_identity_and_direct_formula():
    rng = np.random.default_rng(7)
    truth = smooth_image((24, 20), sigma=1.5, seed=7)
    same = compare_channel(truth.copy(), truth, include_frc=False)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-12)
    pred = 0.8 * truth + 0.3 + 0.2 * rng.standard_normal(truth.shape)
    out = compare_channel(pred, truth, include_frc=False)
    data_range = truth.max() - truth.min()
    assert out["ssim_data_range"] == pytest.approx(data_range)
    assert out["ssim"] == pytest.approx(direct_ssim(truth, pred, data_range), rel=1e-9)
    assert out["ssim"] < 0.99


def test_ssim_constant_shift_only_changes_luminance():
    # pred = truth + c: contrast-structure term is exactly 1, so SSIM equals the mean luminance
    # term over the windows, which for a constant image pair is (2 m (m + c) + C1)/(m^2 + (m+c)^2 + C1).
    truth = np.full((15, 15), 2.0)
    c = 0.5
    out = compare_channel(truth + c, truth, data_range=4.0, include_frc=False)
    c1 = (0.01 * 4.0) ** 2
    m = 2.0
    expected = (2 * m * (m + c) + c1) / (m**2 + (m + c) ** 2 + c1)
    assert out["ssim"] == pytest.approx(expected, rel=1e-12)


def test_phase_channel_wraps_differences():
    rng = np.random.default_rng(8)
    truth = wrap_phase(np.pi - 0.05 + 0.1 * rng.standard_normal((30, 30)))
    pred = truth + 2 * np.pi * rng.integers(-2, 3, truth.shape)  # same phase, other branches
    out = compare_channel(pred, truth, channel="phase", include_frc=False)
    assert out["mae"] == pytest.approx(0.0, abs=1e-12)
    assert out["max_abs"] == pytest.approx(0.0, abs=1e-12)
    assert out["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert out["output_range_check"] is None and out["output_range_check_note"]


def test_masked_out_pixels_do_not_influence_channel_metrics():
    rng = np.random.default_rng(9)
    truth = smooth_image((64, 64), seed=9)
    pred = truth + 0.1 * rng.standard_normal(truth.shape)
    mask = np.zeros(truth.shape, bool)
    mask[8:56, 10:50] = True
    mask[20:30, 30:40] = False  # a hole: the box is not the region
    base = compare_channel(pred, truth, mask)
    pred2, truth2 = pred.copy(), truth.copy()
    pred2[~mask] = rng.uniform(-100, 100, (~mask).sum())
    truth2[~mask] = np.nan
    other = compare_channel(pred2, truth2, mask)
    assert json.dumps(base, sort_keys=True) == json.dumps(other, sort_keys=True)


def test_nonfinite_in_region_is_counted_not_propagated():
    truth = smooth_image((32, 32), seed=10)
    pred = truth.copy()
    pred[5, 5] = np.nan
    pred[6, 7] = np.inf
    out = compare_channel(pred, truth)
    assert out["count"] == 32 * 32 - 2 and out["nonfinite_count"] == 2
    assert out["mae"] == 0.0
    assert_plain_json(out)
    # Constant truth: pearson / SSIM / PSNR undefined -> None with a note.
    flat = compare_channel(np.ones((16, 16)), np.ones((16, 16)))
    for key in ("pearson_r", "ssim"):
        assert flat[key] is None and flat[f"{key}_note"]
    assert flat["psnr"]["value"] is None and flat["psnr"]["value_note"]
    assert_plain_json(flat)


def test_output_range_check_counts_saturated_pixels():
    amp = np.full((10, 10), 0.5)
    amp[:3, :] = 2.0
    amp[3, 0] = 2.0 * (1 + 1e-8)  # within the relative tolerance
    amp[3, 1] = 2.0 * (1 - 1e-4)  # not
    out = output_range_check(amp, np.ones_like(amp, bool), 2.0)
    assert out["fraction_at_bound"] == pytest.approx(31 / 100)
    ch = compare_channel(amp, np.ones_like(amp), activation_bound=2.0, include_frc=False)
    assert ch["output_range_check"]["fraction_at_bound"] == pytest.approx(0.31)
    ch = compare_channel(amp, np.ones_like(amp), include_frc=False)
    assert ch["output_range_check"] is None and ch["output_range_check_note"]


# --------------------------------------------------------------------------- FRC


def test_half_bit_threshold_limits():
    # n = 1 gives exactly 1 (numerator and denominator both 2.1173); large n -> 0.2071/1.2071.
    assert half_bit_threshold(1) == pytest.approx(1.0)
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, rel=1e-5)
    n = 100.0
    assert half_bit_threshold(n) == pytest.approx((0.2071 + 0.19102) / (1.2071 + 0.09102))


def frc_values(result):
    return np.array([np.nan if c["frc"] is None else c["frc"] for c in result["curve"]])


def test_frc_identical_images_is_one():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 64))
    r = fourier_ring_correlation(x, x)
    np.testing.assert_allclose(frc_values(r), 1.0, atol=1e-10)
    assert r["half_bit_resolution"] is None and r["half_bit_resolution_note"]
    assert r["frc50"] is None
    # Complex images too.
    z = x + 1j * rng.standard_normal((64, 64))
    np.testing.assert_allclose(frc_values(fourier_ring_correlation(z, z)), 1.0, atol=1e-10)
    assert_plain_json(r)


def test_frc_independent_noise_is_near_zero():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((2, 128, 128))
    r = fourier_ring_correlation(a, b)
    freq = np.array([c["spatial_frequency"] for c in r["curve"]])
    mid = (freq > 0.1) & (freq < 0.4)
    assert abs(np.mean(frc_values(r)[mid])) < 0.1
    # Pure noise falls below the 1/2-bit threshold almost at once.
    assert r["half_bit_crossing_frequency"] < 0.1


def test_frc_of_linear_filter_without_noise_is_one():
    # F2 = H F1 with H real and positive, so Re(sum F1 conj(H F1)) = sum H |F1|^2 and the FRC of a
    # ring is (sum H|F1|^2) / sqrt(sum |F1|^2 * sum H^2 |F1|^2), i.e. 1 up to the variation of H
    # within one ring (rings are 1/L wide). It is *not* a measure of the blur.
    rng = np.random.default_rng(13)
    x = rng.standard_normal((128, 128))
    y = circular_filter(x, gaussian_transfer(x.shape, 1.5))
    r = fourier_ring_correlation(x, y, window=None)
    freq = np.array([c["spatial_frequency"] for c in r["curve"]])
    v = frc_values(r)
    # Up to 0.3 cycles/px the transfer is > exp(-2 pi^2 1.5^2 0.09) ~ 0.018: still far above
    # round-off, so FRC ~ 1.
    assert np.all(v[freq <= 0.3] > 0.98)


def test_frc_crossing_matches_analytic_snr():
    # a = s + n1, b = s + n2 with s = Gaussian-blurred white noise (unit variance before the blur,
    # std sb px) and n1, n2 independent white noise of variance sn^2. Per ring, in expectation,
    # FRC(k) = S(k) / (S(k) + sn^2) with S(k) = |H(k)|^2 = exp(-4 pi^2 sb^2 k^2). It equals 0.5
    # where S = sn^2: k50 = sqrt(ln(1 / sn^2) / (4 pi^2 sb^2)). The images are periodic (circular
    # filter), so no window is needed.
    rng = np.random.default_rng(14)
    n, sb, sn = 256, 2.0, 0.1
    s = circular_filter(rng.standard_normal((n, n)), gaussian_transfer((n, n), sb))
    a = s + sn * rng.standard_normal((n, n))
    b = s + sn * rng.standard_normal((n, n))
    r = fourier_ring_correlation(a, b, window=None)
    k50 = math.sqrt(math.log(1.0 / sn**2) / (4 * math.pi**2 * sb**2))
    assert r["frc50_crossing_frequency"] == pytest.approx(k50, rel=0.04)
    assert r["frc50"] == pytest.approx(1.0 / k50, rel=0.04)
    # 1/2-bit: solve S/(S + sn^2) = T(n_r) on the reported rings, interpolating like the code.
    freq = np.array([c["spatial_frequency"] for c in r["curve"]])
    thr = np.array([c["half_bit_threshold"] for c in r["curve"]])
    expected = np.exp(-4 * np.pi**2 * sb**2 * freq**2)
    expected = expected / (expected + sn**2)
    d = expected - thr
    k = int(np.flatnonzero(d < 0)[0])
    k_half = freq[k - 1] + (freq[k] - freq[k - 1]) * d[k - 1] / (d[k - 1] - d[k])
    assert r["half_bit_crossing_frequency"] == pytest.approx(k_half, rel=0.04)
    assert r["half_bit_resolution"] == pytest.approx(1.0 / r["half_bit_crossing_frequency"])


def test_frc_mask_crops_to_bounding_box_and_ignores_outside():
    rng = np.random.default_rng(15)
    a, b = rng.standard_normal((2, 80, 90))
    mask = box_mask(a.shape, 10, 60, 20, 84)  # 50 x 64 box -> rings up to 25
    r = fourier_ring_correlation(a, b, mask=mask)
    assert r["shape"] == [50, 64] and r["box"] == [10, 60, 20, 84]
    assert len(r["curve"]) == 25
    assert r["curve"][-1]["spatial_frequency"] == pytest.approx(0.5)
    a2 = a.copy()
    a2[~mask] = 1e6
    assert frc_values(fourier_ring_correlation(a2, b, mask=mask)).tolist() == frc_values(r).tolist()


# --------------------------------------------------------------------------- full recipe


def lines_like_truth(shape=(128, 128), seed=16):
    """Complex truth with amplitude and phase contrast."""
    amp = smooth_image(shape, sigma=2.5, seed=seed, offset=3.0)
    phase = 0.8 * np.tanh(smooth_image(shape, sigma=4.0, seed=seed + 1, offset=0.0))
    return amp * np.exp(1j * phase)


def test_compare_reconstruction_identity():
    truth = lines_like_truth()
    covered = box_mask(truth.shape, 16, 112, 20, 104)
    out = compare_reconstruction(truth.copy(), truth, covered, amplitude_scale_mode="least_squares",
                                 activation_bound=100.0)
    for ch in ("amplitude", "phase"):
        assert out[ch]["pearson_r"] == pytest.approx(1.0, abs=1e-12)
        assert out[ch]["mae"] == pytest.approx(0.0, abs=1e-12)
        assert out[ch]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert out[ch]["registration"]["applied"] is False
        assert out[ch]["coverage_fraction"] == pytest.approx(covered.mean())
        assert out[ch]["count"] == int(covered.sum())
    assert out["prediction_scale"]["value"] == pytest.approx(1.0, rel=1e-12)
    assert out["phase_offset_removed_rad"] == pytest.approx(0.0, abs=1e-12)
    assert out["phase_ramp"] is None
    assert out["amplitude"]["output_range_check"]["fraction_at_bound"] == 0.0
    assert out["full_canvas"]["coverage_fraction"] == pytest.approx(covered.mean())
    assert set(out["full_canvas"]["amplitude"]) >= {"mae", "rmse", "pearson_r", "ssim", "psnr"}
    assert_plain_json(out)
    json.dumps(out, allow_nan=False)


def test_compare_reconstruction_recovers_shift_scale_and_offset():
    truth = lines_like_truth()
    covered = box_mask(truth.shape, 16, 112, 20, 104)
    shift = np.array([2.4, -1.6])
    k, offset = 0.7, 2.9
    pred = apply_shift(truth, shift) * k * np.exp(1j * offset)
    covered_pred = integer_shift_mask(covered, shift)
    pred = np.where(covered_pred, pred, 0)  # the stitched canvas is 0 outside coverage
    out = compare_reconstruction(pred, truth, covered_pred, amplitude_scale_mode="least_squares")
    np.testing.assert_allclose(out["registration"]["shift_px"], -shift, atol=0.05)
    assert out["amplitude"]["registration"]["applied"] is True
    assert out["registration"]["mask_shift_px"] == [-2, 2]
    assert out["prediction_scale"]["value"] == pytest.approx(1 / k, rel=2e-3)
    assert out["phase_offset_removed_rad"] == pytest.approx(offset, abs=1e-3)
    assert out["amplitude"]["pearson_r"] > 0.99 and out["phase"]["pearson_r"] > 0.99
    # The error left is from the Fourier shift ringing at the coverage edge: small vs the range.
    assert out["amplitude"]["rmse"] < 0.02 * out["amplitude"]["ssim_data_range"]
    assert_plain_json(out)
    # Without registration the same comparison is clearly worse.
    raw = compare_reconstruction(pred, truth, covered_pred, register=False,
                                 amplitude_scale_mode="least_squares")
    assert raw["amplitude"]["rmse"] > 5 * out["amplitude"]["rmse"]


def test_compare_reconstruction_phase_ramp_option():
    truth = lines_like_truth(seed=20)
    covered = box_mask(truth.shape, 10, 118, 10, 118)
    yy, xx = np.indices(truth.shape)
    pred = truth * np.exp(1j * (0.5 + 0.03 * xx - 0.02 * yy))
    out = compare_reconstruction(pred, truth, covered, register=False, phase_ramp=True)
    assert out["phase_ramp"]["slope_x_rad_per_px"] == pytest.approx(0.03, abs=1e-9)
    assert out["phase_ramp"]["slope_y_rad_per_px"] == pytest.approx(-0.02, abs=1e-9)
    assert out["phase"]["mae"] == pytest.approx(0.0, abs=1e-9)


def test_compare_reconstruction_ignores_prediction_outside_coverage():
    rng = np.random.default_rng(17)
    truth = lines_like_truth(seed=17)
    covered = box_mask(truth.shape, 12, 100, 30, 120)
    pred = apply_shift(truth, (0.6, 0.3)) * 1.2
    pred = np.where(covered, pred, 0)
    base = compare_reconstruction(pred, truth, covered, amplitude_scale_mode="least_squares")
    junk = pred.copy()
    junk[~covered] = rng.standard_normal((~covered).sum()) * 50 + 1j * np.nan
    other = compare_reconstruction(junk, truth, covered, amplitude_scale_mode="least_squares")
    for key in ("amplitude", "phase", "prediction_scale", "registration",
                "phase_offset_removed_rad"):
        assert json.dumps(base[key], sort_keys=True) == json.dumps(other[key], sort_keys=True), key


def test_compare_reconstruction_nonfinite_and_flat_phase_are_json_safe():
    truth = np.abs(lines_like_truth(seed=18)).astype(np.complex128)  # zero phase: flat truth
    covered = box_mask(truth.shape, 10, 100, 10, 100)
    pred = truth * 1.1
    pred[50, 50] = np.nan
    out = compare_reconstruction(pred, truth, covered, amplitude_scale_mode="recorded",
                                 recorded_scale=None)
    assert out["prediction_scale"]["applied"] is False and out["prediction_scale"]["reason"]
    assert out["amplitude"]["nonfinite_count"] == 1
    assert out["phase"]["ssim"] is None and out["phase"]["ssim_note"]
    assert out["phase"]["psnr"]["value"] is None
    assert_plain_json(out)
    json.dumps(out, allow_nan=False)


def test_implausibly_large_registration_shift_is_reported_not_applied():
    from ptychotrace.evaluate.metrics import compare_reconstruction

    rng = np.random.default_rng(5)
    truth = (1.0 + ndimage.gaussian_filter(rng.standard_normal((96, 96)), 3)).astype(np.complex64)
    pred = np.roll(truth, (20, -25), axis=(0, 1))
    covered = np.ones((96, 96), dtype=bool)
    out = compare_reconstruction(pred, truth, covered, max_shift_px=8.0)
    reg = out["registration"]
    assert reg["applied"] is False and "exceeds" in reg["note"]
    assert np.hypot(*reg["shift_px"]) > 8.0
    applied = compare_reconstruction(pred, truth, covered, max_shift_px=None)
    assert applied["registration"]["applied"] is True
