"""Synthetic objects. The 'lines' object of the sim-lines benchmark."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.draw import line as draw_line

#: Blur sigmas (pixels) and weights of the lines amplitude: g1 + 2*g5 + 5*g10.
LINES_BLURS = ((1.0, 1.0), (5.0, 2.0), (10.0, 5.0))


def lines_object(size: int = 392, seed: int = 42, n_lines: int = 400,
                 phase: str = "zero") -> np.ndarray:
    """Complex64 (size, size) object ``A * exp(i*phi)``.

    400 random straight segments with integer endpoints uniform over a canvas of twice the size
    are drawn as ones; amplitude = g1 + 2*g5 + 5*g10 (Gaussian blurs, sigma in pixels); the centre
    size x size is kept. ``phase='zero'`` (default) or ``'tanh'``:
    ``phi = pi * tanh((A - max(A)/2) / (3*mean(A)))`` radians.
    """
    if size < 8:
        raise ValueError(f"object size must be >= 8 pixels, got {size}")
    if phase not in ("zero", "tanh"):
        raise ValueError(f"object phase must be 'zero' or 'tanh', got {phase!r}")
    rng = np.random.default_rng(seed)
    big = 2 * size
    canvas = np.zeros((big, big), dtype=np.float64)
    ends = rng.integers(0, big, size=(n_lines, 4))
    for r0, c0, r1, c1 in ends:
        rr, cc = draw_line(int(r0), int(c0), int(r1), int(c1))
        canvas[rr, cc] = 1.0
    # Blur only the kept centre plus the widest kernel's radius (truncate=4 sigma, scipy's
    # default): each kept pixel sees the same taps as on the whole canvas, so the result is
    # identical, ~3x faster.
    start = (big - size) // 2
    margin = min(start, int(4.0 * max(sigma for sigma, _ in LINES_BLURS) + 0.5))
    window = canvas[start - margin:start + size + margin, start - margin:start + size + margin]
    amp = sum(weight * gaussian_filter(window, sigma, truncate=4.0)
              for sigma, weight in LINES_BLURS)
    amp = amp[margin:margin + size, margin:margin + size]
    if phase == "tanh":
        phi = np.pi * np.tanh((amp - amp.max() / 2) / (3 * amp.mean()))
    else:
        phi = np.zeros_like(amp)
    return (amp * np.exp(1j * phi)).astype(np.complex64)
