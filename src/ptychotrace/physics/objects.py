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


# --------------------------------------------------------------------------------------------
# Training-corpus families (issue #12): each a complex64 (size, size) object whose amplitude
# spans ``amp_range`` (object units) and whose phase spans [-phase_max, +phase_max] radians.
# --------------------------------------------------------------------------------------------
#: Default amplitude range of the corpus families: the 1st and 99th percentiles of |O| of the
#: lines object (size 392, seed 42: 1.41 and 4.17), so a corpus object transmits about as much
#: as the test object and, with the same physical probe, gets about the same photons per pattern.
DEFAULT_AMP_RANGE = (1.4, 4.2)
#: Percentiles that map a texture map to [0, 1] (robust to a few outlier pixels).
_NORM_PERCENTILES = (1.0, 99.0)


def unit_map(values: np.ndarray) -> np.ndarray:
    """Map a real 2-D array to [0, 1] by its 1st/99th percentiles (clipped); float64.

    A constant array maps to 0.5 everywhere."""
    lo, hi = np.percentile(values, _NORM_PERCENTILES)
    if not hi > lo:
        return np.full(values.shape, 0.5)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def complex_from_maps(t_amp: np.ndarray, t_phase: np.ndarray | None,
                      amp_range: tuple[float, float] = DEFAULT_AMP_RANGE,
                      phase_max: float = 1.0) -> np.ndarray:
    """``A * exp(i*phi)`` from two [0, 1] maps: ``A = lo + (hi - lo) * t_amp`` (object units),
    ``phi = phase_max * (2 * t_phase - 1)`` radians (0 when ``t_phase`` is None). complex64."""
    lo, hi = amp_range
    if not 0 <= lo < hi:
        raise ValueError(f"amplitude range must satisfy 0 <= lo < hi, got {amp_range}")
    amp = lo + (hi - lo) * t_amp
    phi = np.zeros_like(amp) if t_phase is None else phase_max * (2.0 * t_phase - 1.0)
    return (amp * np.exp(1j * phi)).astype(np.complex64)


def _check_size(size: int) -> None:
    if size < 8:
        raise ValueError(f"object size must be >= 8 pixels, got {size}")


def gaussian_random_field(size: int, rng: np.random.Generator,
                          corr_px: tuple[float, float] = (2.0, 8.0)) -> np.ndarray:
    """[0, 1] map: white noise blurred by a Gaussian whose sigma (pixels) is drawn uniformly from
    ``corr_px`` (periodic boundary, so there is no edge artefact), then :func:`unit_map`."""
    sigma = float(rng.uniform(*corr_px))
    noise = rng.standard_normal((size, size))
    return unit_map(gaussian_filter(noise, sigma, mode="wrap"))


def grf_object(size: int = 392, seed: int = 0, amp_range: tuple[float, float] = DEFAULT_AMP_RANGE,
               phase_max: float = 1.0) -> np.ndarray:
    """Gaussian-random-field object: amplitude and phase from two independent fields with
    seeded correlation lengths (2-8 px)."""
    _check_size(size)
    rng = np.random.default_rng(seed)
    t_amp = gaussian_random_field(size, rng)
    t_phase = gaussian_random_field(size, rng)
    return complex_from_maps(t_amp, t_phase, amp_range, phase_max)


def siemens_star(size: int, spokes: int, centre: tuple[float, float], rotation: float = 0.0,
                 edge_px: float = 0.7) -> np.ndarray:
    """[0, 1] map of a Siemens star with ``spokes`` bright spokes around ``centre`` (row, col,
    pixels), rotated by ``rotation`` radians, edges softened by a Gaussian of ``edge_px``."""
    r = np.arange(size, dtype=np.float64)
    yy, xx = np.meshgrid(r - centre[0], r - centre[1], indexing="ij")
    theta = np.arctan2(yy, xx)
    star = (np.cos(spokes * theta + rotation) > 0).astype(np.float64)
    return np.clip(gaussian_filter(star, edge_px), 0.0, 1.0)


def siemens_object(size: int = 392, seed: int = 0,
                   amp_range: tuple[float, float] = DEFAULT_AMP_RANGE,
                   phase_max: float = 1.0) -> np.ndarray:
    """Siemens-star object: 16-48 spokes (seeded) around a centre in the middle third; the phase
    is the same star turned by half a spoke (one image and a transform)."""
    _check_size(size)
    rng = np.random.default_rng(seed)
    spokes = int(rng.integers(16, 49))
    centre = tuple(float(c) for c in rng.uniform(size / 3, 2 * size / 3, 2))
    rot = float(rng.uniform(0, 2 * np.pi))
    t_amp = siemens_star(size, spokes, centre, rot)
    t_phase = siemens_star(size, spokes, centre, rot + np.pi / 2)
    return complex_from_maps(t_amp, t_phase, amp_range, phase_max)


def _gray_image(name: str) -> np.ndarray:
    """A bundled scikit-image sample image as float64 gray (no download)."""
    import skimage.data
    from skimage.color import rgb2gray

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"unknown skimage.data image {name!r} (e.g. camera, brick, grass, gravel, "
                         "moon, coins)")
    img = np.asarray(loader())
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    if img.ndim != 2:
        raise ValueError(f"skimage.data.{name} is not a 2-D image (shape {img.shape})")
    return img.astype(np.float64)


def texture_crop(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """[0, 1] map: a seeded ``size`` x ``size`` crop of skimage.data.<name> (upsampled by an
    integer factor with cubic splines when the image is smaller), randomly flipped/rotated."""
    from scipy.ndimage import zoom

    img = _gray_image(name)
    short = min(img.shape)
    if short < size:
        img = zoom(img, int(np.ceil(size / short)), order=3)
    r0 = int(rng.integers(0, img.shape[0] - size + 1))
    c0 = int(rng.integers(0, img.shape[1] - size + 1))
    crop = np.rot90(img[r0:r0 + size, c0:c0 + size], k=int(rng.integers(0, 4)))
    if rng.integers(0, 2):
        crop = crop[:, ::-1]
    return unit_map(np.ascontiguousarray(crop))


def texture_object(size: int = 392, seed: int = 0, images: tuple[str, ...] = ("camera", "brick"),
                   amp_range: tuple[float, float] = DEFAULT_AMP_RANGE,
                   phase_max: float = 1.0) -> np.ndarray:
    """Natural-texture object: amplitude from a crop of one skimage.data image, phase from a crop
    of another (seeded choice among ``images``; with one image, its crop turned by 90 degrees)."""
    _check_size(size)
    if not images:
        raise ValueError("texture_object needs at least one skimage.data image name")
    rng = np.random.default_rng(seed)
    i = int(rng.integers(0, len(images)))
    t_amp = texture_crop(images[i], size, rng)
    if len(images) > 1:
        j = (i + 1 + int(rng.integers(0, len(images) - 1))) % len(images)
        t_phase = texture_crop(images[j], size, rng)
    else:
        t_phase = np.rot90(t_amp).copy()
    return complex_from_maps(t_amp, t_phase, amp_range, phase_max)
