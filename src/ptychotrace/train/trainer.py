"""PINN training: Adam + ReduceLROnPlateau, validation split, history, checkpoints, resume,
NaN/Inf guard, optional early stopping and time limit, DDP under torchrun.

Entry point: :func:`train` (config, dataset, output dir) -> :class:`TrainResult`. Files written
(rank 0 only) under ``<output_dir>/train_outputs/``:

- ``history.json``: ``{"epochs": [1, 2, ...], "steps": [...], "metrics": {name: [...]},
  "nonfinite": {name: [{"epoch", "step", "value"}]}}``; a non-finite value is stored as null and
  listed under ``nonfinite``;
- ``history_summary.json``: per metric ``{count, last, min, max, first_nan_step, first_nan_epoch,
  has_nan}`` and ``nan_overview {has_nan, metrics}``;
- ``checkpoints/best.pt`` (lowest validation loss; training loss without a validation split) and
  ``checkpoints/last.pt`` (end of the last good epoch, with optimizer/scheduler/history for
  resume); see checkpoint.py for the contents;
- ``train_result.json``: the :class:`TrainResult` as JSON.

Epochs are numbered from 1; ``step`` is the global optimizer step (1-based) across epochs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from ..config import MeasurementContract, RunConfig
from ..data.container import GroupedData, build_grouped, train_input_gain
from ..data.dataset import Dataset
from ..model.losses import LossNormaliser, compute_losses
from ..model.network import NetworkConfig
from ..model.pinn import PINN, contract_factors, estimate_amplitude_reference
from ..telemetry.writers import write_json
from . import distributed as dd
from .checkpoint import BEST, CHECKPOINT_DIR, LAST, checkpoint_payload, load_checkpoint, save_checkpoint

TRAIN_OUTPUTS = "train_outputs"
#: Metrics recorded every epoch (a 'val_' twin exists for each loss when a validation split exists).
LOSS_KEYS = ("loss", "nll", "mae", "realspace")


class NonFiniteError(RuntimeError):
    """Raised inside the loop when a loss, metric or gradient is NaN/Inf (caught by train())."""

    def __init__(self, epoch: int, step: int, metric: str, value: float):
        self.epoch, self.step, self.metric, self.value = epoch, step, metric, value
        super().__init__(f"non-finite {metric} ({value}) at epoch {epoch}, step {step}; training "
                         "stopped. History and the last good checkpoint are on disk.")


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------
@dataclass
class History:
    epochs: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    nonfinite: dict[str, list[dict]] = field(default_factory=dict)

    def append(self, epoch: int, step: int, values: dict[str, float]) -> None:
        n = len(self.epochs)
        self.epochs.append(int(epoch))
        self.steps.append(int(step))
        for key in set(self.metrics) | set(values):
            col = self.metrics.setdefault(key, [None] * n)
            v = values.get(key)
            if v is not None and not math.isfinite(float(v)):
                self.nonfinite.setdefault(key, []).append(
                    {"epoch": int(epoch), "step": int(step), "value": str(float(v))})
                v = None
            col.append(None if v is None else float(v))

    def to_dict(self) -> dict:
        return {"epochs": list(self.epochs), "steps": list(self.steps),
                "metrics": {k: list(v) for k, v in self.metrics.items()},
                "nonfinite": {k: list(v) for k, v in self.nonfinite.items()}}

    @classmethod
    def from_dict(cls, d: dict | None) -> History:
        if not d:
            return cls()
        return cls(list(d["epochs"]), list(d["steps"]),
                   {k: list(v) for k, v in d["metrics"].items()},
                   {k: list(v) for k, v in d.get("nonfinite", {}).items()})

    def summary(self) -> dict:
        per = {}
        for key, col in self.metrics.items():
            vals = [v for v in col if v is not None]
            bad = self.nonfinite.get(key, [])
            per[key] = {"count": len(vals), "last": vals[-1] if vals else None,
                        "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                        "first_nan_step": bad[0]["step"] if bad else None,
                        "first_nan_epoch": bad[0]["epoch"] if bad else None,
                        "has_nan": bool(bad)}
        nan_metrics = sorted(k for k, v in per.items() if v["has_nan"])
        return {"metrics": per, "epochs_recorded": len(self.epochs),
                "nan_overview": {"has_nan": bool(nan_metrics), "metrics": nan_metrics}}


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What the runner puts under run_metadata ``training``."""

    status: str                          # "completed" | "early_stopped" | "time_limit" | "nan"
    epochs_completed: int
    early_stopped: bool
    final_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    best_epoch: int | None
    nan_detected: bool
    first_nan_epoch: int | None
    first_nan_step: int | None
    nan_message: str | None
    history_path: str | None
    history_summary_path: str | None
    best_checkpoint: str | None
    last_checkpoint: str | None
    samples_per_second: float | None
    train_seconds: float
    global_steps: int
    device: str
    world_size: int
    resumed_from: str | None
    scales: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


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

    def scales(self, contract: MeasurementContract) -> dict:
        return {"input_gain": {"value": self.input_gain, "derived_from": "train",
                               "applies_to": "network input sqrt(counts)*gain"},
                "dose_scale": {"value": self.dose_scale, "mode": self.dose_mode,
                               "derived_from": "train (simulation/dataset metadata)"},
                "loss_normaliser": self.normaliser.to_dict(),
                "amp_ref": {"value": self.amp_ref,
                            "formula": "sqrt(mean counts per pattern / sum|P|^2) (train split)"},
                "contract": MeasurementContract(contract).value}


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
                         grp.group_seed, gain)
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
                        dose_mode=dose_mode, val_index=val_idx)


