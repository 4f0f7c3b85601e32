"""Training-data preparation, model construction, split evaluation and the forward-pass
diagnostics (split out of trainer.py; trainer.py re-exports every public name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import MeasurementContract, RunConfig
from ..data.container import (
    GroupedData,
    block_step_px,
    build_grouped,
    grouping_method_kwargs,
    train_input_gain,
)
from ..data.dataset import Dataset
from ..model.losses import LossNormaliser, compute_losses
from ..model.network import NetworkConfig
from ..model.pinn import PINN, contract_factors, estimate_amplitude_reference


# --------------------------------------------------------------------------------------------
# Data preparation (also used by the runner for training-label arrays)
# --------------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Grouped training data, the validation split and the frozen scales."""

    train: GroupedData
    val: GroupedData | None
    input_gain: float
    normaliser: LossNormaliser            # in the contract's target units
    amp_ref: float
    dose_scale: float | None
    dose_mode: str | None
    val_index: np.ndarray                 # group indices (into the full grouped train split)
    group_method: str = "knn"
    #: raster_blocks: the step between a block's points, px, measured on the training groups
    #: (infer refuses test blocks with another step); None for knn or gridsize 1
    block_step_px: float | None = None

    def scales(self, contract: MeasurementContract) -> dict:
        return {"input_gain": {"value": self.input_gain, "derived_from": "train",
                               "applies_to": "network input sqrt(counts)*gain"},
                "dose_scale": {"value": self.dose_scale, "mode": self.dose_mode,
                               "derived_from": "train (simulation/dataset metadata)"},
                "loss_normaliser": self.normaliser.to_dict(),
                "amp_ref": {"value": self.amp_ref,
                            "formula": "sqrt(mean counts per pattern / sum|P|^2) (train split)"},
                "contract": MeasurementContract(contract).value,
                "group_geometry": {"method": self.group_method,
                                   "block_step_px": self.block_step_px,
                                   "derived_from": "train groups (median block span / "
                                                   "(gridsize - 1))",
                                   "applies_to": "raster_blocks test groups (infer refuses "
                                                 "another step)"}}


def prepare_training_data(config: RunConfig, ds: Dataset, scales: dict | None = None) -> TrainingData:
    """Group the training split, split off the (seeded) validation groups and freeze the scales.

    ``scales`` (from a checkpoint) re-uses recorded values instead of re-deriving them."""
    sim, grp, tr = config.simulation, config.grouping, config.training
    if ds.patch_size != sim.N:
        raise ValueError(f"dataset patterns are {ds.patch_size}x{ds.patch_size} but the config says "
                         f"N={sim.N}; pass --N or fix the config")
    if scales:
        gain = float(scales["input_gain"]["value"])
    else:
        gain = train_input_gain(ds)
    full = build_grouped(ds, "train", sim.gridsize, grp.requested_groups, grp.neighbor_count,
                         grp.group_seed, gain, **grouping_method_kwargs(grp.model_dump()))
    g = len(full)
    n_val = int(round(g * tr.validation_fraction)) if tr.validation_fraction > 0 else 0
    if tr.validation_fraction > 0 and g >= 2:
        n_val = min(max(n_val, 1), g - 1)
    perm = np.random.default_rng(tr.seed).permutation(g)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    dose_scale = ds.dose_scale
    dose_mode = (ds.metadata.get("dose") or {}).get("mode")
    _, target_factor = contract_factors(tr.contract, dose_scale)
    if scales:
        ln = scales["loss_normaliser"]
        norm = LossNormaliser(float(ln["mean_counts"]), float(ln["mean_amplitude_sum"]),
                              ln.get("derived_from", "train"))
        amp_ref = float(scales["amp_ref"]["value"])
    else:
        train_counts = ds.counts[ds.indices("train")]
        norm = LossNormaliser.from_counts(train_counts, target_factor, valid=ds.valid)
        amp_ref = estimate_amplitude_reference(norm.mean_counts / target_factor, ds.probe)
    return TrainingData(train=full.take(train_idx), val=full.take(val_idx) if n_val else None,
                        input_gain=gain, normaliser=norm, amp_ref=amp_ref, dose_scale=dose_scale,
                        dose_mode=dose_mode, val_index=val_idx, group_method=grp.group_method,
                        block_step_px=(block_step_px(full.dx, sim.gridsize)
                                       if grp.group_method == "raster_blocks" else None))


