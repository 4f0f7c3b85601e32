"""sweep_summary.json: per dose, per seed and across seeds, PINN and baseline
(written by :mod:`ptychotrace.sweep`, read by the report)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Block, Record

SWEEP_SUMMARY_FILE = "sweep_summary.json"
SWEEP_SCHEMA = "1.0"
Method = Literal["pinn", "baseline"]


class PointMetrics(Block):
    """The numbers of one point and method (``sweep.METRICS`` describes each; seconds in s)."""

    amplitude_ssim: float | None = None
    amplitude_pearson_r: float | None = None
    amplitude_frc_half_bit_px: float | None = None
    phase_ssim: float | None = None
    phase_pearson_r: float | None = None
    amplitude_bias_mean: float | None = None
    phase_bias_mean: float | None = None
    least_squares_scale: float | None = None
    prediction_scale_applied: float | None = None
    coverage_fraction: float | None = None
    train_seconds: float | None = None
    inference_seconds: float | None = None
    inference_patterns_per_second: float | None = None
    baseline_seconds: float | None = None
    baseline_iterations: float | None = None
    seconds_per_pattern: float | None = None
    total_seconds_per_pattern: float | None = None
    network_seconds_per_pattern: float | None = None
    patterns: int | None = None


class MethodResult(Block):
    status: str
    ran_now: bool = False
    metrics: PointMetrics | None


class SweepRun(Block):
    name: str
    nphotons: float
    seed_index: int
    sim_seed: int
    training_seed: int
    run_dir: str
    baseline_dir: str
    resume_state: dict[str, Any] | None = None
    pinn: MethodResult | None = None
    baseline: MethodResult | None = None
    dataset_sha256: str | None = None


class SeedResult(Block):
    seed_index: int
    sim_seed: int
    training_seed: int
    status: str
    metrics: PointMetrics | None


class MethodAggregate(Block):
    n_ok: int
    n_seeds: int
    per_seed: list[SeedResult]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    n: dict[str, int]


class DoseBlock(Block):
    nphotons: float
    label: str
    pinn: MethodAggregate | None = None
    baseline: MethodAggregate | None = None
    speedup_vs_baseline: dict[str, Any] | None = None
    quality_vs_baseline: dict[str, Any] | None = None

    def method(self, name: str) -> MethodAggregate | None:
        return getattr(self, name)


class Seeds(Block):
    count: int
    base_sim_seed: int
    base_training_seed: int
    rule: str | None = None


class SweepSummary(Record):
    schema_version: str = SWEEP_SCHEMA
    status: Literal["ok", "failed", "running"]
    generated_at: str
    scenario: str
    output_dir: str
    doses: list[float]
    methods: list[Method]
    seeds: Seeds
    baseline: dict[str, Any]
    execution: dict[str, Any] = Field(default_factory=dict)
    metric_definitions: dict[str, str] = Field(default_factory=dict)
    std_definition: str | None = None
    cli_args: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    per_dose: list[DoseBlock]
    runs: list[SweepRun]
    skipped: list[dict[str, Any]] = Field(default_factory=list)
    failed: list[dict[str, Any]] = Field(default_factory=list)
    missing: list[dict[str, Any]] = Field(default_factory=list)
    figures: list[str] | None = None
    figures_error: str | None = None
