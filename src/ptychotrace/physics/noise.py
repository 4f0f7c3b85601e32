"""Photon-counting noise: exact Poisson sampling that is fast, parallel and reproducible.

``sample_poisson(expected, seed, scale)`` draws ``counts ~ Poisson(scale * expected)`` for every
pixel, exactly (no normal approximation at any count level):

- ``lam < 10``: inversion by sequential search of the CDF (one uniform, about ``lam`` steps);
- ``lam >= 10``: Hoermann's transformed rejection with squeeze (PTRS, W. Hoermann, "The
  transformed rejection method for generating Poisson random variables", Insurance: Mathematics
  and Economics 12, 1993), the algorithm NumPy also uses in that range; about 1.1 proposals per
  draw and no table, so its cost does not grow with ``lam``.

Randomness is counter-based: the uniforms for flat pixel ``g`` come from a SplitMix64 stream
started at ``mix(mix(seed) + g * golden_gamma)``. A pixel's draw therefore depends only on
``(seed, g)``: the result is identical whatever the chunking (``first_index``), the thread count or
the machine, and the pixels are sampled in parallel with Numba.

Speed: :func:`_poisson_one` is the scalar definition of a draw. :func:`_sample_block` computes the
same numbers (bit for bit, tested) in rounds of branch-free loops that the compiler turns into
SIMD code; for that, exp, log and log(k!) are our own polynomial versions (relative error ~1e-15;
the C library's are scalar calls, and their last bit differs between libraries). No fused
multiply-add contraction is allowed (Numba's default), so results do not depend on the CPU.

The compiled kernels are cached next to this file (``cache=True``), so only the first call on a
machine pays the few seconds of compilation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)   # 2^64 / golden ratio, SplitMix64's increment
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S12 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(12)
_ONE_BITS = np.uint64(0x3FF0000000000000)   # the bit pattern of 1.0
_ONE_MINUS_HALF_ULP = 1.0 - 2.0**-53        # 1 + m/2^52 - (1 - 2^-53) = (m + 1/2)/2^52, exact
#: Below this mean the CDF inversion is cheaper than PTRS (and PTRS needs lam >= 10).
INVERSION_BELOW = 10.0


@numba.njit(inline="always", cache=True)
def _mix(z):
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(inline="always", cache=True)
def _to_unit(z):
    """Top 52 bits m of a 64-bit word as the double (m + 1/2) / 2^52 in the open interval (0, 1),
    exactly. Built from bits (1 + m / 2^52 by its exponent and mantissa fields, minus 1) because
    an integer-to-double conversion of 64-bit lanes has no AVX2 instruction; this vectorises."""
    return np.uint64((z >> _S12) | _ONE_BITS).view(np.float64) - _ONE_MINUS_HALF_ULP


@numba.njit(inline="always", cache=True)
def _uniform(state):
    """Next SplitMix64 output as a double in (0, 1); returns (state, u)."""
    state = state + _GAMMA
    return state, _to_unit(_mix(state))


#: 1/k for the CDF inversion (k < 64 covers lam < 10 to far beyond 1e-12 of the mass).
_INV_K = np.array([0.0] + [1.0 / k for k in range(1, 64)])
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _exp_neg(x):
    """e^-x for 0 <= x <= 10 to a relative error below 1e-14, with no table and no branch so that
    loops over it vectorise (the C library's exp does not, and its last bit differs between
    libraries): e^-x = (e^-y)^32 with y = x/32 <= 0.32, e^-y by its Taylor series to degree 12
    (remainder < 1e-16, amplified 32-fold by the squarings, like the rounding)."""
    y = x * 0.03125
    p = 1.0 / 479001600.0                        # 1/12!
    p = p * -y + 1.0 / 39916800.0
    p = p * -y + 1.0 / 3628800.0
    p = p * -y + 1.0 / 362880.0
    p = p * -y + 1.0 / 40320.0
    p = p * -y + 1.0 / 5040.0
    p = p * -y + 1.0 / 720.0
    p = p * -y + 1.0 / 120.0
    p = p * -y + 1.0 / 24.0
    p = p * -y + 1.0 / 6.0
    p = p * -y + 0.5
    p = p * -y + 1.0
    p = p * -y + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)
_S52 = np.uint64(52)
_LN2_HI = 0.6931471803691238          # ln 2 split so that e * _LN2_HI is exact for |e| < 2^11
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = math.sqrt(2.0)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _log(x):
    """Natural log of a positive normal double to a few ulp, branch-free so that loops over it
    vectorise: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(t), t = (m-1)/(m+1),
    |t| <= 0.172, by its series to t^21 (remainder < 1e-18)."""
    bits = np.float64(x).view(np.uint64)
    e = float(np.int64(bits >> _S52)) - 1023.0
    m = np.uint64((bits & _MANTISSA) | _ONE_BITS).view(np.float64)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    s = 1.0 / 21.0
    s = s * t2 + 1.0 / 19.0
    s = s * t2 + 1.0 / 17.0
    s = s * t2 + 1.0 / 15.0
    s = s * t2 + 1.0 / 13.0
    s = s * t2 + 1.0 / 11.0
    s = s * t2 + 1.0 / 9.0
    s = s * t2 + 1.0 / 7.0
    s = s * t2 + 1.0 / 5.0
    s = s * t2 + 1.0 / 3.0
    return e * _LN2_HI + (e * _LN2_LO + 2.0 * t * (1.0 + t2 * s))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _stirling_parts(k):
    """log(k!) = (x - 1/2) log x - x + log(2 pi)/2 + series - log(rising), branch-free and
    table-free (vectorises), to ~1e-15 absolute, for integer-valued k >= 0: Stirling's series to
    x^-15 at x = k' + 1 >= 9, where k' = k + 8 and rising = (k+1)...(k+8) (a product that is exact
    in double) for k < 64, and k' = k, rising = 1 above. Returns (x, series, rising, shifted)."""
    shifted = k < 64.0
    x = (k + 9.0) if shifted else (k + 1.0)
    r = 1.0 / x
    r2 = r * r
    series = r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 * (
        1.0 / 1680.0 - r2 * (1.0 / 1188.0 - r2 * (691.0 / 360360.0 - r2 * (
            1.0 / 156.0 - r2 * (3617.0 / 122400.0))))))))
    rising = ((k + 1.0) * (k + 2.0) * (k + 3.0) * (k + 4.0)
              * (k + 5.0) * (k + 6.0) * (k + 7.0) * (k + 8.0))
    return x, series, rising if shifted else 1.0, shifted