#: 'auto' object support: central when the probe's energy outside the central N/2 box is below this.
AUTO_SUPPORT_MAX_OUTSIDE = 1e-3


def resolve_object_support(setting: str, probe: np.ndarray, gridsize: int = 1) -> str:
    """'auto' -> 'central' when gridsize is 1 and the probe illuminates (almost) nothing outside
    the central N/2 x N/2 box (the object there is never seen; predicting it only costs time),
    else 'full'. For gridsize > 1 'central' is refused: the group merge (merge_group, window of
    ones) would average a neighbour's zero padding into the illuminated region (measured: the
    gs2 loss stalls at ~0.13 with a near-flat amplitude)."""
    if setting == "central" and gridsize > 1:
        raise ValueError("object_support 'central' cannot be used with gridsize > 1: the group "
                         "merge would average the zero padding of neighbouring patches into the "
                         "object; use 'full' or 'auto'")
    if setting != "auto":
        return setting
    if gridsize > 1:
        return "full"
    e = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    n = e.shape[-1]
    q = n // 4
    outside = 1.0 - e[q:q + n // 2, q:q + n // 2].sum() / e.sum()
    return "central" if outside < AUTO_SUPPORT_MAX_OUTSIDE else "full"


def build_model(config: RunConfig, ds: Dataset, data: TrainingData) -> PINN:
    tr = config.training
    net_cfg = NetworkConfig(N=config.simulation.N, gridsize=config.simulation.gridsize,
                            width=tr.width, amp_ref=data.amp_ref,
                            object_support=resolve_object_support(tr.object_support, ds.probe,
                                                                  config.simulation.gridsize))
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


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def _config_dict(config: RunConfig) -> dict:
    return config.to_dict()


def _check_resume_compatible(ckpt: dict, config: RunConfig) -> None:
    net = ckpt["network"]
    support = resolve_object_support(config.training.object_support, ckpt["physics"]["probe"].numpy(),
                                     config.simulation.gridsize)
    want = {"N": config.simulation.N, "gridsize": config.simulation.gridsize,
            "width": config.training.width, "object_support": support,
            "activation": NetworkConfig.activation}
    diff = {k: (net.get(k, "relu" if k == "activation" else None), v) for k, v in want.items()
            if net.get(k, "relu" if k == "activation" else None) != v}
    if diff:
        raise ValueError(f"cannot resume: checkpoint was trained with a different model "
                         f"({', '.join(f'{k}: checkpoint {a} vs config {b}' for k, (a, b) in diff.items())})")
    if ckpt["physics"]["contract"] != config.training.contract.value:
        raise ValueError(f"cannot resume: checkpoint contract {ckpt['physics']['contract']} vs "
                         f"config {config.training.contract.value}")
    if not ckpt.get("training_state"):
        raise ValueError(f"cannot resume from {ckpt['path']}: it holds no training state "
                         "(use the 'last' checkpoint)")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def train(config: RunConfig, ds: Dataset, output_dir: str | Path, *, resume: str | Path | None = None,
          progress: bool = True, time_limit_s: float | None = None, hooks: dict | None = None,
          log=print) -> TrainResult:
    """Train the PINN on the training split of ``ds``; write history and checkpoints (rank 0).

    ``resume``: a run directory or checkpoint file; training continues from its last epoch (the
    optimizer, scheduler, RNG and history are restored; ``config.training.nepochs`` is the total).
    ``time_limit_s``: stop cleanly after the epoch that crosses this wall time (status
    'time_limit'). ``hooks``: optional callables ``after_step(model, epoch, step)`` (for fault
    injection in tests). Runs unchanged under torchrun (see distributed.py).
    """
    hooks = hooks or {}
    tr = config.training
    time_limit_s = time_limit_s if time_limit_s is not None else tr.time_limit_s
    info = dd.setup(tr.device)
    device = info.device
    out_dir = Path(output_dir) / TRAIN_OUTPUTS
    ckpt_dir = Path(output_dir) / CHECKPOINT_DIR
    hist_path, summ_path = out_dir / "history.json", out_dir / "history_summary.json"
    best_path, last_path = ckpt_dir / BEST, ckpt_dir / LAST

    torch.manual_seed(tr.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, which="last")
        _check_resume_compatible(ckpt, config)
    data = prepare_training_data(config, ds, ckpt["scales"] if ckpt else None)
    model = build_model(config, ds, data).to(device)
    if ckpt:
        model.net.load_state_dict(ckpt["model_state"])
    model.train()
    ddp_model = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        broadcast_buffers=False)

    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=tr.lr_plateau_factor,
                                                       patience=tr.lr_plateau_patience,
                                                       min_lr=tr.lr_floor)
    history = History()
    start_epoch, global_step = 1, 0
    best_val, best_epoch, bad_epochs = math.inf, None, 0
    if ckpt:
        st = ckpt["training_state"]
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        history = History.from_dict(st["history"])
        start_epoch = int(st["epoch"]) + 1
        global_step = int(st["global_step"])
        best_val = float(st["best_val"]) if st.get("best_val") is not None else math.inf
        best_epoch = st.get("best_epoch")
        bad_epochs = int(st.get("bad_epochs", 0))
        torch.set_rng_state(st["rng"]["torch"])

    scales = data.scales(tr.contract)
    cfg_dict = _config_dict(config)

    def payload(kind: str, epoch: int, val: float | None, with_state: bool) -> dict:
        state = None
        if with_state:
            state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "history": history.to_dict(), "epoch": epoch, "global_step": global_step,
                     "best_val": None if not math.isfinite(best_val) else best_val,
                     "best_epoch": best_epoch, "bad_epochs": bad_epochs, "rng": _rng_state()}
        return checkpoint_payload(model, config=cfg_dict, scales=scales,
                                  metadata={"kind": kind, "epoch": epoch, "global_step": global_step,
                                            "val_loss": val, "loss_weights": tr.loss_weights.model_dump(),
                                            "world_size": info.world_size},
                                  training_state=state)

    def write_history() -> None:
        if info.is_main:
            write_json(hist_path, history.to_dict())
            write_json(summ_path, history.summary())

    if info.is_main and not ckpt:
        save_checkpoint(last_path, payload("initial", 0, None, with_state=True))

    sampler = DistributedSampler(range(len(data.train)), num_replicas=info.world_size,
                                 rank=info.rank, shuffle=True, seed=tr.seed, drop_last=False)
    weights = tr.loss_weights
    need_labels = weights.realspace > 0
    if need_labels and data.train.Y_amp is None:
        raise ValueError("loss_weights.realspace > 0 needs ground truth in the dataset")
    steps_per_epoch = math.ceil(len(sampler) / tr.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]

    status, nan_err, epoch = "completed", None, start_epoch - 1
    t_start = time.perf_counter()
    total_samples, total_train_time = 0, 0.0
    last_train_loss = history.metrics.get("loss", [None])[-1] if history.epochs else None
    last_val_loss = history.metrics.get("val_loss", [None])[-1] if history.epochs else None

    prog = _Progress(progress and info.is_main, tr.nepochs, steps_per_epoch, start_epoch - 1)
    try:
        with prog:
            for epoch in range(start_epoch, tr.nepochs + 1):
                sampler.set_epoch(epoch)
                merge = epoch > tr.merge_warmup_epochs
                order = np.fromiter(iter(sampler), dtype=np.int64)
                sums = torch.zeros(len(LOSS_KEYS) + 2, dtype=torch.float64)
                t_ep = time.perf_counter()
                for s in range(steps_per_epoch):
                    idx = order[s * tr.batch_size:(s + 1) * tr.batch_size]
                    if len(idx) == 0:
                        continue
                    global_step += 1
                    b = _batch(data.train, idx, model, device, need_labels)
                    out = ddp_model(b["x"], b["dx"], b["dy"], merge)
                    losses = compute_losses(out, b["counts"], data.normaliser, weights,
                                            b["y_amp"], b["y_phi"], valid=b["valid"])
                    bad = [(k, float(v.detach())) for k, v in losses.items()
                           if not torch.isfinite(v)]
                    if not bad:
                        opt.zero_grad(set_to_none=True)
                        losses["loss"].backward()
                        gnorm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
                        if not torch.isfinite(gnorm):
                            bad = [("grad_norm", float(gnorm))]
                    else:
                        gnorm = torch.tensor(float("nan"))
                    if dd.broadcast_flag(bool(bad), info):
                        metric, value = bad[0] if bad else ("loss (other rank)", float("nan"))
                        raise NonFiniteError(epoch, global_step, metric, value)
                    opt.step()
                    k = len(idx)
                    vals = [float(losses[key].detach()) for key in LOSS_KEYS] + [float(gnorm), 1.0]
                    sums += torch.tensor(vals, dtype=torch.float64) * k
                    if "after_step" in hooks:
                        hooks["after_step"](model, epoch, global_step)
                    prog.step(epoch, s + 1, vals[0])
                ep_time = time.perf_counter() - t_ep
                sums = dd.all_reduce_sum(sums, info)
                n_samples = float(sums[-1])
                ep = {key: float(sums[i]) / max(n_samples, 1.0) for i, key in enumerate(LOSS_KEYS)}
                ep["grad_norm"] = float(sums[len(LOSS_KEYS)]) / max(n_samples, 1.0)
                total_samples += n_samples
                total_train_time += ep_time
                ep["samples_per_second"] = n_samples / ep_time if ep_time > 0 else None
                ep["epoch_seconds"] = ep_time
                ep["lr"] = opt.param_groups[0]["lr"]
                ep["group_merge"] = 1.0 if (merge or model.gridsize == 1) else 0.0
                if data.val is not None:
                    v = evaluate_split(model, data.val, data.normaliser, weights, device)
                    ep.update({f"val_{k}": v[k] for k in LOSS_KEYS})
                    ep["pred_amp_mean"], ep["pred_amp_std"] = v["pred_amp_mean"], v["pred_amp_std"]
                    monitor = v["loss"]
                else:
                    monitor = ep["loss"]
                bad = [(k, v) for k, v in ep.items() if v is not None and not math.isfinite(v)]
                if bad:
                    history.append(epoch, global_step, ep)
                    raise NonFiniteError(epoch, global_step, bad[0][0], bad[0][1])
                history.append(epoch, global_step, ep)
                last_train_loss, last_val_loss = ep["loss"], ep.get("val_loss")
                sched.step(monitor)
                improved = monitor < best_val
                if improved:
                    best_val, best_epoch, bad_epochs = monitor, epoch, 0
                else:
                    bad_epochs += 1
                if info.is_main:
                    if improved:
                        save_checkpoint(best_path, payload("best", epoch, monitor, with_state=False))
                    save_checkpoint(last_path, payload("last", epoch, monitor, with_state=True))
                write_history()
                prog.epoch_done(epoch, ep)
                if (tr.early_stopping_patience is not None
                        and bad_epochs >= tr.early_stopping_patience):
                    status = "early_stopped"
                    break
                elapsed = time.perf_counter() - t_start
                if time_limit_s is not None and elapsed >= time_limit_s and epoch < tr.nepochs:
                    status = "time_limit"
                    break
    except NonFiniteError as err:
        status, nan_err = "nan", err
        if not history.epochs or history.epochs[-1] != err.epoch:
            history.append(err.epoch, err.step, {k: (float("nan") if k == err.metric else None)
                                                 for k in set(history.metrics) | {err.metric}})
        write_history()
        log(f"error: {err}")
    finally:
        dd.barrier(info)
        dd.teardown(info)

    summary = history.summary()
    nan_over = summary["nan_overview"]
    firsts = [m for m in summary["metrics"].values() if m["has_nan"]]
    first_epoch = min((m["first_nan_epoch"] for m in firsts), default=None)
    first_step = min((m["first_nan_step"] for m in firsts), default=None)
    completed = history.epochs[-1] if history.epochs else 0
    if status == "nan":
        completed = nan_err.epoch - 1
    result = TrainResult(
        status=status, epochs_completed=int(completed), early_stopped=status == "early_stopped",
        final_loss=last_train_loss, final_val_loss=last_val_loss,
        best_val_loss=None if not math.isfinite(best_val) else best_val, best_epoch=best_epoch,
        nan_detected=bool(nan_over["has_nan"]),
        first_nan_epoch=nan_err.epoch if nan_err else first_epoch,
        first_nan_step=nan_err.step if nan_err else first_step,
        nan_message=str(nan_err) if nan_err else None,
        history_path=str(hist_path), history_summary_path=str(summ_path),
        best_checkpoint=str(best_path) if best_path.exists() else None,
        last_checkpoint=str(last_path) if last_path.exists() else None,
        samples_per_second=(total_samples / total_train_time) if total_train_time > 0 else None,
        train_seconds=time.perf_counter() - t_start, global_steps=global_step, device=str(device),
        world_size=info.world_size, resumed_from=ckpt["path"] if ckpt else None, scales=scales)
    if info.is_main:
        write_json(out_dir / "train_result.json", result.to_dict())
    return result


