"""Cross-run analysis: the bias analyzer (``bias``) and its figure (``plots``)."""

from .bias import (
    TABLE_HEADER,
    AnalyzerInputError,
    analyze_run,
    analyze_runs,
    load_run,
    parse_scenario_args,
    render_bias_markdown,
)

__all__ = ["TABLE_HEADER", "AnalyzerInputError", "analyze_run", "analyze_runs", "load_run",
           "parse_scenario_args", "render_bias_markdown"]
