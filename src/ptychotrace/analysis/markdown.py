"""bias_summary.md: the Markdown page rendered from the bias_summary.json content."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..telemetry.stats import dig as _dig
from ..telemetry.stats import format_number

TABLE_HEADER = ("| scenario | amp bias mean | median | phase bias mean | median | scale | "
                "delta scale | scale mode | NaN |")


def _f(x: Any) -> str:
    return format_number(x)


def _nan_cell(s: Mapping[str, Any]) -> str:
    flag = _dig(s, "training_nan", "any_nan")
    return "n/a" if flag is None else ("yes" if flag else "no")


def _diagnosis_paragraph(name: str, s: Mapping[str, Any]) -> str:
    """The verdict in words, then the rules' trace (what each check found)."""
    d = s["diagnosis"]
    if d.get("healthy"):
        head = f"**Verdict: {name} is healthy.** {d['reason']}."
    else:
        head = (f"**Verdict: fault at {d['label']}.** {d['reason']}. Next: check "
                f"{d['next_check']}.")
    trace = "; ".join(f"{t['rule']}: {t['outcome']} ({t['detail']})" for t in d.get("trace", []))
    notes = (" Notes: " + " ".join(d["notes"])) if d.get("notes") else ""
    return f"{head}\n\nChecks, in order: {trace}.{notes}"


def _scenario_md(name: str, s: Mapping[str, Any]) -> list[str]:
    out = [f"## {name}", "", f"Run directory: `{s['run_dir']}`; status: {s.get('status')}.", ""]
    rows = []
    for ch in ("amplitude", "phase"):
        c = _dig(s, "comparison", ch)
        if isinstance(c, Mapping):
            rows.append(f"| {ch} | {_f(c.get('mae'))} | {_f(c.get('rmse'))} | "
                        f"{_f(c.get('pearson_r'))} | {_f(c.get('ssim'))} | {_f(c.get('psnr'))} | "
                        f"{_f(c.get('frc50'))} | {_f(c.get('coverage_fraction'))} |")
    if rows:
        out += ["| channel | mae | rmse | pearson | ssim | psnr | frc50 | coverage |",
                "|---|---|---|---|---|---|---|---|", *rows, ""]
    dr = s["derived_stage_ratios"]
    if dr.get("available"):
        out.append("Scale chain (ratios of stage means): " + ", ".join(
            f"{k} {_f(v)}" for k, v in dr["ratios"].items()) + ".")
        inv = s["normalization_invariant"]
        out.append(f"Normalisation invariant violated: {_f(inv['violated'])}"
                   + (f" ({', '.join(inv['violations'])})" if inv["violations"] else "")
                   + "; largest deviation from the expected ratio at stage "
                   f"{inv['primary_deviation_source'] or 'n/a'}.")
    sp = s["split_parity"]
    if sp.get("available"):
        out.append(f"Split parity: train/test scale ratio {_f(sp['train_vs_test_scale_ratio'])}, "
                   f"deviation {_f(sp['deviation_pct'])}% ({sp['verdict']}).")
    lvt = s["label_vs_truth"]
    if lvt.get("available"):
        out.append(f"Labels vs truth: gap {_f(lvt.get('amplitude_gap_pct'))}%; verdict: "
                   f"{lvt.get('verdict')}.")
    pv = s["prediction_vs_truth_scaling"]
    if pv.get("available"):
        out.append("Prediction scaling candidates: " + ", ".join(
            f"{k} {_f(c['value'])}" for k, c in pv["candidates"].items())
            + f"; best {pv['best']['name']} (residual mean bias "
              f"{_f(pv['best']['residual_bias_mean'])}).")
    lc = s["loss_composition"]
    if lc.get("available"):
        out.append("Loss weights: " + ", ".join(f"{k} {_f(v)}" for k, v in lc["weights"].items())
                   + ".")
    tn = s["training_nan"]
    if tn.get("available"):
        out.append(f"NaN in training: {_nan_cell(s)}"
                   + (f" (first at epoch {tn['first_nan_epoch']}, step {tn['first_nan_step']})"
                      if tn.get("any_nan") else "") + ".")
    if s["absent"]:
        out.append("Absent (reported, not fatal): " + ", ".join(s["absent"]) + ".")
    out += ["", _diagnosis_paragraph(name, s), ""]
    return out


def render_bias_markdown(summary: Mapping[str, Any]) -> str:
    """bias_summary.md from the bias_summary.json content."""
    scen = summary["scenarios"]
    out = ["# Bias summary", "",
           f"Generated {summary['generated_at']} from {summary['scenario_count']} run(s).", "",
           TABLE_HEADER, "|---|---|---|---|---|---|---|---|---|"]
    for name, s in scen.items():
        amp_b, ph_b = (_dig(s, "comparison", ch, "bias_summary") for ch in ("amplitude", "phase"))
        out.append(f"| {name} | {_f(_dig(amp_b, 'mean'))} | {_f(_dig(amp_b, 'median'))} | "
                   f"{_f(_dig(ph_b, 'mean'))} | {_f(_dig(ph_b, 'median'))} | "
                   f"{_f(s['intensity']['used_scale'])} | {_f(s['intensity']['delta_scale'])} | "
                   f"{s['intensity']['used_mode'] or 'n/a'} | {_nan_cell(s)} |")
    out += ["", "Bias = prediction - truth over the covered region (amplitude in object units, "
                "phase in radians after global offset removal). scale = dose scale used "
                "(sqrt(photons)); delta scale = scale held by the model - scale used; scale mode = "
                "dataset | closed_form; NaN = NaN seen during training.", ""]
    ov = summary["overview"]
    out += ["## Verdicts", "", *[f"- {line}" for line in summary.get("verdict_lines", {}).values()],
            ""]
    out += ["## Overview", "",
            f"- mean amplitude Pearson: {_f(ov['mean_amplitude_pearson'])}; mean phase Pearson: "
            f"{_f(ov['mean_phase_pearson'])}"]
    for metric, w in ov["worst"].items():
        if w:
            out.append(f"- worst {metric}: {w['scenario']} ({_f(w['value'])})")
    out.append("- verdicts: " + ", ".join(
        f"{n}: {scen[n]['diagnosis']['label']}" for n in ov["diagnoses"]))
    if ov["failed_runs"]:
        out.append(f"- runs not ok: {', '.join(ov['failed_runs'])}")
    out.append("")
    for name, s in scen.items():
        out += _scenario_md(name, s)
    return "\n".join(out)
