"""Cross-run analysis: the bias analyzer (``bias``: loading and the summary; ``blocks``: the
per-run blocks), its decision rules (``rules``, ``evidence``), the supplementary ratio ranking
(``ranking``), the Markdown page (``markdown``) and its figure (``plots``)."""

from .bias import (
    AnalyzerInputError,
    analyze_run,
    analyze_runs,
    load_run,
    parse_scenario_args,
)
from .markdown import TABLE_HEADER, render_bias_markdown

__all__ = ["TABLE_HEADER", "AnalyzerInputError", "analyze_run", "analyze_runs", "load_run",
           "parse_scenario_args", "render_bias_markdown"]
