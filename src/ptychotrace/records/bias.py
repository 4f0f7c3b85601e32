"""bias_summary.json: the analyzer's verdicts and per-run numbers, one typed model for the
writer (analysis/bias.py ``analyze_runs``) and every reader (the report).

The top level, the verdicts and the per-scenario blocks other stages read are typed under the
analyzer's own field names (analysis/bias.py ``analyze_run``); the writer validates the whole
summary through :class:`AnalysisSummary` before anything is written, so a renamed or dropped
field fails in the analyzer, not later in a reader. Blocks keep extra keys (the detail the
Markdown summary shows; docs/telemetry.md). A check that could not be made has ``available``
False and a ``reason``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Block, Record
from .comparison import BiasSummary

BIAS_SUMMARY_FILE = "bias_summary.json"
BIAS_SUMMARY_SCHEMA_VERSION = "2.0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleOutcome(_Strict):
    """One rule of the decision procedure: what it checked and what it found."""

    rule: str
    outcome: Literal["pass", "fault", "not_assessed"]   # not_assessed: e.g. needs a ground truth
    detail: str


class Verdict(_Strict):
    """The decision for one run: healthy, or the stage at fault with evidence and what to check."""

    healthy: bool
    stage: str                     # a key of analysis.rules.STAGE_LABELS ("healthy" when healthy)
    label: str
    reason: str
    evidence: dict[str, Any]
    next_check: str | None
    trace: list[RuleOutcome]
    notes: list[str] = []

    def line(self, name: str) -> str:
        """The one line a person acts on."""
        if self.healthy:
            return f"{name}: HEALTHY - {self.reason}"
        return f"{name}: FAULT at {self.label} - {self.reason}. Next: check {self.next_check}."


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
    """The whole bias_summary.json (schema 2.0), as written and as read."""

    schema_version: str = BIAS_SUMMARY_SCHEMA_VERSION
    generated_at: str
    scenario_count: int
    inputs: dict[str, str]
    thresholds: dict[str, float]
    decision_limits: dict[str, float] = Field(default_factory=dict)
    verdicts: dict[str, Verdict]
    verdict_lines: dict[str, str] = Field(default_factory=dict)
    scenarios: dict[str, AnalyzedScenario]
    overview: AnalysisOverview
    artifacts: list[str] = Field(default_factory=list)
