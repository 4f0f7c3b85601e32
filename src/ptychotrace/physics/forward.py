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
def _centring(n: int, m: int, device) -> Tensor:
    """(-1)^(row+col): for even sizes ``fftshift(fft2(x)) == fft2(x * centring)`` and
    ``ifft2(ifftshift(F)) == ifft2(F) * centring``; a multiply is cheaper than two rolls."""
    r = torch.arange(n, device=device)[:, None]
    c = torch.arange(m, device=device)[None, :]
    return 1.0 - 2.0 * ((r + c) % 2).to(torch.float32)


def far_field(exit_wave: Tensor) -> Tensor:
    """Exit wave (..., N, N) complex -> far field (..., N, N) complex, DC at the centre pixel.

    ``fftshift(fft2(psi, norm="ortho"))``: summed |far field|^2 equals summed |exit wave|^2.
    """
    n, m = exit_wave.shape[-2:]
    if n % 2 or m % 2:
        return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))
    return torch.fft.fft2(exit_wave * _centring(n, m, exit_wave.device), norm="ortho")


def inverse_far_field(field: Tensor) -> Tensor:
    """Exact inverse of :func:`far_field` (and its adjoint, since the transform is unitary)."""
    n, m = field.shape[-2:]
    if n % 2 or m % 2:
        return torch.fft.ifft2(torch.fft.ifftshift(field, dim=(-2, -1)), norm="ortho")
    return torch.fft.ifft2(field, norm="ortho") * _centring(n, m, field.device)


def intensity(field: Tensor) -> Tensor:
    """|field|^2 as a real tensor (cheaper and better conditioned than abs().square())."""
    return torch.view_as_real(field).square().sum(-1)


def expected_counts(probe: Tensor, object_patches: Tensor) -> Tensor:
    """Expected photon counts per detector pixel, ``|far_field(probe * O_j)|^2``.

    probe: (N, N) complex in sqrt(photons) units (the physical, dose-scaled probe);
    object_patches: (..., N, N) complex, dimensionless transmission. Returns float (..., N, N).
    """
    return intensity(far_field(probe * object_patches))


def sample_poisson(expected: np.ndarray, seed: int | torch.Generator,
                   gaussian_above: float | None = 1.0e4) -> np.ndarray:
    """Draw photon counts ~ Poisson(expected) as a float32 NumPy array.

    Pixels with expected count above ``gaussian_above`` use the normal approximation
    ``round(lam + sqrt(lam) * z)`` (clipped at 0): at lam >= 1e4 its skewness is 1% of one
    standard deviation, and it is several times cheaper than exact sampling, which otherwise
    dominates simulation time at high dose. ``gaussian_above=None`` samples every pixel exactly.
    ``seed`` is an int or a torch.Generator; the draw order is fixed, so a seed gives
    byte-identical output.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    lam = torch.as_tensor(np.asarray(expected, dtype=np.float32))
    if gaussian_above is None:
        return torch.poisson(lam, generator=gen).numpy()
    out = torch.randn(lam.shape, generator=gen, dtype=torch.float32)
    out.mul_(lam.sqrt()).add_(lam).round_().clamp_min_(0.0)
    small = lam <= gaussian_above
    if bool(small.any()):
        out[small] = torch.poisson(lam[small], generator=gen)
    return out.numpy()


# --------------------------------------------------------------------------------------------
# Patch extraction and its adjoint (scatter)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    """Bilinear extraction as a gather of one (N+1) x (N+1) block per patch, then a separable
    interpolation along x and y. index: (..., N+1, N+1) flat canvas indices; fx, fy: (...)
    fractional offsets in [0, 1)."""

    index: Tensor
    fx: Tensor
    fy: Tensor


def _block(xcoords: Tensor, ycoords: Tensor, n: int, batch: int, height: int, width: int) -> _Block:
    x0 = xcoords.to(torch.float64) - n // 2
    y0 = ycoords.to(torch.float64) - n // 2
    ix, iy = torch.floor(x0), torch.floor(y0)
    fx, fy = x0 - ix, y0 - iy
    ix, iy = ix.to(torch.int64), iy.to(torch.int64)
    # The +1 row/column is only needed where its weight is non-zero.
    if bool((ix < 0).any() or (iy < 0).any()
            or (iy + n - 1 + (fy > 0).to(torch.int64) > height - 1).any()
            or (ix + n - 1 + (fx > 0).to(torch.int64) > width - 1).any()):
        raise ValueError(f"patch extends outside the {height}x{width} canvas; pad the canvas "
                         "(see pad_canvas) or move the scan positions inward")
    ar = torch.arange(n + 1, device=xcoords.device)
    rows = (iy[..., None] + ar).clamp(max=height - 1)     # zero-weight taps may sit on the edge
    cols = (ix[..., None] + ar).clamp(max=width - 1)
    base = (torch.arange(batch, device=xcoords.device) * (height * width)).view(
        batch, *([1] * xcoords.dim()))   # broadcasts over (..., N+1)
    index = (base + rows * width)[..., :, None] + cols[..., None, :]
    return _Block(index=index, fx=fx, fy=fy)


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _weights(f: Tensor, dtype: torch.dtype) -> Tensor:
    return f.to(dtype)[..., None, None]


def extract_patches(canvas: Tensor, xcoords: Tensor, ycoords: Tensor, patch_size: int) -> Tensor:
    """Bilinear extraction of N x N patches centred at (x, y).

    canvas: (H, W) or (B, H, W); xcoords/ycoords: (P,) for a 2-D canvas, (B, C) for a batched one.
    Returns (P, N, N) or (B, C, N, N), same dtype as the canvas. Differentiable in the canvas.
    Integer positions reduce exactly to slicing.
    """
    batched = canvas.dim() == 3
    if not batched:
        canvas = canvas[None]
        xcoords, ycoords = xcoords[None], ycoords[None]
    b, h, w = canvas.shape
    n = patch_size
    blk = _block(xcoords, ycoords, n, b, h, w)
    rdt = _real_dtype(canvas.dtype)
    block = canvas.reshape(-1)[blk.index.reshape(-1)].view(*blk.index.shape)
    fx, fy = _weights(blk.fx, rdt), _weights(blk.fy, rdt)
    along_x = block[..., :, :-1] * (1 - fx) + block[..., :, 1:] * fx       # (..., N+1, N)
    out = along_x[..., :-1, :] * (1 - fy) + along_x[..., 1:, :] * fy      # (..., N, N)
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
    b, n = patches.shape[0], patches.shape[-1]
    h, w = canvas_shape
    blk = _block(xcoords, ycoords, n, b, h, w)
    rdt = _real_dtype(patches.dtype)
    fx, fy = _weights(blk.fx, rdt), _weights(blk.fy, rdt)
    zero_row = torch.zeros_like(patches[..., :1, :])
    along_x = (torch.cat([patches * (1 - fy), zero_row], dim=-2)
               + torch.cat([zero_row, patches * fy], dim=-2))              # (..., N+1, N)
    zero_col = torch.zeros_like(along_x[..., :, :1])
    block = (torch.cat([along_x * (1 - fx), zero_col], dim=-1)
             + torch.cat([zero_col, along_x * fx], dim=-1))                # (..., N+1, N+1)
    flat = torch.zeros(b * h * w, dtype=patches.dtype, device=patches.device)
    flat = flat.index_add(0, blk.index.reshape(-1), block.reshape(-1))
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
