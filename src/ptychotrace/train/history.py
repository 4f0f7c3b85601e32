"""Training records: the per-epoch :class:`History`, the :class:`TrainResult`, the non-finite
error and the console progress bar (split out of trainer.py).

History events (``History.events``): a list of ``{"kind", "epoch", "step", ...}`` dicts, e.g. the
collapse guard's ``{"kind": "amplitude_collapse", ...}`` records (see guard.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


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
    events: list[dict] = field(default_factory=list)

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
                "nonfinite": {k: list(v) for k, v in self.nonfinite.items()},
                "events": [dict(e) for e in self.events]}

    @classmethod
    def from_dict(cls, d: dict | None) -> History:
        if not d:
            return cls()
        return cls(list(d["epochs"]), list(d["steps"]),
                   {k: list(v) for k, v in d["metrics"].items()},
                   {k: list(v) for k, v in d.get("nonfinite", {}).items()},
                   [dict(e) for e in d.get("events", [])])

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
                "nan_overview": {"has_nan": bool(nan_metrics), "metrics": nan_metrics},
                "events": [dict(e) for e in self.events]}


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What the runner puts under run_metadata ``training``."""

    status: str          # "completed" | "early_stopped" | "time_limit" | "nan" | "collapsed"
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
    #: Collapse-guard records (guard.py): one dict per detected amplitude collapse.
    collapse_events: list = field(default_factory=list)
    lr_schedule: str | None = None
    final_lr: float | None = None
    #: {precision, native_bfloat16 (True | False | None = unknown), warning}: the compute
    #: precision and whether this device computes it natively (model/precision.py)
    precision: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


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
            from ptychotrace.format import format_value, wrap_tokens

            # wrapped between "name value" pairs by us (soft_wrap stops rich re-wrapping), so a
            # narrow terminal never splits a number from its name (issue #15)
            pairs: dict[str, Any] = {"loss": ep["loss"]}
            if ep.get("val_loss") is not None:
                pairs["val"] = ep["val_loss"]
            pairs["lr"] = ep["lr"]
            pairs["samples/s"] = ep["samples_per_second"]
            if "pred_amp_mean" in ep:
                pairs["amp_mean"] = ep["pred_amp_mean"]
                pairs["amp_std"] = ep["pred_amp_std"]
            tokens = [f"epoch {epoch}:"] + [f"{k} {format_value(v, thousands=False)}"
                                            for k, v in pairs.items()]
            console = self._prog.console
            console.print(wrap_tokens(tokens, max(20, console.width)), soft_wrap=True,
                          markup=False, highlight=False)
