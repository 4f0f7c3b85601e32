"""Exact Poisson sampling: distribution, reproducibility, chunk invariance, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ptychotrace.physics.noise import INVERSION_BELOW, far_field_intensity, sample_poisson


@pytest.mark.parametrize("lam", [0.02, 0.7, 4.0, INVERSION_BELOW - 1e-3, INVERSION_BELOW,
                                 37.0, 800.0])
def test_counts_follow_the_poisson_pmf(lam):
    """Chi-square goodness of fit against scipy's pmf on both sides of the algorithm switch."""
    draws = sample_poisson(np.full(300_000, lam, np.float32), seed=5)
    k = draws.astype(np.int64)
    lo, hi = int(stats.poisson.ppf(1e-4, lam)), int(stats.poisson.isf(1e-4, lam))
    edges = np.arange(lo, hi + 2)
    inside = np.clip(k, lo - 1, hi + 1) - (lo - 1)                  # bins: <lo, lo..hi, >hi
    observed = np.bincount(inside, minlength=hi - lo + 3).astype(float)
    cdf = stats.poisson.cdf(edges - 1, lam)                          # P(K <= lo-1), ...
    probs = np.concatenate([[cdf[0]], np.diff(cdf), [1 - cdf[-1]]])
    expected = probs * draws.size
    keep = expected > 20
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (lam, chi2, keep.sum())


@pytest.mark.parametrize("lam", [5e4, 3e6, 2e8])
def test_large_means_have_poisson_moments(lam):
    draws = sample_poisson(np.full(200_000, lam, np.float32), seed=3).astype(np.float64)
    se = np.sqrt(lam / draws.size)
    assert abs(draws.mean() - lam) < 5 * se
    assert abs(draws.var() / lam - 1) < 0.03
    assert np.all(draws == np.round(draws))


def test_zero_mean_gives_zero_counts_and_scale_multiplies_the_mean():
    assert not sample_poisson(np.zeros(1000, np.float32), 1).any()
    draws = sample_poisson(np.full(200_000, 2.0, np.float32), 5, scale=3.0)
    assert abs(draws.mean() - 6.0) < 5 * np.sqrt(6.0 / draws.size)


def test_same_seed_same_bytes_other_seed_differs():
    lam = np.random.default_rng(0).uniform(0, 50, (7, 33, 33)).astype(np.float32)
    a, b = sample_poisson(lam, 9), sample_poisson(lam, 9)
    assert a.tobytes() == b.tobytes() and a.shape == lam.shape and a.dtype == np.float32
    assert (sample_poisson(lam, 10) != a).mean() > 0.5