@numba.njit(inline="always", cache=True, error_model="numpy")
def _log_factorial(k):
    """log(k!) for integer-valued k >= 0 (see :func:`_stirling_parts`)."""
    x, series, rising, _ = _stirling_parts(k)
    return (x - 0.5) * _log(x) - x + _HALF_LOG_2PI + series - _log(rising)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _inversion_continue(lam, u, k, p, cdf, inv_k):
    """Sequential CDF search from step k (p = P(K = k), cdf = P(K <= k)); returns K."""
    while u > cdf and k < 63:
        k += 1
        p *= lam * inv_k[k]
        cdf += p
    return float(k)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _ptrs_proposal(lam, u, v):
    """PTRS's proposal k for the uniforms (u centred in (-1/2, 1/2), v in (0, 1)) and whether the
    squeeze accepts it: returns (k, accepted)."""
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    b2 = b - 2.0
    us = 0.5 - abs(u)
    k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
    # v <= vr  <=>  v * (b - 2) <= vr * (b - 2), vr = 0.9277 - 3.6224 / (b - 2)
    return k, (us >= 0.07) & (v * b2 <= 0.9277 * b2 - 3.6224)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _ptrs_log_test(lam, u, v, k):
    """PTRS's acceptance test outside the squeeze for one proposal (u centred, v, k), branch-free.

    Hoermann's test  log(v / alpha) - log(a/us^2 + b) <= -lam + k log(lam) - log(k!)  is
    rearranged, with log(k!) from :func:`_stirling_parts` and c = b - 3.4, to
        log(v (1.1239 c + 1.1328) us^2 x^(x - 1/2 - k) / (c (a + b us^2) rising))
            <= (x - lam) + k log(lam / x) - log(2 pi)/2 - series,
    the same inequality with two logs and one division where the textbook form has five logs
    and four divisions (the loop's cost is in those), and without its cancellation between
    terms of size k log(lam). x^(x - 1/2 - k) is sqrt(x) (k >= 64) or sqrt(x) x^8 (k < 64).
    """
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    c = b - 3.4
    us = 0.5 - abs(u)
    us2 = us * us
    kk = max(k, 0.0)                                 # k < 0 is refused; keep the logs finite
    x, series, rising, shifted = _stirling_parts(kk)
    x2 = x * x
    x4 = x2 * x2
    x_power = math.sqrt(x) * (x4 * x4 if shifted else 1.0)
    lhs = _log(v * (1.1239 * c + 1.1328) * us2 * x_power / (c * (a + b * us2) * rising))
    rhs = (x - lam) + kk * _log(lam / x) - _HALF_LOG_2PI - series
    return (k >= 0.0) & ((us >= 0.013) | (v <= us)) & (lhs <= rhs)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _ptrs_from(lam, state, u):
    """PTRS (lam >= INVERSION_BELOW) from a proposal's u (centred, in (-1/2, 1/2)); the next
    uniform of the stream after ``state`` is its v. Returns K.

    Hoermann's acceptance test log(v) + log(1/alpha) - log(a/us^2 + b) <= log(pmf(k)) is
    evaluated with one log of the product on its left (the same inequality, fewer logs)."""
    while True:
        state, v = _uniform(state)
        k, squeeze = _ptrs_proposal(lam, u, v)
        if squeeze:
            return k
        if _ptrs_log_test(lam, u, v, k):
            return k
        state, u = _uniform(state)
        u -= 0.5