#: 'auto' object support: central when the probe's energy outside the central N/2 box is below this.
AUTO_SUPPORT_MAX_OUTSIDE = 1e-3


def resolve_object_support(setting: str, probe: np.ndarray) -> str:
    """'auto' -> 'central' when the probe illuminates (almost) nothing outside the central
    N/2 x N/2 box (the object there is never seen; predicting it only costs time), else 'full'.
    With gridsize > 1 'central' merges each group with the support as the window (merge_group
    ``support``), so a neighbour's zero padding never enters the average (with a window of ones
    it did: the gs2 loss stalled at ~0.13 with a near-flat amplitude). Measured on gs2_ideal
    (docs/benchmarks.md): central trains ~1.7x faster per epoch and scores higher at equal
    epochs, so 'auto' applies the same probe rule at every gridsize."""
    if setting != "auto":
        return setting
    e = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    n = e.shape[-1]
    q = n // 4
    outside = 1.0 - e[q:q + n // 2, q:q + n // 2].sum() / e.sum()
    return "central" if outside < AUTO_SUPPORT_MAX_OUTSIDE else "full"


def build_model(config: RunConfig, ds: Dataset, data: TrainingData) -> PINN:
    tr = config.training
    net_cfg = NetworkConfig(N=config.simulation.N, gridsize=config.simulation.gridsize,
                            width=tr.width, amp_ref=data.amp_ref, arch=tr.arch, norm=tr.norm,
                            residual=tr.residual, precision=tr.precision,
                            spectral_blocks=tr.spectral_blocks,
                            input_transform=tr.input_transform, input_photon=data.input_gain,
                            position_channels=tr.position_channels,
                            unrolled_stages=tr.unrolled_stages,
                            object_support=resolve_object_support(tr.object_support, ds.probe))
    return PINN(net_cfg, ds.probe, tr.contract, data.dose_scale)


def _batch(data: GroupedData, idx: np.ndarray, model: PINN, device: torch.device,
           need_labels: bool) -> dict[str, torch.Tensor | None]:
    def t(a, dtype=None):
        return torch.as_tensor(np.ascontiguousarray(a[idx]), dtype=dtype).to(device)

    out = {"x": t(data.X), "counts": model.targets(t(data.counts)),
           "dx": t(data.dx, torch.float64), "dy": t(data.dy, torch.float64),
           "y_amp": None, "y_phi": None,
           "valid": None if data.valid is None else torch.as_tensor(data.valid).to(device)}
    if need_labels and data.Y_amp is not None:
        out["y_amp"], out["y_phi"] = t(data.Y_amp), t(data.Y_phi)
    return out


def _probe_support(model: PINN) -> torch.Tensor:
    a = model.probe.abs()
    return a > 0.1 * a.max()


@torch.no_grad()
def evaluate_split(model: PINN, data: GroupedData, norm: LossNormaliser, weights, device,
                   batch_size: int = 32) -> dict[str, float]:
    """Mean losses over a split plus collapse diagnostics of the predicted amplitude
    (pred_amp_mean / pred_amp_std over the illuminated pixels)."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    support = _probe_support(model)
    amps = []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data)))
        b = _batch(data, idx, model, device, need_labels=True)
        out = model(b["x"], b["dx"], b["dy"])
        losses = compute_losses(out, b["counts"], norm, weights, b["y_amp"], b["y_phi"],
                                valid=b["valid"])
        k = len(idx)
        for key, v in losses.items():
            sums[key] = sums.get(key, 0.0) + float(v) * k
        n += k
        amps.append(out.amplitude[..., support].double().cpu())
    model.train()
    res = {key: v / max(n, 1) for key, v in sums.items()}
    a = torch.cat([x.reshape(-1) for x in amps])
    res["pred_amp_mean"] = float(a.mean())
    res["pred_amp_std"] = float(a.std())
    return res


def _check_resume_compatible(ckpt: dict, config: RunConfig) -> None:
    net = ckpt["network"]
    support = resolve_object_support(config.training.object_support,
                                     ckpt["physics"]["probe"].numpy())
    want = {"N": config.simulation.N, "gridsize": config.simulation.gridsize,
            "width": config.training.width, "object_support": support,
            "activation": NetworkConfig.activation, "arch": config.training.arch,
            "norm": config.training.norm, "residual": config.training.residual}
    old = {"activation": "relu", "arch": "plain", "norm": "none", "residual": False}  # pre-#12
    diff = {k: (net.get(k, old.get(k)), v) for k, v in want.items() if net.get(k, old.get(k)) != v}
    if diff:
        raise ValueError(f"cannot resume: checkpoint was trained with a different model "
                         f"({', '.join(f'{k}: checkpoint {a} vs config {b}' for k, (a, b) in diff.items())})")
    if ckpt["physics"]["contract"] != config.training.contract.value:
        raise ValueError(f"cannot resume: checkpoint contract {ckpt['physics']['contract']} vs "
                         f"config {config.training.contract.value}")
    saved = ckpt["config"].get("training", {}).get("lr_schedule", "plateau")
    if saved != config.training.lr_schedule:
        raise ValueError(f"cannot resume: checkpoint used lr_schedule {saved!r}, config says "
                         f"{config.training.lr_schedule!r}")
    if not ckpt.get("training_state"):
        raise ValueError(f"cannot resume from {ckpt['path']}: it holds no training state "
                         "(use the 'last' checkpoint)")


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def forward_pass_diagnostics(model: PINN, grouped_batch: GroupedData, truth_mean: float | None = None,
                             max_groups: int = 16) -> dict[str, Any]:
    """Scale chain through one forward pass on (up to ``max_groups`` of) a grouped split.

    Returns input_mean/std (normalised network input), input_gain, output_amp_mean/std (object
    units, over the whole patch and over the illuminated pixels), output_phase_mean/std,
    amp_ref (the amplitude head's neutral value), pred_counts_sum_mean vs measured_counts_sum_mean
    (photons per pattern, raw counts) and their ratio, truth_mean and output/truth ratio."""
    core = model.module if hasattr(model, "module") else model
    device = core.probe.device
    n = min(max_groups, len(grouped_batch))
    idx = np.arange(n)
    was_training = core.training
    core.eval()
    b = _batch(grouped_batch, idx, core, device, need_labels=False)
    out = core(b["x"], b["dx"], b["dy"])
    if was_training:
        core.train()
    support = _probe_support(core)
    amp_ill = out.amplitude[..., support].double()
    pred_sum = (out.lam.double() / core.target_factor).sum(dim=(-2, -1))
    meas_sum = torch.as_tensor(grouped_batch.counts[idx], dtype=torch.float64).sum(dim=(-2, -1))
    res = {
        "n_groups": n, "input_gain": grouped_batch.input_gain,
        "input_mean": float(b["x"].double().mean()), "input_std": float(b["x"].double().std()),
        "output_mean": float(out.amplitude.double().mean()),
        "output_amp_mean": float(out.amplitude.double().mean()),
        "output_amp_std": float(out.amplitude.double().std()),
        "output_amp_illuminated_mean": float(amp_ill.mean()),
        "output_amp_illuminated_std": float(amp_ill.std()),
        "output_phase_mean": float(out.phase.double().mean()),
        "output_phase_std": float(out.phase.double().std()),
        "amp_ref": core.net_cfg.amp_ref, "contract": core.contract.value,
        "pred_counts_sum_mean": float(pred_sum.mean()),
        "measured_counts_sum_mean": float(meas_sum.mean()),
        "pred_over_measured_counts": float(pred_sum.mean() / meas_sum.mean()),
        "truth_mean": truth_mean,
    }
    res["output_over_truth_mean"] = (float(amp_ill.mean()) / truth_mean) if truth_mean else None
    return res
