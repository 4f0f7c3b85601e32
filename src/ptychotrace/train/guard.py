"""Collapse guard: detect a collapse of the predicted amplitude to a flat object, at once.

The failure it exists for (issue #12): with 4000 training patterns, gs2_ideal collapsed in epoch 3
(predicted amplitude std 0.24, then 0.005 for the remaining 17 epochs, validation loss flat at the
flat-object value) and the run still finished "ok" after 14 minutes. A flat object is an
attractor of the Poisson loss (its gradient with respect to the pattern-dependent part vanishes
once the decoder's last units are dead), so the budget spent after it is wasted.

Statistic: the coefficient of variation ``cv = std / mean`` of the predicted amplitude over the
illuminated pixels (|P| > 0.1 max) of a FIXED batch -- the whole validation split, or the first
``GUARD_BATCH`` training groups without one -- measured after every epoch (``pred_amp_cv`` in the
history). It is scale-free, so it does not depend on the dose or the object's mean amplitude.

Rule: epoch e collapses when ``cv_e < ratio * max(cv_1 .. cv_{e-1})`` (``training.collapse_ratio``,
default 0.05: a 20-fold drop; the reported collapse was a 48-fold drop, 0.24 -> 0.005 in std at an
unchanged mean). Measured (docs/benchmarks.md, "The network alone"): the flat-object plateau at
the start has cv 0.0025-0.025; afterwards cv fell by at most ~3x in one epoch on gs1 runs (tiny
test run 0.017 -> 0.006, GroupNorm run 0.025 -> 0.0085) and by 7x at the gs2 merge onset
(0.121 -> 0.016, validation loss improving), all above the bound. The epoch-1 value is the first
reference, so an early plateau cannot trigger the guard by itself.

Action (trainer.py): a warning in the log at once, a ``{"kind": "amplitude_collapse"}`` event in the
history and in ``TrainResult.collapse_events``; the collapsed weights are not saved as 'best';
the best weights so far are reloaded, Adam restarts (fresh moments) at ``lr x collapse_lr_factor``
and the schedule restarts from there. After ``collapse_max_recoveries`` recoveries the run stops
with status 'collapsed' (the best checkpoint stays the one inference uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Training groups used for the statistic when there is no validation split.
GUARD_BATCH = 64


@dataclass
class CollapseGuard:
    """Per-epoch bookkeeping of ``cv``; :meth:`check` says whether epoch ``epoch`` collapsed."""

    ratio: float
    enabled: bool = True
    max_recoveries: int = 2
    best_cv: float | None = None         # max cv over the epochs seen so far
    best_cv_epoch: int | None = None
    recoveries: int = 0
    events: list[dict] = field(default_factory=list)

    def check(self, epoch: int, cv: float) -> dict | None:
        """Record ``cv`` of ``epoch``; return a collapse record (not yet stored) or None."""
        ref, ref_epoch = self.best_cv, self.best_cv_epoch
        if ref is None or cv > ref:
            self.best_cv, self.best_cv_epoch = float(cv), int(epoch)
        if not self.enabled or ref is None or not ref > 0:
            return None
        if cv < self.ratio * ref:
            return {"kind": "amplitude_collapse", "epoch": int(epoch), "pred_amp_cv": float(cv),
                    "reference_cv": float(ref), "reference_epoch": ref_epoch,
                    "ratio_bound": self.ratio,
                    "rule": "pred_amp_cv < collapse_ratio * max(pred_amp_cv of earlier epochs)"}
        return None

    @property
    def can_recover(self) -> bool:
        return self.recoveries < self.max_recoveries

    def state(self) -> dict:
        return {"best_cv": self.best_cv, "best_cv_epoch": self.best_cv_epoch,
                "recoveries": self.recoveries, "events": [dict(e) for e in self.events]}

    def load_state(self, st: dict | None) -> None:
        if not st:
            return
        self.best_cv, self.best_cv_epoch = st.get("best_cv"), st.get("best_cv_epoch")
        self.recoveries = int(st.get("recoveries", 0))
        self.events = [dict(e) for e in st.get("events", [])]
