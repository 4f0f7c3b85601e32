"""Training losses, each normalised by a FROZEN training-set statistic so that it is O(1) at any dose.

Poisson term (per pattern, summed over pixels):

    nll_j = sum_k [ lam_k - I_k log lam_k ] - sum_k [ I_k - I_k log I_k ]      (lam clamped >= 1e-8)

i.e. the Poisson negative log-likelihood minus its saturated value (the constant that a perfect
fit would reach; half the Poisson deviance). Subtracting it changes no gradient but makes the
number readable: it is >= 0 and ~ N_pixels/2 photons at the noise floor. It is evaluated in the
algebraically equal, cancellation-free form ``(lam - I) - I*log1p((lam - I)/I)`` in float64 (float32
on MPS), then divided by ``mean_counts``, the training split's mean summed counts per pattern.
At 1e9 photons the raw NLL is ~1e9; the normalised loss starts O(1) and ends ~1e-6.

MAE term: ``sum_k |sqrt(lam_k) - sqrt(I_k)|`` per pattern divided by the training split's mean
summed amplitude per pattern (``mean_amplitude_sum``, the amplitude-domain analogue of
``mean_counts``, so it is O(1) too). Realspace term (needs labels): mean |amp - Y_amp| (object
units) + mean |wrap(phase - Y_phi)| (radians). Weights come from ``training.loss_weights``.
All three are returned (and recorded) whatever their weight.

Detector masks: ``valid`` (bool, broadcastable to the counts, True = measured pixel) excludes bad
pixels from the Poisson and MAE sums (never zero-filled or inpainted): the count at a masked pixel
is replaced by a harmless value before any arithmetic and its term is dropped, so neither the loss
nor its gradient depends on what the file holds there (NaN included). The normaliser statistics take
the same mask. ``valid=None`` means every pixel is valid (bit-identical to the unmasked code path).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..config import LossWeights

LAM_MIN = 1e-8


@dataclass(frozen=True)
class LossNormaliser:
    """Frozen training-set statistics (in the contract's target units)."""

    mean_counts: float           # mean_j sum_k I_jk
    mean_amplitude_sum: float    # mean_j sum_k sqrt(I_jk)
    derived_from: str = "train"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_counts(cls, counts: np.ndarray, target_factor: float = 1.0,
                    valid: np.ndarray | None = None) -> LossNormaliser:
        """``valid``: optional (N, N) bool detector mask, True = measured (masked pixels ignored)."""
        c = np.asarray(counts).reshape(-1, counts.shape[-2] * counts.shape[-1]).astype(np.float64)
        if valid is not None:
            c = np.where(np.asarray(valid, dtype=bool).reshape(1, -1), c, 0.0)
        c = c * target_factor
        mc = float(c.sum(axis=1).mean())
        ma = float(np.sqrt(c).sum(axis=1).mean())
        if not (np.isfinite(mc) and mc > 0):
            raise ValueError(f"training counts give a non-positive/non-finite mean ({mc}); "
                             "cannot normalise the Poisson loss")
        return cls(mean_counts=mc, mean_amplitude_sum=ma)


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.device.type == "mps" else torch.float64


def _masked(i: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Counts with masked pixels set to 0 (their terms are dropped afterwards)."""
    if valid is None:
        return i
    return torch.where(valid.to(device=i.device, dtype=torch.bool), i, torch.zeros_like(i))


def _drop(term: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return term
    return torch.where(valid.to(device=term.device, dtype=torch.bool), term, torch.zeros_like(term))


def poisson_nll(lam: torch.Tensor, counts: torch.Tensor, mean_counts: float,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pattern normalised Poisson NLL minus its saturated value, shape lam.shape[:-2].

    ``valid``: optional bool mask broadcastable to ``counts`` (True = measured pixel)."""
    dt = _work_dtype(lam)
    lam = lam.to(dt).clamp_min(LAM_MIN)
    i = _masked(counts.to(dt), valid)
    pos = i > 0
    safe_i = torch.where(pos, i, torch.ones_like(i))
    diff = lam - i
    term = diff - torch.where(pos, i * torch.log1p(diff / safe_i), torch.zeros_like(i))
    return _drop(term, valid).sum(dim=(-2, -1)) / mean_counts


def amplitude_mae(lam: torch.Tensor, counts: torch.Tensor, mean_amplitude_sum: float,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    dt = _work_dtype(lam)
    a = lam.to(dt).clamp_min(LAM_MIN).sqrt()
    b = _masked(counts.to(dt), valid).clamp_min(0).sqrt()
    return _drop((a - b).abs(), valid).sum(dim=(-2, -1)) / mean_amplitude_sum


def realspace_error(amp: torch.Tensor, phase: torch.Tensor, y_amp: torch.Tensor,
                    y_phi: torch.Tensor) -> torch.Tensor:
    d_phi = torch.remainder(phase - y_phi + torch.pi, 2 * torch.pi) - torch.pi
    return (amp - y_amp).abs().mean(dim=(-2, -1)) + d_phi.abs().mean(dim=(-2, -1))


def compute_losses(out, counts: torch.Tensor, norm: LossNormaliser, weights: LossWeights,
                   y_amp: torch.Tensor | None = None, y_phi: torch.Tensor | None = None,
                   valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Batch losses (means over patterns). ``out`` is a PINNOutput, ``counts`` the contract's
    targets, ``valid`` an optional bool detector mask broadcastable to them (True = measured).
    Returns {'loss', 'nll', 'mae', 'realspace'} scalars; 'loss' is the weighted sum."""
    nll = poisson_nll(out.lam, counts, norm.mean_counts, valid).mean()
    mae = amplitude_mae(out.lam, counts, norm.mean_amplitude_sum, valid).mean()
    total = weights.nll * nll + weights.mae * mae
    if y_amp is not None and y_phi is not None:
        rs = realspace_error(out.amplitude, out.phase, y_amp, y_phi).mean().to(nll.dtype)
    else:
        if weights.realspace > 0:
            raise ValueError("loss_weights.realspace > 0 needs ground-truth labels (Y_amp, Y_phi)")
        rs = torch.zeros((), dtype=nll.dtype, device=nll.device)
    if weights.realspace > 0:
        total = total + weights.realspace * rs
    return {"loss": total, "nll": nll, "mae": mae, "realspace": rs}
