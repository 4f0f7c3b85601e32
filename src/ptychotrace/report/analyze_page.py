"""The analyze directory's report (bias_summary.json of the analyzer)."""

from __future__ import annotations

from collections.abc import Mapping

from ..telemetry.stats import dig as _dig
from .common import AMP_UNIT, PHASE_UNIT, _Dir, _missing, _status_cell, _utc_now, _value, fmt
from .html import (
    Cell,
    Details,
    Document,
    KeyValues,
    Para,
    Section,
    Table,
)
from .sweep_page import _png_figures


# --------------------------------------------------------------------------------------------
# analyze directory (bias_summary.json of the analyzer)
# --------------------------------------------------------------------------------------------
def _analyze_document(d: _Dir) -> Document:
    """The analyze page (long by choice: one page, its sections in order)."""
    bs = d.required("bias_summary.json")
    scen = bs.get("scenarios") if isinstance(bs.get("scenarios"), Mapping) else {}
    ov = bs.get("overview") if isinstance(bs.get("overview"), Mapping) else {}
    overview: list = [KeyValues([
        ("generated (UTC)", fmt(bs.get("generated_at"))),
        ("scenarios", fmt(bs.get("scenario_count"))),
        ("mean amplitude Pearson r", fmt(ov.get("mean_amplitude_pearson"))),
        ("mean phase Pearson r", fmt(ov.get("mean_phase_pearson"))),
        ("mean |amplitude bias|", fmt(ov.get("mean_abs_amplitude_bias"), AMP_UNIT)),
        ("runs not ok", Cell(", ".join(ov["failed_runs"]), "bad") if ov.get("failed_runs") else "none"),
        ("runs with NaN in training", Cell(", ".join(ov["nan_runs"]), "bad") if ov.get("nan_runs")
         else "none"),
        ("normalisation invariant violated", ", ".join(ov.get("normalization_invariant_violations")
                                                       or []) or "none"),
        ("split parity beyond 5 %", ", ".join(ov.get("split_parity_violations") or []) or "none"),
    ], caption="Analysis")]
    inputs = bs.get("inputs")
    if isinstance(inputs, Mapping):
        overview.append(Table(["scenario", "run directory"], [[k, str(v)] for k, v in inputs.items()],
                              "Inputs"))
    if isinstance(bs.get("thresholds"), Mapping):
        overview.append(Details("Diagnosis thresholds", [KeyValues(
            [(k, _value(v)) for k, v in bs["thresholds"].items()])]))
    rows = []
    for name, s in scen.items():
        ab, pb = (_dig(s, "comparison", ch, "bias_summary") for ch in ("amplitude", "phase"))
        nan = _dig(s, "training_nan", "any_nan")
        diag = s.get("diagnosis") if isinstance(s.get("diagnosis"), Mapping) else {}
        rows.append([name, _status_cell(s.get("status")), fmt(_dig(ab, "mean")), fmt(_dig(ab, "median")),
                     fmt(_dig(pb, "mean"), PHASE_UNIT), fmt(_dig(pb, "median"), PHASE_UNIT),
                     fmt(_dig(s, "intensity", "used_scale"), "sqrt(photons)"),
                     fmt(_dig(s, "intensity", "delta_scale")),
                     fmt(_dig(s, "intensity", "used_mode")),
                     Cell("yes", "bad") if nan else ("no" if nan is False else "n/a"),
                     Cell(f"{diag.get('label') or 'none'} ({fmt(diag.get('score'))})",
                          "bad" if diag.get("exceeds_threshold") else None)])
    summary: list = [Table(["scenario", "status", "amp bias mean", "amp bias median",
                            "phase bias mean", "phase bias median", "dose scale", "delta scale",
                            "scale mode", "NaN", "diagnosis (score)"], rows,
                           "Bias summary (bias_summary.json)", numeric=(2, 3, 4, 5, 6, 7)) if rows
                     else _missing("not available (no scenarios in bias_summary.json)"),
                     Para("Bias = prediction - truth on the covered region (amplitude in "
                          f"{AMP_UNIT}, phase in radians after offset removal); delta scale = scale "
                          "held by the model - scale used; a diagnosis score above 1 exceeds its "
                          "threshold.", "note")]
    figs = _png_figures(d) or [_missing("not available (file bias_summary.png missing)")]
    per: list = []
    for name, s in scen.items():
        diag = s.get("diagnosis") if isinstance(s.get("diagnosis"), Mapping) else {}
        items: list = [("run directory", fmt(s.get("run_dir"))), ("status", _status_cell(s.get("status")))]
        for ch, unit in (("amplitude", ""), ("phase", PHASE_UNIT)):
            c = _dig(s, "comparison", ch)
            if isinstance(c, Mapping):
                items.append((f"{ch}: MAE / RMSE / Pearson r / SSIM",
                              f"{fmt(c.get('mae'), unit)} / {fmt(c.get('rmse'), unit)} / "
                              f"{fmt(c.get('pearson_r'))} / {fmt(c.get('ssim'))}"))
        for label, key in (("split parity", "split_parity"), ("labels vs truth", "label_vs_truth")):
            blk = s.get(key) if isinstance(s.get(key), Mapping) else {}
            items.append((label, fmt(blk.get("verdict")) if blk.get("available") else
                          f"not assessed ({blk.get('reason', 'absent')})"))
        inv = s.get("normalization_invariant") if isinstance(s.get("normalization_invariant"),
                                                              Mapping) else {}
        if inv.get("available", True) and "violated" in inv:
            items.append(("normalisation invariant", Cell("violated: " + ", ".join(
                inv.get("violations") or []), "bad") if inv.get("violated") else Cell("holds", "ok")))
        if s.get("absent"):
            items.append(("absent (not fatal)", ", ".join(map(str, s["absent"]))))
        per.append(KeyValues(items, caption=name))
        if diag.get("line"):   # the analyzer's verdict (analysis/rules.py): healthy or the fault
            per.append(Para(diag["line"], "bad" if diag.get("exceeds_threshold") else "ok"))
        elif diag.get("stage"):
            text = (f"{name}: most deviating stage is {diag.get('label')} (normalised deviation "
                    f"{fmt(diag.get('score'))}, threshold 1): {diag.get('reason')}.")
            per.append(Para(text, "bad" if diag.get("exceeds_threshold") else "ok"))
        else:
            per.append(Para(f"{name}: {diag.get('reason', 'no diagnosis recorded')}", "warn"))
    if not per:
        per = [_missing("not available (no scenarios in bias_summary.json)")]
    sections = [Section("overview", "Overview", overview), Section("summary", "Summary", summary),
                Section("figures", "Figures", figs), Section("scenarios", "Scenarios", per)]
    header = [("directory", str(d.root)), ("analysis generated", fmt(bs.get("generated_at"))),
              ("report generated", _utc_now())]
    return Document(f"Bias analysis report: {d.root.name}", "analyze", header, sections)
