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
    """|field|^2 = re^2 + im^2 as a real tensor (no square root, unlike abs().square(); one
    fused multiply-add instead of a reduction over a size-2 axis, several times faster)."""
    return torch.addcmul(field.real.square(), field.imag, field.imag)


def far_field_of_product(probe: Tensor, object_patches: Tensor) -> Tensor:
    """``far_field(probe * O_j)`` with the centring sign folded into the (N, N) probe, which saves
    one full pass over the (..., N, N) batch. Same convention as :func:`far_field` (tested)."""
    n, m = probe.shape[-2:]
    if n % 2 or m % 2:
        return far_field(probe * object_patches)
    return torch.fft.fft2(object_patches * (probe * _centring(n, m, probe.device)), norm="ortho")


def expected_counts(probe: Tensor, object_patches: Tensor) -> Tensor:
    """Expected photon counts per detector pixel, ``|far_field(probe * O_j)|^2``.

    probe: (N, N) complex in sqrt(photons) units (the physical, dose-scaled probe);
    object_patches: (..., N, N) complex, dimensionless transmission. Returns float (..., N, N).
    """
    return intensity(far_field_of_product(probe, object_patches))


# --------------------------------------------------------------------------------------------
# Patch extraction and its adjoint (scatter)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    """Bilinear extraction as one (N+1) x (N+1) block per patch followed by a separable
    interpolation along x and y. ix, iy: (...) int64 block corners (column, row) on the canvas;
    fx, fy: (...) fractional offsets in [0, 1)."""

    ix: Tensor
    iy: Tensor
    fx: Tensor
    fy: Tensor

    def flat_index(self, n: int, batch: int, height: int, width: int) -> Tensor:
        """(..., N+1, N+1) flat indices into the (B*H*W) canvas (for the scatter)."""
        ar = torch.arange(n + 1, device=self.ix.device)
        rows = (self.iy[..., None] + ar).clamp(max=height - 1)   # zero-weight taps may sit
        cols = (self.ix[..., None] + ar).clamp(max=width - 1)    # on the edge
        base = (torch.arange(batch, device=self.ix.device) * (height * width)).view(
            batch, *([1] * self.ix.dim()))       # broadcasts over (B, C, N+1)
        return (base + rows * width)[..., :, None] + cols[..., None, :]


def _block(xcoords: Tensor, ycoords: Tensor, n: int, height: int, width: int) -> _Block:
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
    return _Block(ix=ix, iy=iy, fx=fx, fy=fy)


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _extract_forward(canvas: Tensor, blk: _Block, n: int) -> Tensor:
    """canvas (B, H, W), block params (B, C) -> (B, C, N, N). The (N+1)^2 blocks are gathered
    from a strided window view (no index tensor), then two lerps interpolate in x and y."""
    b, h, w = canvas.shape
    # A block whose +1 tap would fall off the canvas has zero weight there: shift it back by one
    # and move its weight to 1 (identical values, and the window stays inside the view).
    ix, iy, fx, fy = blk.ix, blk.iy, blk.fx, blk.fy
    over_x, over_y = ix > w - n - 1, iy > h - n - 1
    ix, fx = torch.where(over_x, ix - 1, ix), torch.where(over_x, torch.ones_like(fx), fx)
    iy, fy = torch.where(over_y, iy - 1, iy), torch.where(over_y, torch.ones_like(fy), fy)
    windows = canvas.unfold(1, n + 1, 1).unfold(2, n + 1, 1)       # (B, H-N, W-N, N+1, N+1)
    bidx = torch.arange(b, device=canvas.device).view(b, *([1] * (ix.dim() - 1)))
    block = windows[bidx, iy, ix]                                   # (B, C, N+1, N+1)
    complex_input = block.is_complex()
    if complex_input:
        block = torch.view_as_real(block)                           # (..., N+1, N+1, 2)
    rdt = block.dtype
    tail = (1, 1, 1) if complex_input else (1, 1)
    wx = fx.to(rdt).reshape(*fx.shape, *tail)
    wy = fy.to(rdt).reshape(*fy.shape, *tail)
    along_x = torch.lerp(block[:, :, :, :-1], block[:, :, :, 1:], wx)   # (B, C, N+1, N[, 2])
    out = torch.lerp(along_x[:, :, :-1], along_x[:, :, 1:], wy)         # (B, C, N, N[, 2])
    return torch.view_as_complex(out) if complex_input else out


class _ExtractPatches(torch.autograd.Function):
    """Bilinear extraction whose backward is its exact adjoint, :func:`scatter_patches`."""

    @staticmethod
    def forward(ctx, canvas: Tensor, xcoords: Tensor, ycoords: Tensor, n: int) -> Tensor:
        blk = _block(xcoords, ycoords, n, canvas.shape[-2], canvas.shape[-1])
        ctx.save_for_backward(xcoords, ycoords)
        ctx.canvas_shape = tuple(canvas.shape[-2:])
        return _extract_forward(canvas, blk, n)

    @staticmethod
    def backward(ctx, grad: Tensor):
        xcoords, ycoords = ctx.saved_tensors
        # real bilinear weights: the adjoint of the complex-linear map is the same scatter
        return scatter_patches(grad, xcoords, ycoords, ctx.canvas_shape), None, None, None


def extract_patches(canvas: Tensor, xcoords: Tensor, ycoords: Tensor, patch_size: int) -> Tensor:
    """Bilinear extraction of N x N patches centred at (x, y).

    canvas: (H, W) or (B, H, W); xcoords/ycoords: (P,) for a 2-D canvas, (B, C) for a batched one.
    Returns (P, N, N) or (B, C, N, N), same dtype as the canvas. Differentiable in the canvas
    (the gradient is :func:`scatter_patches`, the exact adjoint). Integer positions reduce exactly
    to slicing.
    """
    batched = canvas.dim() == 3
    if not batched:
        canvas = canvas[None]
        xcoords, ycoords = xcoords[None], ycoords[None]
    out = _ExtractPatches.apply(canvas, xcoords, ycoords, patch_size)
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
    blk = _block(xcoords, ycoords, n, h, w)
    rdt = _real_dtype(patches.dtype)
    fx, fy = blk.fx.to(rdt)[..., None, None], blk.fy.to(rdt)[..., None, None]
    zero_row = torch.zeros_like(patches[..., :1, :])
    along_x = (torch.cat([patches * (1 - fy), zero_row], dim=-2)
               + torch.cat([zero_row, patches * fy], dim=-2))              # (..., N+1, N)
    zero_col = torch.zeros_like(along_x[..., :, :1])
    block = (torch.cat([along_x * (1 - fx), zero_col], dim=-1)
             + torch.cat([zero_col, along_x * fx], dim=-1))                # (..., N+1, N+1)
    flat = torch.zeros(b * h * w, dtype=patches.dtype, device=patches.device)
    flat = flat.index_add(0, blk.flat_index(n, b, h, w).reshape(-1), block.reshape(-1))
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
