"""Exact Poisson sampling: distribution, reproducibility, chunk invariance, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ptychotrace.physics.noise import far_field_intensity, sample_poisson


def _draws(lam, n, seed, **kw):
    """n draws at one mean, as 100 patterns (one stream each) of n/100 pixels."""
    return sample_poisson(np.full((100, n // 100), lam, np.float32), seed, **kw).reshape(-1)


# numpy switches from the multiplication method to PTRS at a mean of 10
@pytest.mark.parametrize("lam", [0.02, 0.7, 4.0, 9.999, 10.0, 37.0, 800.0])
def test_counts_follow_the_poisson_pmf(lam):
    """Chi-square goodness of fit against scipy's pmf on both sides of the algorithm switch."""
    draws = _draws(lam, 300_000, seed=5)
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
    draws = _draws(lam, 200_000, seed=3).astype(np.float64)
    se = np.sqrt(lam / draws.size)
    assert abs(draws.mean() - lam) < 5 * se
    assert abs(draws.var() / lam - 1) < 0.03
    assert np.all(draws == np.round(draws))


def test_zero_mean_gives_zero_counts_and_scale_multiplies_the_mean():
    assert not sample_poisson(np.zeros((10, 100), np.float32), 1).any()
    draws = _draws(2.0, 200_000, 5, scale=3.0)
    assert abs(draws.mean() - 6.0) < 5 * np.sqrt(6.0 / draws.size)


def test_same_seed_same_bytes_other_seed_differs():
    lam = np.random.default_rng(0).uniform(0, 50, (7, 33, 33)).astype(np.float32)
    a, b = sample_poisson(lam, 9), sample_poisson(lam, 9)
    assert a.tobytes() == b.tobytes() and a.shape == lam.shape and a.dtype == np.float32
    assert (sample_poisson(lam, 10) != a).mean() > 0.5
    # each pattern has its own stream: equal means in two patterns give unrelated counts
    same = sample_poisson(np.repeat(lam[:1], 2, axis=0), 9)
    assert (same[0] != same[1]).mean() > 0.5


def test_chunked_sampling_equals_whole_array_sampling():
    lam = np.random.default_rng(1).uniform(0, 3e4, (10, 16, 16)).astype(np.float32)
    whole = sample_poisson(lam, 4)
    for size in (1, 3, 4):
        parts = [sample_poisson(lam[s:s + size], 4, first_pattern=s) for s in range(0, 10, size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    # a pattern's counts depend on its own means only, not on its neighbours'
    other = lam.copy()
    other[3] *= 2
    changed = sample_poisson(other, 4)
    np.testing.assert_array_equal(np.delete(changed, 3, axis=0), np.delete(whole, 3, axis=0))
    assert (changed[3] != whole[3]).any()
    # any number of threads, the same bytes
    for threads in (1, 2, 3, 16):
        np.testing.assert_array_equal(sample_poisson(lam, 4, threads=threads), whole)
    with pytest.raises(ValueError, match="threads"):
        sample_poisson(lam, 4, threads=0)
    # without first_pattern a chunk would reuse the streams of the first patterns
    assert (sample_poisson(lam[3:6], 4) != whole[3:6]).any()


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
    expected = sample_poisson(lam, 6, 2.5, first_pattern=99)
    buf = lam.copy()
    assert sample_poisson(buf, 6, 2.5, first_pattern=99, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    with pytest.raises(ValueError, match="out must be"):
        sample_poisson(lam, 6, out=np.empty((5, 16, 16), np.float64))


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf, 2e18])
def test_bad_expected_counts_are_refused_before_anything_is_written(bad):
    with pytest.raises(ValueError, match="finite and >= 0"):
        sample_poisson(np.array([1.0, bad]), 1)
    big = np.ones((100, 100), np.float32)       # an invalid mean in a late pattern is found too
    big[90, 7] = bad
    before = big.copy()
    with pytest.raises(ValueError, match="found 1 negative"):
        sample_poisson(big, 1, out=big)
    np.testing.assert_array_equal(big, before)   # in place: the earlier patterns are untouched


def test_bad_scale_and_seed_are_refused():
    with pytest.raises(ValueError, match="scale"):
        sample_poisson(np.ones(3), 1, scale=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_poisson(np.ones(3), -2)
    with pytest.raises(ValueError, match="non-negative"):
        sample_poisson(np.ones(3), 2, first_pattern=-1)
    with pytest.raises(ValueError, match="leading pattern axis"):
        sample_poisson(np.float32(3.0), 2)
