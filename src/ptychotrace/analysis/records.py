"""Typed records of the analyzer's output (bias_summary.json): the per-run verdict and the summary.

The per-scenario detail blocks (intensity, comparison, scale chain, ...) keep their documented
field names (docs/telemetry.md) and stay free-form dicts here; the verdict and the top level are
typed and validated before anything is written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

BIAS_SUMMARY_SCHEMA_VERSION = "2.0"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleOutcome(_Record):
    """One rule of the decision procedure: what it checked and what it found."""

    rule: str
    outcome: Literal["pass", "fault", "not_assessed"]   # not_assessed: e.g. needs a ground truth
    detail: str


class Verdict(_Record):
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


class BiasSummary(_Record):
    """bias_summary.json."""

    schema_version: str = BIAS_SUMMARY_SCHEMA_VERSION
    generated_at: str
    scenario_count: int
    inputs: dict[str, str]
    thresholds: dict[str, float]
    decision_limits: dict[str, float]
    verdicts: dict[str, Verdict]
    verdict_lines: dict[str, str]
    scenarios: dict[str, dict[str, Any]]
    overview: dict[str, Any]
    artifacts: list[str]