@numba.njit(inline="always", cache=True, error_model="numpy")
def _poisson_one(lam, state, tables):
    """One exact Poisson(lam) draw (lam >= 0, finite) from the stream that starts at ``state``
    (the pixel's 64-bit hash, itself the first uniform). The scalar definition that
    :func:`_sample_block` reproduces bit for bit (tested). tables: (inv_k,)."""
    inv_k = tables[0]
    if lam < INVERSION_BELOW:
        p = _exp_neg(lam)
        return _inversion_continue(lam, _to_unit(state), 0, p, p, inv_k)
    return _ptrs_from(lam, state, _to_unit(state) - 0.5)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _pixel_state(base, g):
    """Start of pixel g's stream (its first 64-bit word)."""
    return _mix(base + g * _GAMMA)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _compact(flags, n):
    """Indices i < n where flags[i] is true, and their count (branch-free)."""
    idx = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        idx[m] = i
        m += flags[i]
    return idx, m


@numba.njit(inline="always", cache=True, error_model="numpy")
def _log_test_failures(lam, u, v, k, ok):
    """ok[i] |= the log test of proposal i, evaluated (in a vector loop over gathered copies)
    only where the squeeze failed."""
    fail, n_fail = _compact(~ok, ok.shape[0])
    sel = fail[:n_fail]
    lam_f = lam[sel]
    u_f = u[sel]
    v_f = v[sel]
    k_f = k[sel]
    ok_f = np.empty(n_fail, dtype=np.bool_)
    for g in range(n_fail):
        ok_f[g] = _ptrs_log_test(lam_f[g], u_f[g], v_f[g], k_f[g])
    for g in range(n_fail):
        ok[sel[g]] = ok_f[g]