class _Progress:
    """rich progress: one bar over all steps, the latest loss and the last epoch's summary."""

    def __init__(self, enabled: bool, nepochs: int, steps_per_epoch: int, done_epochs: int):
        self.enabled = enabled
        self.total = nepochs * steps_per_epoch
        self.spe = steps_per_epoch
        self.done0 = done_epochs * steps_per_epoch
        self._prog = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._prog = Progress(TextColumn("[bold]train[/] epoch {task.fields[epoch]}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._prog.__enter__()
            self._task = self._prog.add_task("train", total=self.total, completed=self.done0,
                                             epoch="-", loss="-")
        return self

    def __exit__(self, *exc):
        if self._prog is not None:
            self._prog.__exit__(*exc)

    def step(self, epoch: int, step_in_epoch: int, loss: float) -> None:
        if self._prog is not None:
            self._prog.update(self._task, completed=(epoch - 1) * self.spe + step_in_epoch,
                              epoch=epoch, loss=f"{loss:.4g}")

    def epoch_done(self, epoch: int, ep: dict[str, Any]) -> None:
        if self._prog is not None:
            val = ep.get("val_loss")
            self._prog.console.print(
                f"epoch {epoch}: loss {ep['loss']:.4g}" + (f"  val {val:.4g}" if val is not None else "")
                + f"  lr {ep['lr']:.2g}  {ep['samples_per_second']:.1f} samples/s"
                + (f"  amp mean/std {ep['pred_amp_mean']:.3g}/{ep['pred_amp_std']:.3g}"
                   if "pred_amp_mean" in ep else ""))


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
