"""train_outputs/history.json and history_summary.json: the per-epoch training history
(written by :class:`ptychotrace.train.history.History`, read by the report and the analyzer).

Losses and metrics are the trainer's own (the Poisson NLL normalised by the frozen training mean,
MAE in object amplitude units, the learning rate); a non-finite value is stored as null and listed
in ``nonfinite``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Block, Record

HISTORY_FILE = "train_outputs/history.json"
HISTORY_SUMMARY_FILE = "train_outputs/history_summary.json"


class TrainingHistory(Record):
    """history.json: one value per epoch for each metric (``val_`` prefix: validation)."""

    epochs: list[int]
    steps: list[int]
    metrics: dict[str, list[float | None]]
    nonfinite: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)


class MetricSummary(Block):
    count: int
    last: float | None
    min: float | None
    max: float | None
    first_nan_step: int | None
    first_nan_epoch: int | None
    has_nan: bool


class NanOverview(Block):
    has_nan: bool
    metrics: list[str]


class HistorySummary(Record):
    """history_summary.json (History.summary())."""

    metrics: dict[str, MetricSummary]
    epochs_recorded: int
    nan_overview: NanOverview
    events: list[dict[str, Any]] = Field(default_factory=list)
