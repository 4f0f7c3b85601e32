"""Optional adapter: reconstruct with CDTools (``pip install 'ptychotrace[baseline]'``, which pulls
``cdtools-py``) under ptychotrace's known probe and positions.

Use it as an independent cross-check of the native solver, not as the default (see
docs/baseline.md): CDTools is an automatic-differentiation code with its own conventions, which
the adapter maps as follows.

- Geometry: CDTools works in metres through a detector basis, a wavelength and a distance. The
  adapter fakes a geometry in which one object pixel is one "metre": detector basis
  ``[[0, 1], [1, 0], [0, 0]]`` (rows x, y, z; columns detector i, j), wavelength 1, distance N, so
  the exit-wave basis maps pixel (i, j) to (x = j, y = i), and a translation ``(x - N//2,
  y - N//2, 0)`` puts the probe's top-left corner where ptychotrace's patch starts.
- Object frame: CDTools' canvas starts at ``min_translation`` (pixels); the adapter rounds it to an
  integer so that canvas pixel (r, c) is object pixel ``(r + m_y, c + m_x)`` exactly, and crops
  back to the (H, W) object frame.
- Forward model: CDTools' far field is ``fftshift(fft2(ifftshift(psi), norm="ortho"))``, which has
  the same intensities as ours; its sub-pixel model shifts the *probe* by a Fourier phase ramp
  (``ptycho_2D_sinc``) instead of interpolating the object bilinearly, so it cannot fit data
  simulated by ptychotrace exactly at sub-pixel positions (a small model mismatch).
- Everything except the object is frozen: the probe is set to the dataset's physical probe
  (divided by CDTools' ``probe_norm``, which multiplies it back), and the probe, background,
  per-pattern weights and translation offsets have ``requires_grad`` off.
- Optimiser: CDTools' Adam (``Adam_optimize``) with minibatches of ``CDTOOLS_BATCH_SIZE`` and
  learning rate ``CDTOOLS_LR``; the loss is ``amplitude mse`` or ``poisson nll``.
- No photon hold-out: the run is a fixed number of epochs and the last iterate is returned.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..data.dataset import Dataset
from ..physics.forward import required_pad
from ..physics.stitching import ILLUMINATED_FRACTION, illumination_map
from .result import BaselineResult, Progress, check_likelihood, converged_at, coverage_mask

#: Requirement string of the optional extra.
CDTOOLS_REQUIREMENT = "cdtools-py>=0.3.2,<0.4"
CDTOOLS_LR = 0.05
CDTOOLS_BATCH_SIZE = 16
#: Object padding (pixels) around the scanned region on CDTools' canvas.
CDTOOLS_PADDING = 2


def cdtools_available() -> bool:
    try:
        import cdtools  # noqa: F401
    except ImportError:
        return False
    return True


def _import_cdtools():
    try:
        import cdtools
    except ImportError as exc:
        raise ImportError("algorithm 'cdtools' needs the optional extra: pip install "
                          f"'ptychotrace[baseline]' (or '{CDTOOLS_REQUIREMENT}' beside "
                          "torch==2.13.0)") from exc
    return cdtools


def reconstruct_cdtools(ds: Dataset, idx: np.ndarray, object_shape: tuple[int, int], *,
                        split: str, iterations: int, seed: int = 0,
                        progress: Progress | None = None, likelihood: str = "amplitude",
                        window: int = 20, lr: float = CDTOOLS_LR,
                        batch_size: int = CDTOOLS_BATCH_SIZE) -> BaselineResult:
    """Object-only CDTools FancyPtycho reconstruction of the patterns ``idx``."""
    cdtools = _import_cdtools()
    lik = check_likelihood(likelihood)
    n = ds.patch_size
    h, w = object_shape
    xs = ds.xcoords[idx].astype(np.float64)
    ys = ds.ycoords[idx].astype(np.float64)
    translations = np.stack([xs - n // 2, ys - n // 2, np.zeros_like(xs)], axis=1)
    det_basis = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])

    t0 = time.perf_counter()
    torch.manual_seed(int(seed))
    counts = torch.from_numpy(np.ascontiguousarray(ds.counts[idx], dtype=np.float32))
    cds = cdtools.datasets.Ptycho2DDataset(
        translations, counts, wavelength=1.0,
        detector_geometry={"distance": float(n), "basis": det_basis})
    loss = "amplitude mse" if lik == "amplitude" else "poisson nll"
    model = cdtools.models.FancyPtycho.from_dataset(cds, loss=loss, obj_padding=CDTOOLS_PADDING)

    # Integer canvas origin: canvas pixel (r, c) <-> object pixel (r + my, c + mx).
    my = int(math.floor(ys.min() - n // 2)) - CDTOOLS_PADDING
    mx = int(math.floor(xs.min() - n // 2)) - CDTOOLS_PADDING
    rows = int(math.ceil(ys.max() - n // 2)) - my + n + CDTOOLS_PADDING + 1
    cols = int(math.ceil(xs.max() - n // 2)) - mx + n + CDTOOLS_PADDING + 1
    with torch.no_grad():
        model.min_translation.copy_(torch.tensor([my, mx], dtype=model.min_translation.dtype))
        model.obj = torch.nn.Parameter(torch.ones((rows, cols), dtype=model.obj.dtype))
        probe = torch.as_tensor(np.asarray(ds.probe, dtype=np.complex64))
        model.probe.data[...] = (probe / model.probe_norm).to(model.probe.dtype)[None]
    for name, param in model.named_parameters():
        param.requires_grad_(name == "obj")

    costs: list[float] = []
    for k, loss_value in enumerate(model.Adam_optimize(iterations, cds, batch_size=batch_size,
                                                       lr=lr, thread=False)):
        costs.append(float(loss_value))
        if progress:
            progress(k + 1, iterations)
    wall = time.perf_counter() - t0

    canvas = model.obj.detach().to(torch.complex64)
    frame = torch.zeros((h, w), dtype=torch.complex64)
    r0, c0 = max(my, 0), max(mx, 0)
    r1, c1 = min(my + rows, h), min(mx + cols, w)
    if r1 > r0 and c1 > c0:
        frame[r0:r1, c0:c1] = canvas[r0 - my:r1 - my, c0 - mx:c1 - mx]
    pad = required_pad(n)
    illum_canvas = illumination_map(torch.from_numpy(np.asarray(ds.probe, dtype=np.complex64)),
                                    torch.from_numpy(xs + pad), torch.from_numpy(ys + pad),
                                    (h + 2 * pad, w + 2 * pad))
    illum = illum_canvas[pad:pad + h, pad:pad + w]
    illuminated = illum >= ILLUMINATED_FRACTION * float(illum_canvas.max())
    frame = torch.where(illuminated, frame, torch.zeros((), dtype=frame.dtype))
    window = min(int(window), n)
    params = {"seed": int(seed), "window": window, "lr": lr, "batch_size": batch_size,
              "loss": loss, "cdtools_version": getattr(cdtools, "__version__", None),
              "canvas_origin_yx": [my, mx], "holdout": 0.0,
              "holdout_note": "not supported by the CDTools adapter",
              "torch_threads": torch.get_num_threads()}
    return BaselineResult(
        obj=frame.numpy().astype(np.complex64), covered=coverage_mask(ds, idx, object_shape, window),
        illumination=illum.numpy().astype(np.float32), illuminated=illuminated.numpy(),
        cost_history=costs, algorithm="cdtools", likelihood=lik, split=split, indices=idx,
        iterations=len(costs), best_iteration=len(costs), converged_iteration=converged_at(costs),
        wall_time_s=wall, stop_reason="iterations", params=params)