@numba.njit(cache=True, error_model="numpy")
def _sample_block(lam, first, base, tables, out):
    """out[i] ~ Poisson(lam[i]) for one block (lam float64 (n,), out float32 (n,)), pixel i using
    the stream of global index first + i.

    The same result as :func:`_poisson_one` on every pixel (tested bit for bit), computed in
    rounds of branch-free loops over contiguous arrays, which the compiler vectorises (a scalar
    loop per pixel was ~2x slower). The pixels are split by algorithm. Below INVERSION_BELOW
    each round takes four more steps of the CDF inversion for the pixels not yet decided (the
    first round decides K <= 3: 98% of draws at lam = 1); every pending pixel is at the same
    step, so the steps' constants are shared. Above it, each round tries one PTRS proposal
    (squeeze, then the log test for the squeeze's failures) for the pixels not yet accepted:
    ~90% accept per round.
    """
    inv_k = tables[0]
    n = lam.shape[0]
    # branch-free partition; the means are copied so that the loops below read contiguous
    # memory (indirect loads stop the vectoriser)
    idx_small = np.empty(n, dtype=np.uint64)
    idx_big = np.empty(n, dtype=np.uint64)
    lam_small = np.empty(n)
    lam_big = np.empty(n)
    n_small = 0
    n_big = 0
    for i in range(n):
        lm = lam[i]
        small = lm < INVERSION_BELOW
        idx_small[n_small] = i
        lam_small[n_small] = lm
        idx_big[n_big] = i
        lam_big[n_big] = lm
        n_small += small
        n_big += 1 - small

    # --- CDF inversion: the operations and their order are those of _inversion_continue ---
    k_small = np.empty(n_small)
    u_small = np.empty(n_small)
    p_small = np.empty(n_small)
    cdf_small = np.empty(n_small)
    for j in range(n_small):                    # steps 0..3, unrolled by hand (an inner loop
        lm = lam_small[j]                       # stops the vectoriser)
        u = _to_unit(_pixel_state(base, first + idx_small[j]))
        p = _exp_neg(lm)
        cdf = p
        k = 0.0 + (u > cdf)
        p *= lm * inv_k[1]
        cdf += p
        k += u > cdf
        p *= lm * inv_k[2]
        cdf += p
        k += u > cdf
        p *= lm * inv_k[3]
        cdf += p
        k += u > cdf
        k_small[j] = k
        u_small[j] = u
        p_small[j] = p
        cdf_small[j] = cdf
    pend, n_pend = _compact(k_small > 3.5, n_small)   # K > 3: u beyond the CDF at step 3
    step = 4
    while n_pend > 0 and step < 64:
        c1, c2, c3, c4 = inv_k[step], inv_k[step + 1], inv_k[step + 2], inv_k[step + 3]
        lam_r = lam_small[pend[:n_pend]]
        u_r = u_small[pend[:n_pend]]
        p_r = p_small[pend[:n_pend]]
        cdf_r = cdf_small[pend[:n_pend]]
        k_r = np.empty(n_pend)
        for f in range(n_pend):
            lm = lam_r[f]
            u = u_r[f]
            p = p_r[f]
            cdf = cdf_r[f]
            p *= lm * c1
            cdf += p
            k = step + (u > cdf)
            p *= lm * c2
            cdf += p
            k += u > cdf
            p *= lm * c3
            cdf += p
            k += u > cdf
            p *= lm * c4
            cdf += p
            k += u > cdf
            p_r[f] = p
            cdf_r[f] = cdf
            k_r[f] = k
        for f in range(n_pend):
            j = pend[f]
            k_small[j] = min(k_r[f], 63.0)      # the scalar search stops at k = 63
            p_small[j] = p_r[f]
            cdf_small[j] = cdf_r[f]
        step += 4
        again, n_again = _compact(k_r > step - 0.5, n_pend)
        pend = pend[again[:n_again]]
        n_pend = n_again
    for j in range(n_small):
        out[idx_small[j]] = k_small[j]

    # --- PTRS: round r tries proposal r (as _ptrs_from: u, v are the stream's words 2r, 2r+1) ---
    # round 0 over all of them, in place
    k_big = np.empty(n_big)
    z_big = np.empty(n_big, dtype=np.uint64)
    u_big = np.empty(n_big)
    v_big = np.empty(n_big)
    ok = np.empty(n_big, dtype=np.bool_)
    for j in range(n_big):
        lm = lam_big[j]
        z = _pixel_state(base, first + idx_big[j])
        u = _to_unit(z) - 0.5
        v = _to_unit(_mix(z + _GAMMA))
        z_big[j] = z
        u_big[j] = u
        v_big[j] = v
        k_big[j], ok[j] = _ptrs_proposal(lm, u, v)
    _log_test_failures(lam_big, u_big, v_big, k_big, ok)
    pend, n_pend = _compact(~ok, n_big)
    r = 1
    while n_pend > 0:                           # later rounds, on the pending pixels only
        sel = pend[:n_pend]
        lam_r = lam_big[sel]
        z_r = z_big[sel]
        u_r = np.empty(n_pend)
        v_r = np.empty(n_pend)
        k_r = np.empty(n_pend)
        ok = np.empty(n_pend, dtype=np.bool_)
        u_offset = np.uint64(2 * r) * _GAMMA
        v_offset = u_offset + _GAMMA
        for f in range(n_pend):
            lm = lam_r[f]
            z = z_r[f]
            u = _to_unit(_mix(z + u_offset)) - 0.5
            v = _to_unit(_mix(z + v_offset))
            u_r[f] = u
            v_r[f] = v
            k_r[f], ok[f] = _ptrs_proposal(lm, u, v)
        _log_test_failures(lam_r, u_r, v_r, k_r, ok)
        for f in range(n_pend):
            k_big[sel[f]] = k_r[f]
        again, n_again = _compact(~ok, n_pend)
        pend = sel[again[:n_again]]
        n_pend = n_again
        r += 1
    for j in range(n_big):
        out[idx_big[j]] = k_big[j]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _poisson_kernel(expected, scale, seed, first_index, tables, out):
    """out[i] ~ Poisson(scale * expected[i]) for flat float32 arrays (out may be expected itself:
    each block is copied before it is overwritten); pixel i uses the stream of global index
    first_index + i. Returns the number of means that are negative, NaN or inf (those blocks
    are left unsampled)."""
    n = expected.shape[0]
    base = _mix(seed)
    block = 4096
    n_blocks = (n + block - 1) // block
    bad = np.zeros(n_blocks, dtype=np.int64)
    for blk in numba.prange(n_blocks):
        start = blk * block
        stop = min(n, start + block)
        lam = np.empty(stop - start)
        n_bad = 0
        for i in range(start, stop):
            x = float(expected[i]) * scale
            lam[i - start] = x
            n_bad += not (x >= 0.0 and x < math.inf)
        bad[blk] = n_bad
        if n_bad == 0:
            _sample_block(lam, first_index + np.uint64(start), base, tables, out[start:stop])
    return bad.sum()


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _intensity_kernel(field, out, sums):
    """out[p] = |field[p]|^2 for field (P, M, 2) float32 (complex as re/im) into out (P, M)
    float32; sums[p] = the float64 sum of out[p] (sequential per row: chunk-independent)."""
    for p in numba.prange(field.shape[0]):
        total = 0.0
        for i in range(field.shape[1]):
            re = field[p, i, 0]
            im = field[p, i, 1]
            value = re * re + im * im
            out[p, i] = value
            total += float(value)
        sums[p] = total


