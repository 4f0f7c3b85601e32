"""Forward model and patch operators: the one FFT convention and the one extract/scatter path.

Conventions (see docs/physics.md):
- a scan position ``(x, y)`` (column, row) in object pixels is the *centre* of an N x N patch:
  patch pixel ``(r, c)`` samples the object at ``(y - N//2 + r, x - N//2 + c)``;
- sub-pixel positions use bilinear interpolation (4 taps); integer positions reduce to slicing;
- far field: ``fftshift(fft2(psi, norm="ortho"))`` so that sum|F|^2 == sum|psi|^2 (Parseval).

All operators work on torch tensors (differentiable, any device); NumPy callers convert at the
boundary with :func:`to_tensor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor


def to_tensor(array, device: torch.device | str | None = None) -> Tensor:
    """NumPy array (or tensor) -> tensor without copying when possible."""
    if isinstance(array, torch.Tensor):
        return array.to(device) if device is not None else array
    return torch.as_tensor(np.ascontiguousarray(array), device=device)


# --------------------------------------------------------------------------------------------
# Far field
# --------------------------------------------------------------------------------------------
def far_field(exit_wave: Tensor) -> Tensor:
    """Exit wave (..., N, N) complex -> far field (..., N, N) complex, DC at the centre pixel.

    Orthonormal FFT: summed |far field|^2 equals summed |exit wave|^2.
    """
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))


def inverse_far_field(field: Tensor) -> Tensor:
    """Exact inverse of :func:`far_field` (and its adjoint, since the transform is unitary)."""
    return torch.fft.ifft2(torch.fft.ifftshift(field, dim=(-2, -1)), norm="ortho")


def expected_counts(probe: Tensor, object_patches: Tensor) -> Tensor:
    """Expected photon counts per detector pixel, ``|far_field(probe * O_j)|^2``.

    probe: (N, N) complex in sqrt(photons) units (the physical, dose-scaled probe);
    object_patches: (..., N, N) complex, dimensionless transmission. Returns float (..., N, N).
    """
    field = far_field(probe * object_patches)
    return field.real.square() + field.imag.square()


def sample_poisson(expected: np.ndarray, rng: np.random.Generator,
                   gaussian_above: float | None = 1.0e4) -> np.ndarray:
    """Draw photon counts ~ Poisson(expected) as float32.

    Pixels with expected count above ``gaussian_above`` use the normal approximation
    ``round(lam + sqrt(lam) * z)`` (clipped at 0): at lam >= 1e4 its skewness error is below 1%
    of one standard deviation, and it is ~10x cheaper than exact sampling, which otherwise
    dominates simulation time at high dose. ``gaussian_above=None`` samples every pixel exactly.
    The draw order is fixed, so a seed gives byte-identical output.
    """
    lam = np.asarray(expected, dtype=np.float64)
    if gaussian_above is None:
        return rng.poisson(lam).astype(np.float32)
    out = np.empty(lam.shape, dtype=np.float32)
    big = lam > gaussian_above
    n_big = int(big.sum())
    small_lam = lam[~big]
    out[~big] = rng.poisson(small_lam)
    if n_big:
        lam_big = lam[big]
        z = rng.standard_normal(n_big, dtype=np.float64)
        out[big] = np.maximum(np.rint(lam_big + np.sqrt(lam_big) * z), 0.0)
    return out


# --------------------------------------------------------------------------------------------
# Patch extraction and its adjoint (scatter)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Taps:
    rows: Tensor  # (..., N) int64, top row of each bilinear tap
    cols: Tensor  # (..., N) int64
    fy: Tensor    # (...,) fractional row offset in [0, 1)
    fx: Tensor    # (...,)


def _taps(xcoords: Tensor, ycoords: Tensor, patch_size: int) -> _Taps:
    x0 = xcoords.to(torch.float64) - patch_size // 2
    y0 = ycoords.to(torch.float64) - patch_size // 2
    ix = torch.floor(x0)
    iy = torch.floor(y0)
    ar = torch.arange(patch_size, device=xcoords.device)
    return _Taps(
        rows=iy.to(torch.int64)[..., None] + ar,
        cols=ix.to(torch.int64)[..., None] + ar,
        fy=(y0 - iy),
        fx=(x0 - ix),
    )


def _check_inside(taps: _Taps, height: int, width: int) -> None:
    # The +1 tap is only needed where its weight is non-zero.
    need_r = taps.rows[..., -1] + (taps.fy > 0).to(torch.int64)
    need_c = taps.cols[..., -1] + (taps.fx > 0).to(torch.int64)
    if bool((taps.rows[..., 0] < 0).any() or (taps.cols[..., 0] < 0).any()
            or (need_r > height - 1).any() or (need_c > width - 1).any()):
        raise ValueError(
            f"patch extends outside the {height}x{width} canvas; pad the canvas "
            "(see pad_canvas) or move the scan positions inward")


def _tap_weights(taps: _Taps, dtype: torch.dtype):
    fy = taps.fy.to(dtype)[..., None, None]
    fx = taps.fx.to(dtype)[..., None, None]
    return ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)), (1, 1, fy * fx))


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def extract_patches(canvas: Tensor, xcoords: Tensor, ycoords: Tensor, patch_size: int) -> Tensor:
    """Bilinear extraction of N x N patches centred at (x, y).

    canvas: (H, W) or (B, H, W); xcoords/ycoords: (P,) for a 2-D canvas, (B, C) for a batched one.
    Returns (P, N, N) or (B, C, N, N), same dtype as the canvas. Differentiable in the canvas.
    """
    batched = canvas.dim() == 3
    if not batched:
        canvas = canvas[None]
        xcoords, ycoords = xcoords[None], ycoords[None]
    b, h, w = canvas.shape
    taps = _taps(xcoords, ycoords, patch_size)
    _check_inside(taps, h, w)
    bidx = torch.arange(b, device=canvas.device).view(b, 1, 1, 1)
    out = None
    for dr, dc, wgt in _tap_weights(taps, _real_dtype(canvas.dtype)):
        rows = (taps.rows + dr).clamp(max=h - 1)[..., :, None]
        cols = (taps.cols + dc).clamp(max=w - 1)[..., None, :]
        term = canvas[bidx, rows, cols] * wgt
        out = term if out is None else out + term
    return out if batched else out[0]


def scatter_patches(patches: Tensor, xcoords: Tensor, ycoords: Tensor,
                    canvas_shape: tuple[int, int]) -> Tensor:
    """Adjoint of :func:`extract_patches`: add each patch into a zero canvas at its position.

    patches: (P, N, N) -> canvas (H, W); or (B, C, N, N) with coords (B, C) -> canvas (B, H, W).
    ``<extract(o), p> == <o, scatter(p)>`` holds exactly (tested).
    """
    batched = patches.dim() == 4
    if not batched:
        patches = patches[None]
        xcoords, ycoords = xcoords[None], ycoords[None]
    b, _, n, _ = patches.shape
    h, w = canvas_shape
    taps = _taps(xcoords, ycoords, n)
    _check_inside(taps, h, w)
    flat = torch.zeros(b * h * w, dtype=patches.dtype, device=patches.device)
    base = (torch.arange(b, device=patches.device) * (h * w)).view(b, 1, 1, 1)
    for dr, dc, wgt in _tap_weights(taps, _real_dtype(patches.dtype)):
        rows = (taps.rows + dr).clamp(max=h - 1)[..., :, None]
        cols = (taps.cols + dc).clamp(max=w - 1)[..., None, :]
        index = (base + rows * w + cols).reshape(-1)
        flat = flat.index_add(0, index, (patches * wgt).reshape(-1))
    out = flat.view(b, h, w)
    return out if batched else out[0]


def pad_canvas(image: Tensor, pad: int, value: float = 0.0) -> Tensor:
    """Pad the last two axes by ``pad`` pixels on every side (positions shift by ``+pad``)."""
    if pad == 0:
        return image
    h, w = image.shape[-2:]
    out = torch.full((*image.shape[:-2], h + 2 * pad, w + 2 * pad), value,
                     dtype=image.dtype, device=image.device)
    out[..., pad:pad + h, pad:pad + w] = image
    return out


def required_pad(patch_size: int) -> int:
    """Padding that lets a patch centred anywhere inside the image be extracted."""
    return patch_size // 2 + 1


def central_window(patch_size: int, window: int, dtype=torch.float32, device=None) -> Tensor:
    """(N, N) weights: 1 on the central ``window x window`` pixels, 0 elsewhere."""
    if not 1 <= window <= patch_size:
        raise ValueError(f"stitch window must be in [1, {patch_size}], got {window}")
    wmap = torch.zeros(patch_size, patch_size, dtype=dtype, device=device)
    start = patch_size // 2 - window // 2
    wmap[start:start + window, start:start + window] = 1
    return wmap


def max_abs_offset(dx: Tensor, dy: Tensor) -> float:
    return float(torch.max(torch.stack([dx.abs().max(), dy.abs().max()]))) if dx.numel() else 0.0


def group_canvas_size(patch_size: int, max_offset: float) -> int:
    """Side of the small per-group canvas that holds all patches of a group."""
    return patch_size + 2 * (int(math.ceil(max_offset)) + 1)
