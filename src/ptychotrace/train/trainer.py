"""PINN training: Adam + ReduceLROnPlateau or cosine schedule, validation split, history,
checkpoints, resume, NaN/Inf guard, amplitude-collapse guard (guard.py), optional early stopping
on the validation loss (the Poisson deviance with the default weights) and time limit, DDP under
torchrun.

Entry point: :func:`train` (config, dataset, output dir) -> :class:`TrainResult`, a thin wrapper
around :class:`Trainer`. Records (History, TrainResult, progress bar) live in history.py. The best
checkpoint (lowest validation loss) is what the runner and ``infer`` load. Files written
(rank 0 only) under ``<output_dir>/train_outputs/``:

- ``history.json``: ``{"epochs": [1, 2, ...], "steps": [...], "metrics": {name: [...]},
  "nonfinite": {name: [{"epoch", "step", "value"}]}, "events": [...]}``; a non-finite value is
  stored as null and listed under ``nonfinite``; collapse-guard records are ``events``;
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
from pathlib import Path

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from ..config import RunConfig
from ..data.dataset import Dataset
from ..model.losses import compute_losses
from ..model.precision import bfloat16_training_warning, native_bfloat16
from ..telemetry.writers import write_json
from . import distributed as dd
from .checkpoint import BEST, CHECKPOINT_DIR, LAST, checkpoint_payload, load_checkpoint, save_checkpoint
from .guard import GUARD_BATCH, CollapseGuard
from .history import History, NonFiniteError, TrainResult, _Progress
from .prep import (
    AUTO_SUPPORT_MAX_OUTSIDE,
    TrainingData,
    _batch,
    _check_resume_compatible,
    build_model,
    evaluate_split,
    forward_pass_diagnostics,
    prepare_training_data,
    resolve_object_support,
)

__all__ = ["AUTO_SUPPORT_MAX_OUTSIDE", "History", "NonFiniteError", "TrainResult", "Trainer",
           "TrainingData", "build_model", "evaluate_split", "forward_pass_diagnostics",
           "prepare_training_data", "resolve_object_support", "train"]

TRAIN_OUTPUTS = "train_outputs"
#: Metrics recorded every epoch (a 'val_' twin exists for each loss when a validation split exists).
LOSS_KEYS = ("loss", "nll", "mae", "realspace")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _make_scheduler(opt: torch.optim.Optimizer, tr, epochs: int):
    """'plateau': ReduceLROnPlateau on the monitored loss; 'cosine': cosine from the optimizer's
    current lr to lr_floor over ``epochs`` epochs (stepped once per epoch)."""
    if tr.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs),
                                                          eta_min=min(tr.lr_floor, tr.lr))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=tr.lr_plateau_factor,
                                                      patience=tr.lr_plateau_patience,
                                                      min_lr=tr.lr_floor)


class Trainer:
    """One training run and its state. ``Trainer(...).run()`` is :func:`train` (see its doc).

    Pieces: ``__init__`` (device, data, model, optimizer, restore from a checkpoint),
    :meth:`run` (the epoch loop and its stop conditions), :meth:`_train_epoch` / :meth:`_step`
    (optimizer steps with the non-finite guard), :meth:`_validate` (validation losses and the
    collapse statistic), :meth:`_end_epoch` (schedule, best/last checkpoints, collapse guard),
    :meth:`_recover` (collapse recovery), :meth:`_result` (the TrainResult)."""

    def __init__(self, config: RunConfig, ds: Dataset, output_dir: str | Path, *,
                 resume: str | Path | None = None, progress: bool = True,
                 time_limit_s: float | None = None, hooks: dict | None = None, log=print):
        self.config, self.tr, self.log = config, config.training, log
        self._progress = progress
        tr = self.tr
        self.hooks = hooks or {}
        self.time_limit_s = time_limit_s if time_limit_s is not None else tr.time_limit_s
        # gridsize > 1: the per-pattern warm-up never takes more than half of the training
        self.merge_warmup_epochs = min(tr.merge_warmup_epochs, tr.nepochs // 2)
        self.info = dd.setup(tr.device)
        if (self.info.is_main and config.simulation.gridsize > 1
                and self.merge_warmup_epochs < tr.merge_warmup_epochs):
            # one line per run, not per DDP rank
            log(f"note: merge warm-up cut from {tr.merge_warmup_epochs} to "
                f"{self.merge_warmup_epochs} epochs (at most half of the {tr.nepochs} epochs)")
        self.device = self.info.device
        # bfloat16 on a CPU that only emulates it is 10-13x slower than float32: say so at once
        warning = bfloat16_training_warning(tr.precision, self.device)
        self.precision_record = {"precision": tr.precision,
                                 "native_bfloat16": native_bfloat16(self.device),
                                 "warning": warning}
        if warning and self.info.is_main:
            log(warning)
        self.out_dir = Path(output_dir) / TRAIN_OUTPUTS
        ckpt_dir = Path(output_dir) / CHECKPOINT_DIR
        self.hist_path = self.out_dir / "history.json"
        self.summ_path = self.out_dir / "history_summary.json"
        self.best_path, self.last_path = ckpt_dir / BEST, ckpt_dir / LAST
        torch.manual_seed(tr.seed)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

        ckpt = None
        if resume is not None:
            ckpt = load_checkpoint(resume, which="last")
            _check_resume_compatible(ckpt, config)
        self.ckpt = ckpt
        self.data = prepare_training_data(config, ds, ckpt["scales"] if ckpt else None)
        self.model = build_model(config, ds, self.data).to(self.device)
        if ckpt:
            self.model.net.load_state_dict(ckpt["model_state"])
        self.model.train()
        self.ddp_model = self.model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

            self.ddp_model = DDP(self.model, device_ids=[self.device.index]
                                 if self.device.type == "cuda" else None, broadcast_buffers=False)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tr.lr)
        self.sched = _make_scheduler(self.opt, tr, tr.nepochs)
        self.history = History()
        self.start_epoch, self.global_step = 1, 0
        self.best_val, self.best_epoch, self.bad_epochs = math.inf, None, 0
        self.best_state: dict | None = None       # in-memory copy of the best weights
        self.guard = CollapseGuard(tr.collapse_ratio, tr.collapse_guard, tr.collapse_max_recoveries)
        if ckpt:
            self._restore(ckpt["training_state"])
        self.scales = self.data.scales(tr.contract)
        self.cfg_dict = config.to_dict()
        self.sampler = DistributedSampler(range(len(self.data.train)),
                                          num_replicas=self.info.world_size, rank=self.info.rank,
                                          shuffle=True, seed=tr.seed, drop_last=False)
        self.need_labels = tr.loss_weights.realspace > 0
        if self.need_labels and self.data.train.Y_amp is None:
            raise ValueError("loss_weights.realspace > 0 needs ground truth in the dataset")
        self.steps_per_epoch = math.ceil(len(self.sampler) / tr.batch_size)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fixed batch for the collapse statistic when there is no validation split
        self.guard_data = self.data.val if self.data.val is not None else self.data.train.take(
            np.arange(min(GUARD_BATCH, len(self.data.train))))
        self.total_samples, self.total_train_time = 0.0, 0.0
        self.last_train_loss = self.history.metrics.get("loss", [None])[-1] if self.history.epochs \
            else None
        self.last_val_loss = self.history.metrics.get("val_loss", [None])[-1] \
            if self.history.epochs else None

    def _restore(self, st: dict) -> None:
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.history = History.from_dict(st["history"])
        self.start_epoch = int(st["epoch"]) + 1
        self.global_step = int(st["global_step"])
        self.best_val = float(st["best_val"]) if st.get("best_val") is not None else math.inf
        self.best_epoch = st.get("best_epoch")
        self.bad_epochs = int(st.get("bad_epochs", 0))
        self.guard.load_state(st.get("collapse_guard"))
        torch.set_rng_state(st["rng"]["torch"])
        if self.best_path.is_file() and self.best_epoch is not None:
            self.best_state = load_checkpoint(self.best_path)["model_state"]

    # -- checkpoints and records ---------------------------------------------------------
    def _payload(self, kind: str, epoch: int, val: float | None, with_state: bool) -> dict:
        state = None
        if with_state:
            state = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "history": self.history.to_dict(), "epoch": epoch,
                     "global_step": self.global_step,
                     "best_val": None if not math.isfinite(self.best_val) else self.best_val,
                     "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                     "collapse_guard": self.guard.state(), "rng": {"torch": torch.get_rng_state()}}
        return checkpoint_payload(self.model, config=self.cfg_dict, scales=self.scales,
                                  metadata={"kind": kind, "epoch": epoch,
                                            "global_step": self.global_step, "val_loss": val,
                                            "loss_weights": self.tr.loss_weights.model_dump(),
                                            "world_size": self.info.world_size},
                                  training_state=state)

    def _write_history(self) -> None:
        if self.info.is_main:
            write_json(self.hist_path, self.history.to_dict())
            write_json(self.summ_path, self.history.summary())

    # -- steps ---------------------------------------------------------------------------
    def _step(self, epoch: int, idx: np.ndarray, merge: bool) -> list[float]:
        """One optimizer step on groups ``idx``; returns [loss keys..., grad norm, 1.0]."""
        self.global_step += 1
        b = _batch(self.data.train, idx, self.model, self.device, self.need_labels)
        out = self.ddp_model(b["x"], b["dx"], b["dy"], merge)
        losses = compute_losses(out, b["counts"], self.data.normaliser, self.tr.loss_weights,
                                b["y_amp"], b["y_phi"], valid=b["valid"])
        bad = [(k, float(v.detach())) for k, v in losses.items() if not torch.isfinite(v)]
        if not bad:
            self.opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, float("inf"))
            if not torch.isfinite(gnorm):
                bad = [("grad_norm", float(gnorm))]
        else:
            gnorm = torch.tensor(float("nan"))
        if dd.broadcast_flag(bool(bad), self.info):
            metric, value = bad[0] if bad else ("loss (other rank)", float("nan"))
            raise NonFiniteError(epoch, self.global_step, metric, value)
        self.opt.step()
        return [float(losses[key].detach()) for key in LOSS_KEYS] + [float(gnorm), 1.0]

    def _train_epoch(self, epoch: int, prog) -> dict:
        tr = self.tr
        self.sampler.set_epoch(epoch)
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        sums = torch.zeros(len(LOSS_KEYS) + 2, dtype=torch.float64)
        merged_steps, steps = 0, 0
        t_ep = time.perf_counter()
        for s in range(self.steps_per_epoch):
            idx = order[s * tr.batch_size:(s + 1) * tr.batch_size]
            if len(idx) == 0:
                continue
            merge = self._merge_now(epoch)
            merged_steps, steps = merged_steps + merge, steps + 1
            vals = self._step(epoch, idx, merge)
            sums += torch.tensor(vals, dtype=torch.float64) * len(idx)
            if "after_step" in self.hooks:
                self.hooks["after_step"](self.model, epoch, self.global_step)
            prog.step(epoch, s + 1, vals[0])
        ep_time = time.perf_counter() - t_ep
        sums = dd.all_reduce_sum(sums, self.info)
        n_samples = float(sums[-1])
        ep = {key: float(sums[i]) / max(n_samples, 1.0) for i, key in enumerate(LOSS_KEYS)}
        ep["grad_norm"] = float(sums[len(LOSS_KEYS)]) / max(n_samples, 1.0)
        self.total_samples += n_samples
        self.total_train_time += ep_time
        ep["samples_per_second"] = n_samples / ep_time if ep_time > 0 else None
        ep["epoch_seconds"] = ep_time
        ep["lr"] = self.opt.param_groups[0]["lr"]
        # fraction of this epoch's steps that merged the group (1 for gridsize 1: nothing to merge)
        ep["group_merge"] = 1.0 if self.model.gridsize == 1 else merged_steps / max(steps, 1)
        return ep

    def _merge_now(self, epoch: int) -> bool:
        """Whether the next step merges each group (gridsize > 1): after ``merge_warmup_epochs``
        epochs (at most half of ``nepochs``) or ``merge_warmup_max_steps`` optimiser steps,
        whichever comes first. The half cap: a warm-up as long as the training would leave the
        merged prediction that inference uses untrained (the 5-epoch gs2_ideal default run had a
        network-only amplitude Pearson of 0.09 / -0.53 after 5 warm-up epochs, 0.53 with 2)."""
        cap = self.tr.merge_warmup_max_steps
        return epoch > self.merge_warmup_epochs or (cap is not None and self.global_step >= cap)

    def _validate(self, ep: dict) -> float:
        """Add validation losses and the collapse statistic to ``ep``; return the monitor."""
        weights = self.tr.loss_weights
        if self.data.val is not None:
            v = evaluate_split(self.model, self.data.val, self.data.normaliser, weights, self.device)
            ep.update({f"val_{k}": v[k] for k in LOSS_KEYS})
            monitor = v["loss"]
        else:
            v = evaluate_split(self.model, self.guard_data, self.data.normaliser, weights,
                               self.device)
            monitor = ep["loss"]
        ep["pred_amp_mean"], ep["pred_amp_std"] = v["pred_amp_mean"], v["pred_amp_std"]
        ep["pred_amp_cv"] = v["pred_amp_std"] / v["pred_amp_mean"] if v["pred_amp_mean"] > 0 \
            else 0.0
        return monitor

    def _end_epoch(self, epoch: int, ep: dict, monitor: float) -> str | None:
        """Schedule, collapse guard, best/last checkpoints; returns a stop status or None."""
        self.history.append(epoch, self.global_step, ep)
        self.last_train_loss, self.last_val_loss = ep["loss"], ep.get("val_loss")
        event = self.guard.check(epoch, ep["pred_amp_cv"])
        stop = None
        if event is not None:
            stop = self._recover(epoch, event)
        else:
            if self.tr.lr_schedule == "cosine":
                self.sched.step()
            else:
                self.sched.step(monitor)
            improved = monitor < self.best_val
            if improved:
                self.best_val, self.best_epoch, self.bad_epochs = monitor, epoch, 0
                self.best_state = {k: v.detach().clone()
                                   for k, v in self.model.net.state_dict().items()}
            else:
                self.bad_epochs += 1
            if self.info.is_main and improved:
                save_checkpoint(self.best_path, self._payload("best", epoch, monitor, False))
        if self.info.is_main:
            save_checkpoint(self.last_path, self._payload("last", epoch, monitor, True))
        self._write_history()
        return stop

    def _recover(self, epoch: int, event: dict) -> str | None:
        """Collapse at ``epoch``: warn, record, reload the best weights at a lower lr (or stop)."""
        lr = self.opt.param_groups[0]["lr"]
        event.update(step=self.global_step, lr_before=lr, restored_epoch=self.best_epoch)
        can = self.guard.can_recover and self.best_state is not None
        msg = (f"warning: amplitude collapse at epoch {epoch}: predicted amplitude std/mean "
               f"{event['pred_amp_cv']:.3g} < {self.guard.ratio:g} x {event['reference_cv']:.3g} "
               f"(epoch {event['reference_epoch']})")
        if can:
            new_lr = lr * self.tr.collapse_lr_factor
            self.model.net.load_state_dict(self.best_state)
            self.opt = torch.optim.Adam(self.model.parameters(), lr=new_lr)
            self.sched = _make_scheduler(self.opt, self.tr, self.tr.nepochs - epoch)
            self.guard.recoveries += 1
            self.bad_epochs = 0
            event.update(action="reloaded best weights, Adam restarted", lr_after=new_lr)
            msg += (f"; reloaded the best weights (epoch {self.best_epoch}) and restarted Adam at "
                    f"lr {new_lr:.3g} (recovery {self.guard.recoveries} of "
                    f"{self.guard.max_recoveries})")
        else:
            event.update(action="stopped", lr_after=None)
            msg += "; no recovery left: training stops (the best checkpoint is kept)"
        self.guard.events.append(dict(event))
        self.history.events.append(dict(event))
        self.log(msg)
        return None if can else "collapsed"

    # -- the run -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        tr, info = self.tr, self.info
        if info.is_main and not self.ckpt:
            save_checkpoint(self.last_path, self._payload("initial", 0, None, with_state=True))
        status, nan_err = "completed", None
        t_start = time.perf_counter()
        prog = _Progress(self._progress and info.is_main, tr.nepochs, self.steps_per_epoch,
                         self.start_epoch - 1)
        try:
            with prog:
                for epoch in range(self.start_epoch, tr.nepochs + 1):
                    ep = self._train_epoch(epoch, prog)
                    monitor = self._validate(ep)
                    bad = [(k, v) for k, v in ep.items() if v is not None and not math.isfinite(v)]
                    if bad:
                        self.history.append(epoch, self.global_step, ep)
                        raise NonFiniteError(epoch, self.global_step, bad[0][0], bad[0][1])
                    stop = self._end_epoch(epoch, ep, monitor)
                    prog.epoch_done(epoch, ep)
                    if "after_epoch" in self.hooks:
                        self.hooks["after_epoch"](self, epoch, ep)
                    if stop:
                        status = stop
                        break
                    if (tr.early_stopping_patience is not None
                            and self.bad_epochs >= tr.early_stopping_patience):
                        status = "early_stopped"
                        break
                    elapsed = time.perf_counter() - t_start
                    if (self.time_limit_s is not None and elapsed >= self.time_limit_s
                            and epoch < tr.nepochs):
                        status = "time_limit"
                        break
        except NonFiniteError as err:
            status, nan_err = "nan", err
            h = self.history
            if not h.epochs or h.epochs[-1] != err.epoch:
                h.append(err.epoch, err.step, {k: (float("nan") if k == err.metric else None)
                                               for k in set(h.metrics) | {err.metric}})
            self._write_history()
            self.log(f"error: {err}")
        finally:
            dd.barrier(info)
            dd.teardown(info)
        result = self._result(status, nan_err, time.perf_counter() - t_start)
        if info.is_main:
            write_json(self.out_dir / "train_result.json", result.to_dict())
        return result

    def _result(self, status: str, nan_err: NonFiniteError | None, seconds: float) -> TrainResult:
        summary = self.history.summary()
        firsts = [m for m in summary["metrics"].values() if m["has_nan"]]
        first_epoch = min((m["first_nan_epoch"] for m in firsts), default=None)
        first_step = min((m["first_nan_step"] for m in firsts), default=None)
        completed = self.history.epochs[-1] if self.history.epochs else 0
        if status == "nan":
            completed = nan_err.epoch - 1
        return TrainResult(
            status=status, epochs_completed=int(completed),
            early_stopped=status == "early_stopped",
            final_loss=self.last_train_loss, final_val_loss=self.last_val_loss,
            best_val_loss=None if not math.isfinite(self.best_val) else self.best_val,
            best_epoch=self.best_epoch, nan_detected=bool(summary["nan_overview"]["has_nan"]),
            first_nan_epoch=nan_err.epoch if nan_err else first_epoch,
            first_nan_step=nan_err.step if nan_err else first_step,
            nan_message=str(nan_err) if nan_err else None,
            history_path=str(self.hist_path), history_summary_path=str(self.summ_path),
            best_checkpoint=str(self.best_path) if self.best_path.exists() else None,
            last_checkpoint=str(self.last_path) if self.last_path.exists() else None,
            samples_per_second=(self.total_samples / self.total_train_time)
            if self.total_train_time > 0 else None,
            train_seconds=seconds, global_steps=self.global_step, device=str(self.device),
            world_size=self.info.world_size,
            resumed_from=self.ckpt["path"] if self.ckpt else None, scales=self.scales,
            collapse_events=[dict(e) for e in self.guard.events],
            lr_schedule=self.tr.lr_schedule, final_lr=self.opt.param_groups[0]["lr"],
            precision=dict(self.precision_record))


def train(config: RunConfig, ds: Dataset, output_dir: str | Path, *, resume: str | Path | None = None,
          progress: bool = True, time_limit_s: float | None = None, hooks: dict | None = None,
          log=print) -> TrainResult:
    """Train the PINN on the training split of ``ds``; write history and checkpoints (rank 0).

    ``resume``: a run directory or checkpoint file; training continues from its last epoch (the
    optimizer, scheduler, RNG, collapse guard and history are restored; ``config.training.nepochs``
    is the total). ``time_limit_s``: stop cleanly after the epoch that crosses this wall time
    (status 'time_limit'). ``hooks``: optional callables ``after_step(model, epoch, step)`` (for
    fault injection in tests) and ``after_epoch(trainer, epoch, metrics)`` (called after the
    epoch's checkpoints are written; studies evaluate there). Runs unchanged under torchrun (see distributed.py).
    """
    return Trainer(config, ds, output_dir, resume=resume, progress=progress,
                   time_limit_s=time_limit_s, hooks=hooks, log=log).run()