_TABLES = (_INV_K,)


def sample_poisson(expected: np.ndarray, seed: int, scale: float = 1.0, first_index: int = 0,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Photon counts ``~ Poisson(scale * expected)`` as a float32 array of ``expected``'s shape.

    expected: any shape, expected counts per pixel (photons) before ``scale``; must be finite and
    >= 0. seed: non-negative int. first_index: the flat index of ``expected[0...]`` in a larger
    array that is sampled in chunks (a pixel's draw depends only on seed and its global index, so
    chunked and whole-array sampling agree exactly). out: a C-contiguous float32 array of the
    same shape to write into; it may be ``expected`` itself (in place). On invalid means a
    ValueError is raised and the content of ``out`` is unspecified.
    """
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"Poisson scale must be finite and >= 0, got {scale!r}")
    if int(seed) < 0 or int(first_index) < 0:
        raise ValueError("seed and first_index must be non-negative integers")
    lam = np.ascontiguousarray(expected, dtype=np.float32)
    if out is None:
        out = np.empty(lam.shape, dtype=np.float32)
    elif out.shape != lam.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of expected's shape")
    n_bad = _poisson_kernel(lam.reshape(-1), float(scale), np.uint64(int(seed) % 2**64),
                            np.uint64(first_index), _TABLES, out.reshape(-1))
    if n_bad:
        raise ValueError(f"expected counts must be finite and >= 0 (found {n_bad} negative, "
                         "NaN or inf)")
    return out


def far_field_intensity(field: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = |field|^2`` in one pass, with the float64 sum of each pattern.

    field: (P, N, N) complex64 far fields; out: (P, N, N) float32, C-contiguous, written in
    place. Returns (P,) float64 sums of ``out`` (summed in a fixed order per pattern, so they do
    not depend on how a dataset is chunked). Raises ValueError on NaN or inf in the field.
    """
    field = np.ascontiguousarray(field, dtype=np.complex64)
    p = field.shape[0]
    if out.shape != field.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of the field's shape")
    sums = np.empty(p, dtype=np.float64)
    _intensity_kernel(field.view(np.float32).reshape(p, -1, 2), out.reshape(p, -1), sums)
    if not np.isfinite(sums).all():
        raise ValueError("far field contains NaN or inf")
    return sums
