"""The one stitcher: weighted shift-and-sum of patches divided by the summed weights.

Used for (a) the per-group merge inside the PINN (window = whole patch, small canvas per group),
(b) stitching predictions for inference and evaluation (window = central M x M, object canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .forward import (
    Tensor,
    central_window,
    extract_patches,
    group_canvas_size,
    max_abs_offset,
    required_pad,
    scatter_patches,
)

#: Summed window weight from which a pixel counts as covered for evaluation (half a patch pixel).
COVERAGE_MIN_WEIGHT = 0.5
#: Below this summed weight a pixel gets no value at all. Numerator and denominator carry the same
#: weights, so the quotient is a convex combination of patch values and cannot explode above it.
DEFINED_MIN_WEIGHT = 1e-6


#: Fraction of the maximum summed probe intensity from which a pixel counts as illuminated.
ILLUMINATED_FRACTION = 1e-2


@dataclass(frozen=True)
class Stitched:
    """A stitched image in the object frame.

    image: (H, W) (or (B, H, W)) overlap-averaged values, 0 where no patch reaches;
    weight: summed window weights per pixel (dimensionless, 1 = one full patch contribution);
    covered: boolean mask ``weight >= COVERAGE_MIN_WEIGHT``.
    """

    image: Tensor
    weight: Tensor
    covered: Tensor

    @property
    def coverage_fraction(self) -> float:
        return float(self.covered.to(torch.float64).mean())


def overlap_average(patches: Tensor, xcoords: Tensor, ycoords: Tensor,
                    canvas_shape: tuple[int, int], window: Tensor) -> Stitched:
    """``scatter(window * patches) / scatter(window)`` where the denominator is confined.

    patches (P, N, N) with coords (P,), or (B, C, N, N) with coords (B, C) (one canvas per group,
    groups never mix). window (N, N) real weights.
    """
    num = scatter_patches(patches * window, xcoords, ycoords, canvas_shape)
    ones = window.expand(patches.shape).to(window.dtype)
    den = scatter_patches(ones, xcoords, ycoords, canvas_shape)
    covered = den >= COVERAGE_MIN_WEIGHT
    defined = den > DEFINED_MIN_WEIGHT
    safe = torch.where(defined, den, torch.ones_like(den))
    image = torch.where(defined, num / safe, torch.zeros_like(num))
    return Stitched(image=image, weight=den, covered=covered)


def stitch_to_object_frame(patches: Tensor, xcoords: Tensor, ycoords: Tensor,
                           object_shape: tuple[int, int], window_size: int,
                           weights: Tensor | None = None) -> Stitched:
    """Stitch predicted patches (P, N, N) into the (H, W) object frame using their central
    ``window_size`` x ``window_size`` pixels. Positions are object-pixel patch centres; patches may
    extend past the object edge (the canvas is padded internally and cropped back).

    weights: optional (N, N) non-negative per-pixel weights inside the window (e.g.
    :func:`ptychotrace.infer.stitch_weights.consistency_weights`); the image is then the weighted
    average, while ``weight`` and ``covered`` stay those of the uniform window, so the evaluated
    region does not depend on the weights."""
    n = patches.shape[-1]
    pad = required_pad(n)
    h, w = object_shape
    window = central_window(n, window_size, dtype=patches.real.dtype if patches.is_complex()
                            else patches.dtype, device=patches.device)
    canvas = (h + 2 * pad, w + 2 * pad)
    if weights is None:
        st = overlap_average(patches, xcoords + pad, ycoords + pad, canvas, window)
    else:
        if weights.shape != window.shape or bool((weights < 0).any()):
            raise ValueError(f"stitch weights must be a non-negative {tuple(window.shape)} map, "
                             f"got shape {tuple(weights.shape)}")
        wt = window * weights.to(device=window.device, dtype=window.dtype)
        image = overlap_average(patches, xcoords + pad, ycoords + pad, canvas, wt).image
        # coverage from the uniform window's summed weights, as without weights
        den = scatter_patches(window.expand(patches.shape).to(window.dtype), xcoords + pad,
                              ycoords + pad, canvas)
        st = Stitched(image=image, weight=den, covered=den >= COVERAGE_MIN_WEIGHT)
    crop = (slice(pad, pad + h), slice(pad, pad + w))
    return Stitched(image=st.image[..., crop[0], crop[1]], weight=st.weight[..., crop[0], crop[1]],
                    covered=st.covered[..., crop[0], crop[1]])


def merge_group(patches: Tensor, dx: Tensor, dy: Tensor,
                support: int | None = None) -> tuple[Tensor, Tensor]:
    """Per-group merge and re-extraction used by the PINN for gridsize > 1.

    patches: (B, C, N, N) predicted object patches; dx, dy: (B, C) offsets of each pattern from its
    group centre, in pixels. Each group gets its own small canvas (groups never mix), patches are
    averaged where they overlap, then every pattern's patch is re-extracted from its group canvas.
    ``support``: the side of the central square each patch defines (the network's central object
    support, N/2); the average then weights every patch by that window, so a patch's zeros outside
    its support never enter the merge. None: the whole patch.
    Returns (re-extracted patches (B, C, N, N), merged canvases (B, S, S)).
    """
    n = patches.shape[-1]
    size = group_canvas_size(n, max_abs_offset(dx, dy))
    centre = size // 2
    xs, ys = dx + centre, dy + centre
    dtype = patches.real.dtype if patches.is_complex() else patches.dtype
    window = (torch.ones(n, n, dtype=dtype, device=patches.device) if support is None else
              central_window(n, support, dtype=dtype, device=patches.device))
    merged = overlap_average(patches, xs, ys, (size, size), window).image
    return extract_patches(merged, xs, ys, n), merged


def illumination_map(probe: Tensor, xs: Tensor, ys: Tensor, canvas_shape: tuple[int, int]) -> Tensor:
    """``scatter(|P|^2)`` over the positions: summed probe intensity per canvas pixel (photons for
    a physical probe). Positions are canvas coordinates."""
    p2 = (probe.real.square() + probe.imag.square()) if probe.is_complex() else probe.square()
    p2 = p2.to(torch.float32)
    return scatter_patches(p2.expand(len(xs), *p2.shape), xs, ys, canvas_shape)


def illuminated_in_object_frame(probe: Tensor, xcoords: Tensor, ycoords: Tensor,
                                object_shape: tuple[int, int]) -> Tensor:
    """(H, W) bool: pixels whose summed probe intensity over the scan is at least
    ``ILLUMINATED_FRACTION`` of its maximum. Outside them the data do not constrain the object,
    so evaluation uses ``stitched.covered & illuminated`` (the evaluation region)."""
    n = probe.shape[-1]
    pad = required_pad(n)
    h, w = object_shape
    illum = illumination_map(probe, xcoords.to(torch.float64) + pad, ycoords.to(torch.float64) + pad,
                             (h + 2 * pad, w + 2 * pad))[pad:pad + h, pad:pad + w]
    return illum >= ILLUMINATED_FRACTION * float(illum.max())
