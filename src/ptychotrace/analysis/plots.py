"""The analyzer's figure: amplitude bias, Pearson r and the scale-chain ratios per scenario.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), and
written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..telemetry.scale_chain import RATIO_DEFS
from ..telemetry.stats import dig as _get
from ..telemetry.writers import atomic_path


def _val(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) \
        and math.isfinite(x) else math.nan


def _log10(v: float) -> float:
    return math.log10(v) if v > 0 else math.nan  # NaN (missing) compares False as well


def plot_bias_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Three panels: amplitude bias mean (+median), amplitude/phase Pearson r, and log10 of the
    scale-chain ratios (0 = unchanged). Missing values are left blank and marked "n/a"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scen = summary["scenarios"]
    names = list(scen)
    x = list(range(len(names)))
    fig = Figure(figsize=(max(8.0, 2.2 * len(names) + 4), 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_bias, ax_r, ax_scale = fig.subplots(3, 1)

    def bars(ax, series: dict[str, list[float]], ylabel: str, title: str) -> None:
        k = len(series)
        width = 0.8 / max(k, 1)
        for i, (label, vals) in enumerate(series.items()):
            pos = [xi - 0.4 + width * (i + 0.5) for xi in x]
            ax.bar(pos, [0.0 if math.isnan(v) else v for v in vals], width, label=label)
            for p, v in zip(pos, vals, strict=True):
                if math.isnan(v):
                    ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, names)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if k > 1:
            ax.legend(fontsize=8, ncols=min(k, 5))

    bars(ax_bias, {
        "mean": [_val(_get(scen[n], "comparison", "amplitude", "bias_summary", "mean"))
                 for n in names],
        "median": [_val(_get(scen[n], "comparison", "amplitude", "bias_summary", "median"))
                   for n in names],
    }, "pred - truth (object units)", "Amplitude bias on the covered region")
    bars(ax_r, {
        ch: [_val(_get(scen[n], "comparison", ch, "pearson_r")) for n in names]
        for ch in ("amplitude", "phase")
    }, "Pearson r", "Correlation with ground truth")
    ratio_names = [r for r in RATIO_DEFS if any(
        _get(scen[n], "derived_stage_ratios", "ratios", r) is not None for n in names)] \
        or ["prediction_to_truth"]
    bars(ax_scale, {
        r: [_log10(_val(_get(scen[n], "derived_stage_ratios", "ratios", r))) for n in names]
        for r in ratio_names
    }, "log10(ratio of stage means)", "Scale chain per stage (0 = unchanged)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