def test_chunked_sampling_equals_whole_array_sampling():
    lam = np.random.default_rng(1).uniform(0, 3e4, (10, 16, 16)).astype(np.float32)
    whole = sample_poisson(lam, 4)
    parts = [sample_poisson(lam[s:s + 3], 4, first_index=s * 256) for s in range(0, 10, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_far_field_intensity_and_its_row_sums():
    rng = np.random.default_rng(2)
    field = (rng.standard_normal((6, 8, 8)) + 1j * rng.standard_normal((6, 8, 8))).astype(np.complex64)
    out = np.empty((6, 8, 8), np.float32)
    sums = far_field_intensity(field, out)
    np.testing.assert_allclose(out, np.abs(field.astype(np.complex128)) ** 2, rtol=1e-6)
    np.testing.assert_allclose(sums, out.sum(axis=(1, 2), dtype=np.float64), rtol=1e-12)
    # the sum of a pattern does not depend on the patterns around it (chunking)
    part = np.empty((2, 8, 8), np.float32)
    np.testing.assert_array_equal(far_field_intensity(field[3:5], part), sums[3:5])
    field[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        far_field_intensity(field, out)


def test_in_place_sampling_equals_sampling_into_a_new_array():
    lam = np.random.default_rng(3).uniform(0, 40, (5, 16, 16)).astype(np.float32)
    expected = sample_poisson(lam, 6, 2.5, first_index=99)
    buf = lam.copy()
    assert sample_poisson(buf, 6, 2.5, first_index=99, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    with pytest.raises(ValueError, match="out must be"):
        sample_poisson(lam, 6, out=np.empty((5, 16, 16), np.float64))


@pytest.mark.parametrize("bad", [np.array([1.0, -0.5]), np.array([np.nan]), np.array([np.inf])])
def test_bad_expected_counts_are_refused(bad):
    with pytest.raises(ValueError, match="finite and >= 0"):
        sample_poisson(bad, 1)
    big = np.ones(10_000)                        # an invalid mean in a later block is found too
    big[9_000] = bad[-1]
    with pytest.raises(ValueError, match="found 1 negative"):
        sample_poisson(big, 1)


def test_bad_scale_and_seed_are_refused():
    with pytest.raises(ValueError, match="scale"):
        sample_poisson(np.ones(3), 1, scale=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_poisson(np.ones(3), -2)


def test_vectorised_first_pass_changes_nothing():
    """The two-pass block sampler equals drawing every pixel with the scalar routine."""
    import numba

    from ptychotrace.physics import noise

    @numba.njit
    def scalar_reference(lam, base, out):
        for i in range(lam.shape[0]):
            out[i] = noise._poisson_one(lam[i], noise._pixel_state(base, np.uint64(i)),
                                        noise._TABLES)

    rng = np.random.default_rng(4)
    lam = np.concatenate([rng.uniform(0, 12, 3000), 10 ** rng.uniform(1, 7, 5000), np.zeros(50)])
    base = np.uint64(noise._mix(np.uint64(77)))   # a Python int would type as int64
    fast, ref = np.empty(lam.size, np.float32), np.empty(lam.size, np.float32)
    noise._sample_block(lam, np.uint64(0), base, noise._TABLES, fast)
    scalar_reference(lam, base, ref)
    np.testing.assert_array_equal(fast, ref)


def test_own_exp_log_and_log_factorial_match_the_c_library():
    """The sampler's branch-free exp, log and log(k!) (used so that its loops vectorise) agree
    with the C library to ~1e-15 over the ranges the sampler uses."""
    import math

    import numba

    from ptychotrace.physics import noise

    @numba.njit
    def evaluate(x, k, e, lg, lf):
        for i in range(x.shape[0]):
            e[i] = noise._exp_neg(min(x[i], 10.0))
            lg[i] = noise._log(x[i])
        for i in range(k.shape[0]):
            lf[i] = noise._log_factorial(k[i])

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 10, 20_000), 10 ** rng.uniform(-300, 300, 20_000),
                        [1.0, 2.0, 0.5, np.sqrt(2.0)]])
    k = np.concatenate([np.arange(0.0, 300.0), np.round(10 ** rng.uniform(2.5, 9.5, 5_000))])
    e, lg, lf = np.empty_like(x), np.empty_like(x), np.empty_like(k)
    evaluate(x, k, e, lg, lf)
    small = x <= 10.0
    np.testing.assert_allclose(e[small], np.exp(-x[small]), rtol=2e-14, atol=0)
    np.testing.assert_allclose(lg, np.log(x), rtol=1e-15, atol=1e-15)
    ref = np.array([math.lgamma(v + 1.0) for v in k])
    np.testing.assert_allclose(lf, ref, rtol=1e-14, atol=1e-14)


def test_rearranged_ptrs_log_test_decides_like_the_textbook_form():
    """The vectorised PTRS log test (two logs, one division) accepts exactly the proposals that
    Hoermann's textbook inequality accepts, except where the two sides are within rounding."""
    import math

    import numba

    from ptychotrace.physics import noise

    @numba.njit
    def decide(lam, u, v, k, out):
        for i in range(lam.shape[0]):
            out[i] = noise._ptrs_log_test(lam[i], u[i], v[i], k[i])

    rng = np.random.default_rng(11)
    n = 40_000
    lam = 10 ** rng.uniform(1, 8, n)
    u = rng.uniform(-0.5, 0.5, n)
    v = rng.uniform(0, 1, n)
    b = 0.931 + 2.53 * np.sqrt(lam)
    a = -0.059 + 0.02483 * b
    us = 0.5 - np.abs(u)
    k = np.floor((2 * a / us + b) * u + lam + 0.43)
    lhs = np.log(v) + np.log(1.1239 + 1.1328 / (b - 3.4)) - np.log(a / us**2 + b)
    log_k_factorial = np.array([math.lgamma(x + 1.0) if x >= 0 else 0.0 for x in k])
    rhs = -lam + np.maximum(k, 0) * np.log(lam) - log_k_factorial
    textbook = (k >= 0) & ((us >= 0.013) | (v <= us)) & (lhs <= rhs)
    ours = np.empty(n, dtype=np.bool_)
    decide(lam, u, v, k, ours)
    clear = np.abs(lhs - rhs) > 1e-12 + 1e-13 * np.abs(k * np.log(lam))   # rounding of either form
    assert clear.mean() > 0.999 and 0.2 < textbook.mean() < 0.95
    np.testing.assert_array_equal(ours[clear], textbook[clear])
