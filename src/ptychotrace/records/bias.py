"""bias_summary.json as its readers see it: the analyzer's verdicts and the per-scenario numbers
the report shows.

The analyzer writes the file through :class:`ptychotrace.analysis.records.BiasSummary` (the top
level and the verdicts typed, the per-scenario detail blocks free-form dicts). This module types
the parts of those detail blocks that other stages read (the report), under the analyzer's own
field names (analysis/bias.py ``analyze_run``), so a renamed field fails when the file is read.
A check that could not be made has ``available`` False and a ``reason``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..analysis.records import Verdict
from .base import Block, Record
from .comparison import BiasSummary

BIAS_SUMMARY_FILE = "bias_summary.json"


class AnalyzedChannel(Block):
    """One channel's headline numbers (analysis.blocks._channel_headline); amplitude in object
    amplitude units, phase in rad."""

    mae: float | None
    rmse: float | None
    pearson_r: float | None
    ssim: float | None
    bias_summary: BiasSummary | None


class AnalyzedComparison(Block):
    amplitude: AnalyzedChannel | None
    phase: AnalyzedChannel | None


class AnalyzedIntensity(Block):
    """The dose scale used (sqrt(photons)), how it was chosen, and model - used."""

    available: bool
    used_scale: float | None
    used_mode: str | None
    delta_scale: float | None


class TrainingNanCheck(Block):
    available: bool
    any_nan: bool | None


class Check(Block):
    """A check of the analyzer: its verdict when made, otherwise why not (``available`` False:
    the input was absent; a verdict of None with a reason: the input says why it has none)."""

    available: bool
    verdict: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _verdict_or_reason(self) -> Check:
        # (a recorded block without a verdict, e.g. no ground truth, carries its reason)
        if self.verdict is None and self.reason is None:
            raise ValueError("a check needs a verdict, or the reason it has none")
        return self


class InvariantCheck(Block):
    """The normalisation invariant (symmetry check of the scale chain), recomputed."""

    available: bool
    violated: bool | None = None
    violations: list[str] = Field(default_factory=list)
    reason: str | None = None


class Diagnosis(Block):
    """The decision procedure's verdict (analysis/rules.py) with its one line."""

    healthy: bool
    stage: str
    label: str
    reason: str
    line: str
    exceeds_threshold: bool
    score: float | None = None


class AnalyzedScenario(Block):
    run_dir: str
    status: str | None
    comparison: AnalyzedComparison
    intensity: AnalyzedIntensity
    training_nan: TrainingNanCheck
    split_parity: Check
    label_vs_truth: Check
    normalization_invariant: InvariantCheck
    absent: list[str]
    diagnosis: Diagnosis


class AnalysisOverview(Block):
    mean_amplitude_pearson: float | None
    mean_phase_pearson: float | None
    mean_abs_amplitude_bias: float | None
    failed_runs: list[str]
    nan_runs: list[str]
    normalization_invariant_violations: list[str]
    split_parity_violations: list[str]


class AnalysisSummary(Record):
    """The whole bias_summary.json, read (the writer's model is analysis.records.BiasSummary;
    the field names here are a subset of its own, tested)."""

    schema_version: str
    generated_at: str
    scenario_count: int
    inputs: dict[str, str]
    thresholds: dict[str, float]
    verdicts: dict[str, Verdict]
    scenarios: dict[str, AnalyzedScenario]
    overview: AnalysisOverview
    artifacts: list[str] = Field(default_factory=list)
