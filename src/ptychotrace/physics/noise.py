"""Photon-counting noise: exact Poisson counts from NumPy's Generator, reproducible per pattern.

``sample_poisson(expected, seed, scale, first_pattern)`` draws ``counts ~ Poisson(scale *
expected)`` for every pixel with :meth:`numpy.random.Generator.poisson` (exact at every count
level: multiplication method below 10 expected counts, Hoermann's PTRS above; no normal
approximation).

Reproducibility: the leading axis of ``expected`` indexes patterns, and pattern ``j`` (its global
index ``first_pattern + j``) draws from its own counter-based Philox-4x64 stream: the key is
derived from ``seed`` (through :class:`numpy.random.SeedSequence`, so nearby seeds give unrelated
keys) and the counter starts at ``j * 2**128``; one pattern needs far fewer than ``2**128``
counter steps, so the streams never overlap. The counts of pattern ``j`` therefore depend only on
``(seed, j, its expected counts)``: sampling a dataset whole or in chunks of any size gives the
same bytes, and with any number of threads: patterns are sampled in parallel in a thread pool
(NumPy releases the GIL while it draws), each pattern by its own generator.

Bit stability: given the same means, seed and NumPy version the counts are exact integers and
repeat bit for bit. Across machines that holds only as far as the means do: they come from float
FFTs, whose last bit may differ between CPUs (and PTRS compares logs from the C library), and
NumPy may change a Generator method's algorithm between versions (NEP 19). So tests compare two
runs in one process, never a stored hash of simulated counts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: NumPy refuses larger Poisson means (its PTRS limit, ~9.2e18); we refuse them with our message.
MAX_MEAN = 1e18
#: One pattern's Philox stream spans this many counter steps (4 64-bit words per step).
_STREAM_STRIDE = 2**128


def _pattern_generator(key: np.ndarray, pattern: int) -> np.random.Generator:
    """The counter-based stream of one pattern: Philox keyed by the seed, counter at its block."""
    return np.random.Generator(np.random.Philox(key=key, counter=pattern * _STREAM_STRIDE))


def default_threads() -> int:
    """Threads for the sampler when the caller does not say: the CPUs, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def sample_poisson(expected: np.ndarray, seed: int, scale: float = 1.0, first_pattern: int = 0,
                   out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Photon counts ``~ Poisson(scale * expected)`` as a float32 array of ``expected``'s shape.

    expected: (P, ...) expected counts per pixel (photons) before ``scale``; the leading axis
    indexes patterns (a 1-D array is P one-pixel patterns); finite and >= 0. seed: non-negative
    int. first_pattern: the global index of ``expected[0]`` in a dataset sampled in chunks
    (pattern ``first_pattern + j`` uses its own stream, so chunked and whole-array sampling agree
    exactly). out: a C-contiguous float32 array of the same shape to write into; it may be
    ``expected`` itself (in place). threads: worker threads (default :func:`default_threads`);
    the result does not depend on it. Invalid means raise ValueError before anything is written.
    Counts above 2^24 round to float32 like any float32 value.
    """
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"Poisson scale must be finite and >= 0, got {scale!r}")
    if int(seed) < 0 or int(first_pattern) < 0:
        raise ValueError("seed and first_pattern must be non-negative integers")
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    expected = np.asarray(expected)
    if expected.ndim == 0:
        raise ValueError("expected counts need a leading pattern axis (got a scalar)")
    if out is None:
        out = np.empty(expected.shape, dtype=np.float32)
    elif out.shape != expected.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of expected's shape")
    # float64 means, a copy: validated whole before out (possibly expected itself) is written
    lam = expected.reshape(expected.shape[0], -1).astype(np.float64) * float(scale)
    bad = ~(np.isfinite(lam) & (lam >= 0) & (lam <= MAX_MEAN))
    if bad.any():
        raise ValueError(f"expected counts must be finite and >= 0 and scale * expected <= "
                         f"{MAX_MEAN:g} (found {int(bad.sum())} negative, NaN, inf or too large)")
    key = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)
    flat = out.reshape(lam.shape)
    n_pat = lam.shape[0]

    def sample_rows(rows: range) -> None:        # disjoint rows of out: no two threads share one
        for j in rows:
            flat[j] = _pattern_generator(key, int(first_pattern) + j).poisson(lam[j])

    step = -(-n_pat // threads) if n_pat else 1
    parts = [range(s, min(s + step, n_pat)) for s in range(0, n_pat, step)]
    if len(parts) <= 1:
        for rows in parts:
            sample_rows(rows)
    else:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(sample_rows, parts))
    return out


def far_field_intensity(field: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = |field|^2`` (float32, re^2 + im^2) with the float64 sum of each pattern.

    field: (P, N, N) complex64 far fields; out: (P, N, N) float32, C-contiguous, written in
    place. Returns (P,) float64 sums of ``out``, each computed from that pattern's values alone
    (so they do not depend on how a dataset is chunked). Raises ValueError on NaN or inf.
    """
    field = np.ascontiguousarray(field, dtype=np.complex64)
    p = field.shape[0]
    if out.shape != field.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of the field's shape")
    np.square(field.real, out=out)
    out += np.square(field.imag)
    rows = out.reshape(p, -1)
    # one contiguous float64 row at a time: the sum of a pattern sees no other pattern's values
    sums = np.array([row.astype(np.float64).sum() for row in rows], dtype=np.float64)
    if not np.isfinite(sums).all():
        raise ValueError("far field contains NaN or inf")
    return sums
