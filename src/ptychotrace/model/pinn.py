"""The physics-informed model: network -> object patches -> (group merge) -> probe -> counts.

``lam = expected_counts(probe, O)`` is the simulator's own function (physics/forward.py), so the
model's expected counts agree with the simulation to float rounding (tested). For gridsize > 1 the
C predicted patches of a group are merged on a per-group canvas and re-extracted
(``physics.stitching.merge_group``) before the physics; groups never mix.

Measurement contracts (config ``training.contract``):
- ``counts`` (default): the probe is the physical probe in sqrt(photons), Poisson targets are raw
  counts. The recovered object is in object units; nothing is rescaled.
- ``legacy_v1``: PtychoPINN's normalised-amplitude convention. The physics runs on the normalised
  probe ``P0 = P / s`` and targets ``I / s^2`` (= ``(s*X)^2/s^2`` with ``X = sqrt(I)/s``), where s is
  the dataset's dose scale (required). The Poisson optimum is the same object; what changes is
  the unit of the loss, which the frozen normaliser makes O(1) in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import MeasurementContract
from ..physics.forward import expected_counts, to_tensor
from ..physics.stitching import merge_group
from .network import NetworkConfig, PtychoNet


@dataclass
class PINNOutput:
    amplitude: torch.Tensor     # (B, C, N, N) network amplitude (object units)
    phase: torch.Tensor         # (B, C, N, N) radians
    obj: torch.Tensor           # (B, C, N, N) complex patches the physics saw (merged for g > 1)
    lam: torch.Tensor           # (B, C, N, N) expected counts in the contract's target units


def contract_factors(contract: MeasurementContract | str, dose_scale: float | None) -> tuple[float, float]:
    """(probe factor, target factor) that map (physical probe, counts) into the contract's units."""
    contract = MeasurementContract(contract)
    if contract == MeasurementContract.counts:
        return 1.0, 1.0
    if dose_scale is None or not np.isfinite(dose_scale) or dose_scale <= 0:
        raise ValueError("contract legacy_v1 needs the dataset's dose scale (metadata dose.scale)")
    return 1.0 / float(dose_scale), 1.0 / float(dose_scale) ** 2


class PINN(nn.Module):
    """Network + fixed physics. ``probe`` is the physical probe (N, N) complex64 in sqrt(photons);
    the contract decides the units the physics works in (see module docstring)."""

    def __init__(self, net_cfg: NetworkConfig, probe, contract: MeasurementContract | str =
                 MeasurementContract.counts, dose_scale: float | None = None):
        super().__init__()
        self.net_cfg = net_cfg
        self.contract = MeasurementContract(contract)
        self.dose_scale = dose_scale
        probe_factor, self.target_factor = contract_factors(self.contract, dose_scale)
        p = to_tensor(np.asarray(probe, dtype=np.complex64)).clone()
        if tuple(p.shape) != (net_cfg.N, net_cfg.N):
            raise ValueError(f"probe must be {net_cfg.N}x{net_cfg.N}, got {tuple(p.shape)}")
        self.register_buffer("probe", p * probe_factor)
        self.net = PtychoNet(net_cfg, probe=np.asarray(probe, dtype=np.complex64))

    @property
    def gridsize(self) -> int:
        return self.net_cfg.gridsize

    def targets(self, counts: torch.Tensor) -> torch.Tensor:
        """Raw counts -> Poisson targets in the contract's units."""
        return counts if self.target_factor == 1.0 else counts * self.target_factor

    def physics(self, obj: torch.Tensor, dx: torch.Tensor | None = None,
                dy: torch.Tensor | None = None, merge: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Object patches (B, C, N, N) complex -> (patches the physics saw, expected counts).
        ``merge=False`` (gridsize > 1 warm-up only) applies the physics to each channel's own
        patch, as for gridsize 1."""
        if self.gridsize > 1 and merge:
            if dx is None or dy is None:
                raise ValueError("gridsize > 1 needs the group offsets dx, dy (B, C)")
            support = self.net_cfg.N // 2 if self.net_cfg.object_support == "central" else None
            obj, _ = merge_group(obj, dx.to(torch.float64), dy.to(torch.float64), support)
        return obj, expected_counts(self.probe, obj)

    def forward(self, x: torch.Tensor, dx: torch.Tensor | None = None,
                dy: torch.Tensor | None = None, merge: bool = True) -> PINNOutput:
        amp, phase = self.net(x, dx, dy)
        obj = torch.polar(amp, phase)
        obj_phys, lam = self.physics(obj, dx, dy, merge)
        return PINNOutput(amplitude=amp, phase=phase, obj=obj_phys, lam=lam)


def estimate_amplitude_reference(mean_counts_per_pattern: float, probe) -> float:
    """Mean object amplitude implied by the data: Parseval gives ``sum lam = sum |P O|^2``, so for a
    slowly varying object ``|O| ~ sqrt(mean counts per pattern / sum |P|^2)``. Used to set the
    amplitude head's neutral output (physical probe, raw counts: contract independent)."""
    energy = float(np.sum(np.abs(np.asarray(probe, dtype=np.complex128)) ** 2))
    if not energy > 0 or not mean_counts_per_pattern > 0:
        raise ValueError("cannot estimate the object amplitude: zero probe energy or zero counts")
    return float(np.sqrt(mean_counts_per_pattern / energy))
