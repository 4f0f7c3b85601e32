"""baseline_metadata.json: one run of the iterative baseline (``ptychotrace baseline`` and each
sweep point's ``baseline/<name>/``), written by :func:`ptychotrace.stages.baseline.run_baseline`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Block, Record
from .comparison import ComparisonHeadline
from .run_metadata import RunError

BASELINE_METADATA_FILE = "baseline_metadata.json"
BASELINE_SCHEMA = "1.1"   # 1.1: typed; one writer for the command and the sweep


class BaselineSettings(Block):
    """What decides a baseline result (the sweep's resume signature). ``smooth`` only when on,
    so that signatures of earlier sweeps still match."""

    algorithm: str
    iterations: int
    split: str
    smooth: bool | None = None


class ReconstructionSummary(Block):
    """baseline.BaselineResult.summary(): counts, iterations, timings (s), costs, fractions."""

    algorithm: str
    likelihood: str
    split: str
    n_patterns: int
    iterations: int
    best_iteration: int
    stop_reason: str
    total_iterations: int
    wall_time_s: float
    patterns_per_second: float
    seconds_per_pattern: float
    coverage_fraction: float
    illuminated_fraction: float
    covered_illuminated_fraction: float
    params: dict[str, Any] = Field(default_factory=dict)


class Coverage(Block):
    """Which mask the baseline was evaluated on."""

    used: Literal["pinn", "baseline"]
    source: str
    fraction_used: float
    baseline_fraction: float
    pinn_fraction: float | None
    identical_to_baseline_mask: bool
    used_outside_illuminated_px: int
    rule: str


class DatasetRef(Block):
    sha256: str | None = None
    path: str | None = None
    record: str | None = None
    source: str | None = None


class BaselineMetadata(Record):
    schema_version: str = BASELINE_SCHEMA
    status: Literal["ok", "failed"]
    partial: bool = False
    scenario: str | None = None
    timestamp: str
    finished_at: str | None = None
    elapsed_seconds: float | None = None
    point: dict[str, Any] | None = None
    dataset: DatasetRef = Field(default_factory=DatasetRef)
    baseline_settings: BaselineSettings
    previous_contents_moved_to: str | None = None
    reconstruction: ReconstructionSummary | None = None
    coverage: Coverage | None = None
    comparison: ComparisonHeadline | None = None
    artifacts: list[str] = Field(default_factory=list)
    failed_stage: str | None = None
    error: RunError | None = None
    environment: dict[str, Any] | None = None

    @property
    def finished_ok(self) -> bool:
        return self.status == "ok" and not self.partial
