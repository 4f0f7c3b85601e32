"""Figures of a dose sweep (matplotlib's Agg canvas on Figure objects; no global backend switch).

Each figure plots the per-dose mean across seeds with the sample std as error bars, log dose axis,
one line per method (PINN, baseline). Missing values are left out (a method with no value at any
dose is not drawn; an empty panel says "no data").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..telemetry.writers import atomic_path

QUALITY_PNG = "quality_vs_dose.png"
BIAS_PNG = "bias_vs_dose.png"
TIME_PNG = "time_vs_dose.png"

_STYLE = {"pinn": {"color": "tab:blue", "marker": "o", "label": "PINN"},
          "baseline": {"color": "tab:orange", "marker": "s", "label": "baseline"}}


def _series(summary: dict, method: str, key: str):
    xs, ys, es = [], [], []
    for block in summary.get("per_dose", []):
        b = block.get(method)
        if not b:
            continue
        m = (b.get("mean") or {}).get(key)
        if m is None:
            continue
        s = (b.get("std") or {}).get(key)
        xs.append(float(block["nphotons"]))
        ys.append(float(m))
        es.append(0.0 if s is None else float(s))
    order = np.argsort(xs)
    return np.asarray(xs)[order], np.asarray(ys)[order], np.asarray(es)[order]


def _panel(ax, summary: dict, key: str, ylabel: str, *, methods=None, logy: bool = False,
           hline: float | None = None, style_override: dict | None = None) -> None:
    drawn = False
    for method in methods or summary.get("methods", ["pinn"]):
        x, y, e = _series(summary, method, key)
        if x.size == 0:
            continue
        style = dict(_STYLE.get(method, {"label": method}))
        style.update((style_override or {}).get(method, {}))
        ax.errorbar(x, y, yerr=e if np.any(e > 0) else None, capsize=3, linewidth=1.3,
                    markersize=5, **style)
        drawn = True
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())  # decades are enough; minor labels cost time
    if logy and drawn:
        ax.set_yscale("log")
    ax.set_xlabel("photons per pattern")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if hline is not None:
        ax.axhline(hline, color="0.5", linewidth=0.8, linestyle=":")
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                color="0.4")


def _figure(ncols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4 * ncols, 3.9), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins instead of tight_layout (which measures every tick label: slow on log axes)
    width = 4.4 * ncols
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, bottom=0.14, top=0.88,
                        wspace=0.4)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _save(fig, path: Path) -> str:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path.name


def _title(summary: dict) -> str:
    n = (summary.get("seeds") or {}).get("count", 1)
    return f"{summary.get('scenario')}: mean ± std over {n} seed(s)"


def plot_quality(summary: dict, out_dir: Path) -> str:
    fig, (a, b, c) = _figure(3)
    _panel(a, summary, "amplitude_ssim", "amplitude SSIM", hline=1.0)
    _panel(b, summary, "amplitude_pearson_r", "amplitude Pearson r", hline=1.0)
    _panel(c, summary, "amplitude_frc_half_bit_px", "FRC ½-bit resolution (px, lower is better)")
    fig.suptitle(_title(summary), fontsize=10)
    return _save(fig, Path(out_dir) / QUALITY_PNG)


def plot_bias(summary: dict, out_dir: Path) -> str:
    fig, (a, b) = _figure(2)
    _panel(a, summary, "amplitude_bias_mean", "amplitude bias mean (pred - truth)", hline=0.0)
    _panel(b, summary, "least_squares_scale", "least-squares amplitude scale", hline=1.0)
    fig.suptitle(_title(summary), fontsize=10)
    return _save(fig, Path(out_dir) / BIAS_PNG)


def plot_time(summary: dict, out_dir: Path) -> str:
    fig, (a,) = _figure(1)
    methods = summary.get("methods", ["pinn"])
    _panel(a, summary, "seconds_per_pattern", "seconds per reconstructed pattern", methods=methods,
           logy=True, style_override={"pinn": {"label": "PINN inference"},
                                      "baseline": {"label": "baseline (all iterations)"}})
    x, y, e = _series(summary, "pinn", "total_seconds_per_pattern")
    if x.size:
        a.errorbar(x, y, yerr=e if np.any(e > 0) else None, capsize=3, color="tab:blue",
                   linestyle="--", marker="^", markersize=4, linewidth=1.0,
                   label="PINN train + inference")
        a.legend(fontsize=8)
    fig.suptitle(_title(summary), fontsize=10)
    return _save(fig, Path(out_dir) / TIME_PNG)


def plot_all(summary: dict, out_dir: Path) -> list[str]:
    """Write the three figures into out_dir; return their file names."""
    return [plot_quality(summary, out_dir), plot_bias(summary, out_dir),
            plot_time(summary, out_dir)]


__all__ = ["BIAS_PNG", "QUALITY_PNG", "TIME_PNG", "plot_all", "plot_bias", "plot_quality",
           "plot_time"]
