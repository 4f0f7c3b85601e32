"""Probes: the ideal disk, a modelled focused (zone-plate-like) probe, NPZ probes, normalisation.

Units: a probe returned here is dimensionless (unit-free shape). The *physical* probe used by the
forward model is ``dose_scale * normalised_probe`` in sqrt(photons) per pixel (see scaling.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal.windows import gaussian

from .forward import inverse_far_field, to_tensor

#: probe_scale defaults by probe mode (physics spec, section 4).
DEFAULT_PROBE_SCALE = {"ideal": 10.0, "custom": 4.0}


def ideal_probe(n: int) -> np.ndarray:
    """Real disk probe (N, N) complex64: thresholded Gaussian window (std N/(0.7*pi^2)) at half
    peak, blurred with sigma 1 px, plus 1e-9. Radius ~10.9 px at N=64."""
    g = gaussian(n, n / (0.7 * np.pi**2))
    window = np.outer(g, g)
    disk = (window > 0.5 * window.max()).astype(np.float64)
    return (gaussian_filter(disk, 1.0) + 1e-9).astype(np.complex64)


def focused_probe(n: int, defocus_waves: float = 1.5, astigmatism_waves: float = 0.25,
                  coma_waves: float = 0.1, central_stop: float = 0.3) -> np.ndarray:
    """Experiment-like complex probe (N, N) complex64: a zone-plate focus seen out of focus.

    Model: a circular pupil of radius N/5 frequency pixels with a central stop (fraction of the
    pupil radius, as a zone plate's beam stop), an aberration phase
    ``2*pi*(W20*rho^2 + W22*rho^2*cos(2*theta) + W31*(3*rho^3 - 2*rho)*cos(theta))`` (defocus,
    astigmatism, coma in waves at the pupil edge) and a soft pupil edge. The probe is the inverse
    far field of that pupil: ringed structure, asymmetric, with real phase curvature.
    """
    k = (np.arange(n) - n // 2).astype(np.float64)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    pupil_radius = n / 5
    rho = np.hypot(kx, ky) / pupil_radius
    theta = np.arctan2(ky, kx)
    edge = 0.5 * (1 - np.tanh((rho - 1.0) / 0.05))
    stop = 0.5 * (1 + np.tanh((rho - central_stop) / 0.05))
    aberration = (defocus_waves * rho**2 + astigmatism_waves * rho**2 * np.cos(2 * theta)
                  + coma_waves * (3 * rho**3 - 2 * rho) * np.cos(theta))
    pupil = edge * stop * np.exp(2j * np.pi * aberration)
    # inverse_far_field puts the optical axis at pixel (0, 0); shift it to the patch centre.
    probe = np.fft.fftshift(inverse_far_field(to_tensor(pupil.astype(np.complex128))).numpy())
    return probe.astype(np.complex64)


def load_probe_npz(path: str | Path, n: int | None = None) -> np.ndarray:
    """Read ``probeGuess`` (N, N complex) from an NPZ file, refusing pickled content."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "probeGuess" not in z.files:
                raise ValueError(f"{path}: no 'probeGuess' array (keys: {sorted(z.files)})")
            probe = z["probeGuess"]
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read probe: {exc}") from exc
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"{path}: probeGuess must be square 2-D, got shape {probe.shape}")
    if n is not None and probe.shape[0] != n:
        raise ValueError(f"{path}: probeGuess is {probe.shape[0]}x{probe.shape[1]} but N={n}")
    if not np.all(np.isfinite(probe)):
        raise ValueError(f"{path}: probeGuess contains NaN or Inf")
    return probe.astype(np.complex64)


def disk_mask(n: int, radius: float | None = None) -> np.ndarray:
    """Boolean disk of radius N//4 (default) centred on pixel (N//2, N//2)."""
    radius = n // 4 if radius is None else radius
    k = np.arange(n) - n // 2
    return np.hypot(*np.meshgrid(k, k, indexing="ij")) <= radius


@dataclass(frozen=True)
class NormalisedProbe:
    probe: np.ndarray          # (N, N) complex64, dimensionless
    norm_factor: float         # probe_scale * mean(|M * P|)
    probe_scale: float
    mask_coverage: float       # fraction of pixels inside the N//4 disk mask


def normalise_probe(probe: np.ndarray, probe_scale: float, use_mask: bool = True) -> NormalisedProbe:
    """``P0 = P / (probe_scale * mean(|M * P|))``, the mean over all N x N pixels. Apply once.

    ``use_mask=False`` uses M = 1 everywhere (recorded by the caller)."""
    if probe_scale <= 0:
        raise ValueError(f"probe_scale must be > 0, got {probe_scale}")
    n = probe.shape[0]
    mask = disk_mask(n) if use_mask else np.ones((n, n), dtype=bool)
    factor = float(probe_scale * np.mean(np.abs(probe.astype(np.complex128)) * mask))
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError("probe has no amplitude inside the normalisation mask")
    return NormalisedProbe(probe=(probe / factor).astype(np.complex64), norm_factor=factor,
                           probe_scale=float(probe_scale), mask_coverage=float(mask.mean()))


def amplitude_stats(probe: np.ndarray) -> dict:
    """min/max/mean/std/l2_norm of |P| and the energy sum|P|^2 (float64)."""
    a = np.abs(probe.astype(np.complex128))
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()),
            "std": float(a.std()), "l2_norm": float(np.sqrt((a**2).sum())),
            "energy": float((a**2).sum())}


def probe_fingerprint(probe: np.ndarray) -> str:
    """``sha256:<hex>`` of the probe's complex64 C-order bytes (identifies a physical probe
    exactly; compatibility between probes is judged by a distance, not by this hash)."""
    import hashlib

    data = np.ascontiguousarray(probe, dtype=np.complex64)
    return "sha256:" + hashlib.sha256(data.tobytes()).hexdigest()
