"""The analyze directory's report (bias_summary.json of the analyzer)."""

from __future__ import annotations

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
    """The analyze page (long by choice: one page, its sections in order). bias_summary.json is
    validated once (records.bias.AnalysisSummary)."""
    from ..records.bias import BIAS_SUMMARY_FILE, AnalysisSummary

    bs = d.required_record(AnalysisSummary, BIAS_SUMMARY_FILE)
    ov = bs.overview
    overview: list = [KeyValues([
        ("generated (UTC)", fmt(bs.generated_at)),
        ("scenarios", fmt(bs.scenario_count)),
        ("mean amplitude Pearson r", fmt(ov.mean_amplitude_pearson)),
        ("mean phase Pearson r", fmt(ov.mean_phase_pearson)),
        ("mean |amplitude bias|", fmt(ov.mean_abs_amplitude_bias, AMP_UNIT)),
        ("runs not ok", Cell(", ".join(ov.failed_runs), "bad") if ov.failed_runs else "none"),
        ("runs with NaN in training", Cell(", ".join(ov.nan_runs), "bad") if ov.nan_runs
         else "none"),
        ("normalisation invariant violated",
         ", ".join(ov.normalization_invariant_violations) or "none"),
        ("split parity beyond 5 %", ", ".join(ov.split_parity_violations) or "none"),
    ], caption="Analysis")]
    if bs.inputs:
        overview.append(Table(["scenario", "run directory"], [[k, v] for k, v in bs.inputs.items()],
                              "Inputs"))
    if bs.thresholds:
        overview.append(Details("Diagnosis thresholds", [KeyValues(
            [(k, _value(v)) for k, v in bs.thresholds.items()])]))
    rows = []
    for name, s in bs.scenarios.items():
        amp, ph = s.comparison.amplitude, s.comparison.phase
        ab = amp.bias_summary if amp is not None else None
        pb = ph.bias_summary if ph is not None else None
        nan, diag, inten = s.training_nan.any_nan, s.diagnosis, s.intensity
        rows.append([name, _status_cell(s.status),
                     fmt(ab.mean if ab else None), fmt(ab.median if ab else None),
                     fmt(pb.mean if pb else None, PHASE_UNIT),
                     fmt(pb.median if pb else None, PHASE_UNIT),
                     fmt(inten.used_scale, "sqrt(photons)"), fmt(inten.delta_scale),
                     fmt(inten.used_mode),
                     Cell("yes", "bad") if nan else ("no" if nan is False else "n/a"),
                     Cell(f"{diag.label or 'none'} ({fmt(diag.score)})",
                          "bad" if diag.exceeds_threshold else None)])
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
    for name, s in bs.scenarios.items():
        items: list = [("run directory", fmt(s.run_dir)), ("status", _status_cell(s.status))]
        for ch, unit in (("amplitude", ""), ("phase", PHASE_UNIT)):
            c = getattr(s.comparison, ch)
            if c is not None:
                items.append((f"{ch}: MAE / RMSE / Pearson r / SSIM",
                              f"{fmt(c.mae, unit)} / {fmt(c.rmse, unit)} / "
                              f"{fmt(c.pearson_r)} / {fmt(c.ssim)}"))
        for label, check in (("split parity", s.split_parity),
                             ("labels vs truth", s.label_vs_truth)):
            items.append((label, check.verdict if check.available and check.verdict else
                          f"not assessed ({check.reason})"))
        inv = s.normalization_invariant
        if inv.available and inv.violated is not None:
            items.append(("normalisation invariant", Cell("violated: " + ", ".join(
                inv.violations), "bad") if inv.violated else Cell("holds", "ok")))
        if s.absent:
            items.append(("absent (not fatal)", ", ".join(s.absent)))
        per.append(KeyValues(items, caption=name))
        # the analyzer's verdict (analysis/rules.py): healthy or the fault, in one line
        per.append(Para(s.diagnosis.line, "bad" if s.diagnosis.exceeds_threshold else "ok"))
    if not per:
        per = [_missing("not available (no scenarios in bias_summary.json)")]
    sections = [Section("overview", "Overview", overview), Section("summary", "Summary", summary),
                Section("figures", "Figures", figs), Section("scenarios", "Scenarios", per)]
    header = [("directory", str(d.root)), ("analysis generated", bs.generated_at),
              ("report generated", _utc_now())]
    return Document(f"Bias analysis report: {d.root.name}", "analyze", header, sections)
