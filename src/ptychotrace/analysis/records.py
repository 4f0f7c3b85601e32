"""The analyzer's output records, re-exported from their one home, :mod:`ptychotrace.records.bias`
(bias_summary.json: ``AnalysisSummary`` with its ``Verdict`` and ``RuleOutcome``)."""

from ..records.bias import BIAS_SUMMARY_SCHEMA_VERSION, AnalysisSummary, RuleOutcome, Verdict

__all__ = ["BIAS_SUMMARY_SCHEMA_VERSION", "AnalysisSummary", "RuleOutcome", "Verdict"]
