"""Data consistency: does a reconstruction explain the measured counts?

For each pattern j the expected counts are ``lam_jk = |F(P * O_j)|^2`` (the one forward model,
:func:`ptychotrace.physics.forward.expected_counts`, on patches cut by the one extractor from the
object zero-padded as the simulator pads it). The Poisson unit deviance of pixel k is

    d_jk = 2 [ I_jk log(I_jk / lam_jk) - (I_jk - lam_jk) ]      (I log I = 0 at I = 0)

and D_j = sum_k d_jk over the valid (measured) pixels.

Normalisation (stated, tested): **the normalised deviance of pattern j is D_j / E_j**, where
``E_j = sum_k E[d(lam_jk)]`` is the expected deviance if the counts were Poisson draws of the
model's own lam. ``E[d(lam)]`` is computed exactly (a sum over the Poisson pmf, tabulated on a log
grid of lam and interpolated; for lam > 1e4 the expansion ``1 + 1/(6 lam)``). It is ~1 per pixel
for lam >> 1 but tends to ``-2 lam log lam`` -> 0 for lam << 1, so dividing by the pixel count
would call a perfect low-dose reconstruction "too good". A reconstruction consistent with the data
scores ~1 at any dose (measured on the true object at 1e3..1e9 photons: tests/test_faults.py,
docs/telemetry.md). The spread of D_j under the model is ``sqrt(V_j)`` with ``V_j`` the exact summed
variance; a pattern is **beyond the bound** when ``z_j = (D_j - E_j) / sqrt(V_j) > Z_BOUND`` (5).

A reconstruction with a model error explains the data to within that error, not to shot noise: at
high dose the deviance of any imperfect object grows with the photons. The dose-free measure of
that error is the **relative amplitude misfit** ``sqrt(max(0, D_j - E_j) / (4 sum_k I_jk))``: for
large counts ``d ~ 4 (sqrt(I) - sqrt(lam))^2``, so it is the rms error of the far-field amplitude
relative to the measured one (0.01 = 1 %).

``record_consistency`` writes ``consistency/consistency.json`` (the typed
:class:`ConsistencyRecord`), a per-pattern table ``consistency/<which>.npy`` (columns
``PATTERN_COLUMNS``) and ``consistency/deviance_map.png`` into a run directory. Its size is bounded
by the number of patterns (a float64 row per pattern).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import gammaln

from ..physics.forward import expected_counts, extract_patches, pad_canvas, required_pad
from ..records.consistency import (  # noqa: F401  (the typed records, re-exported here)
    CONSISTENCY_SCHEMA_VERSION,
    NORMALISATION,
    Z_BOUND,
    ConsistencyRecord,
    DevianceSummary,
    ModelOutputCheck,
    PhotonCheck,
    PositionCheck,
)

CONSISTENCY_DIR = "consistency"
CONSISTENCY_JSON = "consistency.json"
#: Expected counts are floored here (as in the training loss): a pixel that the model says is dark
#: but that holds photons scores a large, finite deviance.
LAM_FLOOR = 1e-8
#: Columns of the per-pattern .npy tables.
PATTERN_COLUMNS = ("pattern_index", "x_px", "y_px", "normalised_deviance", "z", "relative_misfit",
                   "photons_measured", "photons_predicted")
#: The exact table covers lam in [1e-12, 1e4]; above it the asymptotic expansion is exact to 1e-9.
_LAM_MIN_EXP, _LAM_MAX_EXP, _PER_DECADE = -12, 4, 200
_BATCH = 256


# --------------------------------------------------------------------------------------------
# Unit deviance and its Poisson expectation
# --------------------------------------------------------------------------------------------
def unit_deviance(counts: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Elementwise Poisson unit deviance 2[I log(I/lam) - (I - lam)] in float64 (>= 0).

    counts, lam: broadcastable arrays (photons); lam floored at LAM_FLOOR; I log I = 0 at I = 0."""
    i = np.asarray(counts, dtype=np.float64)
    m = np.maximum(np.asarray(lam, dtype=np.float64), LAM_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        ilog = np.where(i > 0, i * np.log(np.where(i > 0, i, 1.0) / m), 0.0)
    return np.maximum(2.0 * (ilog - (i - m)), 0.0)


def _exact_moments(lam: float) -> tuple[float, float]:
    """E[d] and Var[d] for I ~ Poisson(lam), summed over the pmf where it is not negligible."""
    sd = math.sqrt(lam)
    lo = max(0, int(lam - 14 * sd - 10))
    hi = int(lam + 14 * sd + 40)
    k = np.arange(lo, hi + 1, dtype=np.float64)
    logp = k * math.log(lam) - lam - gammaln(k + 1)
    p = np.exp(logp)
    d = unit_deviance(k, lam)
    mean = float(np.sum(p * d))
    var = float(np.sum(p * (d - mean) ** 2))
    return mean, var


@lru_cache(maxsize=1)
def _moment_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    loglam = np.linspace(_LAM_MIN_EXP * math.log(10), _LAM_MAX_EXP * math.log(10),
                         (_LAM_MAX_EXP - _LAM_MIN_EXP) * _PER_DECADE + 1)
    moments = np.array([_exact_moments(math.exp(v)) for v in loglam])
    return loglam, moments[:, 0], moments[:, 1]


def expected_unit_deviance(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[d], Var[d]) of the unit deviance per pixel when the counts are Poisson(lam).

    Exact values tabulated on a log grid (200 points per decade, linear interpolation in log lam:
    relative error < 1e-4); lam > 1e4: ``E = 1 + 1/(6 lam)``, ``Var = 2 + (Var(1e4) - 2) 1e4/lam``."""
    loglam, mean_t, var_t = _moment_table()
    m = np.maximum(np.asarray(lam, dtype=np.float64), LAM_FLOOR)
    x = np.log(m)
    mean = np.interp(x, loglam, mean_t)
    var = np.interp(x, loglam, var_t)
    big = m > math.exp(loglam[-1])
    if np.any(big):
        mb = m[big]
        mean[big] = 1.0 + 1.0 / (6.0 * mb)
        var[big] = 2.0 + (var_t[-1] - 2.0) * math.exp(loglam[-1]) / mb
    return mean, var


# --------------------------------------------------------------------------------------------
# Per-pattern deviance of an object (or of patches) against counts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternDeviance:
    """Per-pattern sums (P,) float64: deviance D, expected E, variance V, measured and predicted
    photons on the valid pixels, and the number of valid pixels."""

    deviance: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    photons_measured: np.ndarray
    photons_predicted: np.ndarray
    n_pixels: int

    @property
    def normalised(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.deviance / self.expected

    @property
    def z(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.deviance - self.expected) / np.sqrt(self.variance)

    @property
    def relative_misfit(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(np.maximum(self.deviance - self.expected, 0.0)
                           / (4.0 * np.maximum(self.photons_measured, 1e-300)))


def _valid_mask(valid: np.ndarray | None, n: int) -> np.ndarray | None:
    if valid is None:
        return None
    v = np.asarray(valid, dtype=bool)
    if v.shape != (n, n):
        raise ValueError(f"valid mask must be ({n}, {n}) like the detector, got {v.shape}")
    if not v.any():
        raise ValueError("valid mask excludes every detector pixel")
    return v


def _deviance_of_lam(lam: np.ndarray, counts: np.ndarray, valid: np.ndarray | None):
    """Per-pattern sums for lam, counts (B, N, N); non-finite lam gives inf deviance."""
    d = unit_deviance(counts, lam)
    e, v = expected_unit_deviance(lam)
    bad = ~np.isfinite(lam)
    d[bad], e[bad], v[bad] = np.inf, 1.0, 1.0
    if valid is not None:
        d, e, v = d[:, valid], e[:, valid], v[:, valid]
        i, m = counts[:, valid].astype(np.float64), lam[:, valid]
    else:
        i, m = counts.astype(np.float64), lam
    ax = tuple(range(1, d.ndim))
    return d.sum(axis=ax), e.sum(axis=ax), v.sum(axis=ax), i.sum(axis=ax), m.sum(axis=ax)


def patches_deviance(patches: np.ndarray, probe: np.ndarray, counts: np.ndarray,
                     valid: np.ndarray | None = None, lam_scale: float = 1.0) -> PatternDeviance:
    """Deviance of object patches (P, N, N) complex (each already cut at its pattern's position)
    against counts (P, N, N) photons, with the physical probe (N, N) in sqrt(photons).
    ``valid`` (N, N) bool: True = measured detector pixel (masked pixels are left out);
    ``lam_scale`` multiplies the expected counts (used to test a pure-scale hypothesis)."""
    n = counts.shape[-1]
    valid = _valid_mask(valid, n)
    if patches.shape != counts.shape:
        raise ValueError(f"patches {patches.shape} and counts {counts.shape} differ in shape")
    p = torch.as_tensor(np.asarray(probe, dtype=np.complex64))
    parts = []
    with torch.no_grad():
        for s in range(0, len(counts), _BATCH):
            sl = slice(s, s + _BATCH)
            lam = expected_counts(p, torch.as_tensor(np.asarray(patches[sl], np.complex64)))
            parts.append(_deviance_of_lam(lam.numpy().astype(np.float64) * lam_scale,
                                          np.asarray(counts[sl]), valid))
    cat = [np.concatenate([q[i] for q in parts]) if parts else np.zeros(0) for i in range(5)]
    return PatternDeviance(*cat, n_pixels=int(n * n if valid is None else valid.sum()))


def object_patches(obj: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                   n: int) -> np.ndarray:
    """Patches (P, N, N) complex64 of an (H, W) object frame, zero outside it (the simulator's
    padding), at patch centres (x, y) in object pixels; the one bilinear extractor."""
    pad = required_pad(n)
    canvas = pad_canvas(torch.as_tensor(np.asarray(obj, dtype=np.complex64)), pad)
    xs = torch.as_tensor(np.asarray(xcoords, dtype=np.float64) + pad)
    ys = torch.as_tensor(np.asarray(ycoords, dtype=np.float64) + pad)
    with torch.no_grad():
        return extract_patches(canvas, xs, ys, n).numpy()


def object_deviance(obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                    counts: np.ndarray, valid: np.ndarray | None = None,
                    lam_scale: float = 1.0) -> PatternDeviance:
    """Deviance of an object frame (H, W) complex against counts (P, N, N) at positions (P,)."""
    n = counts.shape[-1]
    out = []
    for s in range(0, len(counts), _BATCH):
        sl = slice(s, s + _BATCH)
        out.append(patches_deviance(object_patches(obj, xcoords[sl], ycoords[sl], n), probe,
                                    counts[sl], valid, lam_scale))
    if not out:
        raise ValueError("no patterns to score")
    return PatternDeviance(*(np.concatenate([getattr(o, f) for o in out]) for f in (
        "deviance", "expected", "variance", "photons_measured", "photons_predicted")),
        n_pixels=out[0].n_pixels)


def _q(a: np.ndarray, q: float) -> float | None:
    a = a[np.isfinite(a)]
    return float(np.quantile(a, q)) if a.size else None


def flat_null(probe: np.ndarray, counts: np.ndarray,
              valid: np.ndarray | None = None) -> PatternDeviance:
    """Deviance of the null model: a flat object whose constant transmission is fitted to each
    pattern's photons (lam_j = c_j |F(P)|^2, c_j = measured / predicted photons). A reconstruction
    explains the data's *structure* only as far as it beats this."""
    n = counts.shape[-1]
    valid = _valid_mask(valid, n)
    p = torch.as_tensor(np.asarray(probe, dtype=np.complex64))
    with torch.no_grad():
        base = expected_counts(p, torch.ones((n, n), dtype=torch.complex64)).numpy()
    base = base.astype(np.float64)
    base_sum = float(base[valid].sum() if valid is not None else base.sum())
    parts = []
    for s in range(0, len(counts), _BATCH):
        c = np.asarray(counts[s:s + _BATCH])
        meas = (c[:, valid] if valid is not None else c.reshape(len(c), -1)).sum(
            axis=1, dtype=np.float64)
        lam = (meas / max(base_sum, 1e-300))[:, None, None] * base[None]
        parts.append(_deviance_of_lam(lam, c, valid))
    cat = [np.concatenate([q[i] for q in parts]) for i in range(5)]
    return PatternDeviance(*cat, n_pixels=int(n * n if valid is None else valid.sum()))


def explained_vs_flat(pd: PatternDeviance, null: PatternDeviance) -> float | None:
    """1 - sum excess(pd) / sum excess(null), excess = max(D - E, 0): 1 = every structured photon
    explained, 0 = no better than a flat object, < 0 = worse. None when the null itself is within
    shot noise (its aggregate z <= Z_BOUND: the data cannot tell the object from a flat one)."""
    ex_null = np.maximum(null.deviance - null.expected, 0.0).sum()
    z_null = (null.deviance.sum() - null.expected.sum()) / np.sqrt(null.variance.sum())
    if not np.isfinite(pd.deviance).all() or z_null <= Z_BOUND or ex_null <= 0:
        return None
    return float(1.0 - np.maximum(pd.deviance - pd.expected, 0.0).sum() / ex_null)


def summarise(pd: PatternDeviance, table: str | None = None,
              null: PatternDeviance | None = None) -> DevianceSummary:
    """The summary record of one PatternDeviance (with the flat null of the same patterns)."""
    finite = np.isfinite(pd.deviance)
    z = pd.z
    n = len(pd.deviance)
    beyond = np.where(finite, z > Z_BOUND, True)
    agg = bool(n and finite.all())
    return DevianceSummary(
        n_patterns=n, n_valid_pixels=pd.n_pixels,
        normalised_aggregate=float(pd.deviance.sum() / pd.expected.sum()) if agg else None,
        z_aggregate=float((pd.deviance.sum() - pd.expected.sum()) / np.sqrt(pd.variance.sum()))
        if agg else None,
        normalised_median=_q(np.where(finite, pd.normalised, np.inf), 0.5)
        if finite.mean() >= 0.5 else None,
        normalised_p90=_q(pd.normalised, 0.9),
        deviance_per_pixel_median=_q(pd.deviance / pd.n_pixels, 0.5),
        expected_per_pixel_median=_q(pd.expected / pd.n_pixels, 0.5),
        fraction_beyond_bound=float(beyond.mean()) if n else None,
        relative_misfit_median=_q(np.where(finite, pd.relative_misfit, np.inf), 0.5)
        if finite.mean() >= 0.5 else None,
        photons_measured_mean=float(np.mean(pd.photons_measured)) if n else None,
        photons_predicted_mean=float(np.mean(pd.photons_predicted[finite]))
        if finite.any() else None,
        non_finite_patterns=int((~finite).sum()), table=table,
        explained_vs_flat=None if null is None else explained_vs_flat(pd, null))


def pattern_table(pd: PatternDeviance, index: np.ndarray, x: np.ndarray,
                  y: np.ndarray) -> np.ndarray:
    """(P, len(PATTERN_COLUMNS)) float64 table for the .npy artifact."""
    return np.stack([np.asarray(index, np.float64), np.asarray(x, np.float64),
                     np.asarray(y, np.float64), pd.normalised, pd.z, pd.relative_misfit,
                     pd.photons_measured, pd.photons_predicted], axis=1)


# --------------------------------------------------------------------------------------------
# Checks on the inputs: positions and photons, with the ground truth
# --------------------------------------------------------------------------------------------
#: Position hypotheses are tested on at most this many patterns (evenly spread), shifts in px.
POSITION_PATTERNS, POSITION_MAX_SHIFT = 64, 4


def _subset(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def _median_norm(obj, probe, x, y, counts, valid, lam_scale=1.0) -> float | None:
    try:
        return _q(object_deviance(obj, probe, x, y, counts, valid, lam_scale).normalised, 0.5)
    except ValueError:            # a hypothesis that puts patches outside the canvas
        return None


def position_check(truth: np.ndarray, probe: np.ndarray, xcoords: np.ndarray,
                   ycoords: np.ndarray, counts: np.ndarray, valid: np.ndarray | None = None,
                   max_shift: int = POSITION_MAX_SHIFT,
                   max_patterns: int = POSITION_PATTERNS) -> PositionCheck:
    """Does the truth explain the counts better with other positions? Tests x/y swapped, one
    common integer shift and a per-pattern integer shift (|shift| <= max_shift px per axis)."""
    sel = _subset(len(counts), max_patterns)
    x, y, c = np.asarray(xcoords)[sel], np.asarray(ycoords)[sel], counts[sel]
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1)
              for dx in range(-max_shift, max_shift + 1)]
    h, w = truth.shape
    norm = np.full((len(shifts), len(sel)), np.inf)
    sy, sx = (np.array(v, dtype=np.float64)[:, None] for v in zip(*shifts, strict=True))
    ax, ay = x[None, :] + sx, y[None, :] + sy            # (shifts, patterns), one batched pass
    ok = (ax >= 0) & (ax <= w - 1) & (ay >= 0) & (ay <= h - 1)
    rows = np.broadcast_to(np.arange(len(sel)), ok.shape)[ok]
    norm[ok] = object_deviance(truth, probe, ax[ok], ay[ok], c[rows], valid).normalised
    zero = shifts.index((0, 0))
    med = np.array([np.median(r) for r in norm])
    best_common = int(np.argmin(med))
    best_each = np.argmin(norm, axis=0)
    each = np.array([shifts[b] for b in best_each], dtype=np.float64)
    best_norm = norm.min(axis=0)
    # half-pixel refinement around each pattern's best integer shift (continuous errors)
    halves = [(hy, hx) for hy in (-0.5, 0.0, 0.5) for hx in (-0.5, 0.0, 0.5) if hy or hx]
    hy, hx = (np.array(v)[:, None] for v in zip(*halves, strict=True))
    tx, ty = x[None] + each[None, :, 1] + hx, y[None] + each[None, :, 0] + hy
    ok = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    v = np.full(ok.shape, np.inf)
    rows = np.broadcast_to(np.arange(len(sel)), ok.shape)[ok]
    v[ok] = object_deviance(truth, probe, tx[ok], ty[ok], c[rows], valid).normalised
    k = np.argmin(v, axis=0)
    better = v[k, np.arange(len(sel))] < best_norm
    best_norm = np.where(better, v[k, np.arange(len(sel))], best_norm)
    each[better] += np.stack([hy[k, 0], hx[k, 0]], axis=1)[better]
    centre = np.median(each, axis=0)
    return PositionCheck(
        n_patterns=len(sel), max_shift_px=max_shift,
        normalised_median_as_recorded=float(med[zero]),
        normalised_median_swapped_xy=_median_norm(truth, probe, y, x, c, valid),
        normalised_median_best_common_shift=float(med[best_common]),
        common_shift_px=[float(v) for v in shifts[best_common]],
        normalised_median_best_per_pattern_shift=float(np.median(best_norm)),
        per_pattern_shift_spread_px=float(np.median(np.hypot(*(each - centre).T))),
        fraction_shifted=float(np.mean(np.any(each != 0, axis=1))))


def _split_mean(a: np.ndarray, split: np.ndarray | None, code: int) -> float | None:
    if split is None:
        return float(a.mean()) if code == 0 and a.size else None
    sel = a[split == code]
    return float(sel.mean()) if sel.size else None


def photon_check(counts: np.ndarray, probe: np.ndarray, split: np.ndarray | None,
                 nominal: float | None, truth_dev: PatternDeviance | None,
                 valid: np.ndarray | None = None) -> PhotonCheck:
    """Measured photons against the nominal dose, the probe energy and (with a truth) the
    photons the truth predicts on each split (split codes 0 train, 1 test)."""
    flat = counts.reshape(len(counts), -1)
    sums = (flat[:, valid.ravel()] if valid is not None else flat).sum(axis=1, dtype=np.float64)
    all_sums = flat.sum(axis=1, dtype=np.float64)
    energy = float(np.sum(np.abs(np.asarray(probe, np.complex128)) ** 2))
    m_tr, m_te = _split_mean(sums, split, 0), _split_mean(sums, split, 1)
    p_tr = p_te = None
    if truth_dev is not None:
        p_tr = _split_mean(truth_dev.photons_predicted, split, 0)
        p_te = _split_mean(truth_dev.photons_predicted, split, 1)
    r_meas = m_te / m_tr if m_tr and m_te else None
    r_pred = p_te / p_tr if p_tr and p_te else None
    return PhotonCheck(
        nominal=nominal, measured_train=m_tr, measured_test=m_te, predicted_train=p_tr,
        predicted_test=p_te,
        measured_over_nominal=float(all_sums.mean()) / nominal if nominal else None,
        measured_over_predicted=float(sums.sum() / truth_dev.photons_predicted.sum())
        if truth_dev is not None and truth_dev.photons_predicted.sum() > 0 else None,
        test_over_train_measured=r_meas, test_over_train_predicted=r_pred,
        parity_deviation_from_predicted_pct=100.0 * (r_meas / r_pred - 1.0)
        if r_meas and r_pred else None,
        probe_energy_photons=energy,
        measured_over_probe_energy=float(all_sums.mean()) / energy if energy > 0 else None)


def model_output_check(patches: np.ndarray, probe: np.ndarray, truth_patches: np.ndarray | None,
                       bound: float | None) -> ModelOutputCheck:
    """Statistics of the network's patches (P, N, N) complex on the probe's support (|P|^2 >= 1 %
    of its maximum): mean amplitude, contrast std/mean, fraction at the activation bound."""
    p2 = np.abs(np.asarray(probe)) ** 2
    support = p2 >= 0.01 * p2.max()
    amp = np.abs(patches[:, support]).astype(np.float64)
    finite = np.isfinite(amp)
    a = amp[finite]
    contrast = float(a.std() / a.mean()) if a.size and a.mean() > 0 else None
    t_contrast = None
    if truth_patches is not None:
        t = np.abs(truth_patches[:, support]).astype(np.float64)
        t_contrast = float(t.std() / t.mean()) if t.mean() > 0 else None
    at_bound = None
    if bound is not None and a.size:
        at_bound = float(np.mean(np.abs(a - bound) <= 1e-3 * max(abs(bound), 1e-30)))
    at_max = (float(np.mean(np.abs(a - a.max()) <= 1e-3 * max(float(a.max()), 1e-30)))
              if a.size else None)
    return ModelOutputCheck(amplitude_mean=float(a.mean()) if a.size else None,
                            fraction_at_max=at_max,
                            amplitude_contrast=contrast, truth_contrast=t_contrast,
                            fraction_at_bound=at_bound, bound=bound,
                            non_finite_fraction=float(1.0 - finite.mean()) if amp.size else 1.0)
