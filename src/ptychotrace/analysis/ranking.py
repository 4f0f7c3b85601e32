"""The supplementary ranking of recorded ratios against fixed thresholds (see the ``bias``
module docstring for the scoring rules). It never decides a verdict: :mod:`.rules` does."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..telemetry.stats import dig as _dig
from ..telemetry.stats import format_number


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None




def _rel(r: float | None) -> float | None:
    """max(r, 1/r) - 1; inf for r <= 0; None when r is missing."""
    if r is None:
        return None
    return max(r, 1.0 / r) - 1.0 if r > 0 else math.inf


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _shift_magnitude(shift: Any) -> float | None:
    if isinstance(shift, Mapping):
        shift = list(shift.values())
    if isinstance(shift, (list, tuple)):
        vals = [_num(v) for v in shift]
        return None if not vals or any(v is None for v in vals) else math.hypot(*vals)
    v = _num(shift)
    return None if v is None else abs(v)


THRESHOLDS = {
    "dose_scale_rel": 0.05,
    "split_parity_pct": 5.0,
    "label_gap_pct": 5.0,
    "model_output_rel": 0.05,
    "saturation_fraction": 0.05,
    "coverage_min_fraction": 0.1,
    "registration_shift_px": 2.0,
    "registration_error_max": 0.5,
    "nan_score": 1000.0,
}
#: Tie-break order (upstream first) and human names of the diagnosis stages.
STAGE_ORDER = ("dose_scale", "split_parity", "labels", "nan_in_training", "model_output",
               "coverage", "evaluation_frame")
STAGE_LABELS = {
    "dose_scale": "dose scale",
    "split_parity": "train/test parity",
    "labels": "labels vs truth",
    "nan_in_training": "NaN in training",
    "model_output": "model output",
    "coverage": "coverage",
    "evaluation_frame": "evaluation frame/registration",
}

def _candidate(stage: str, score: float, reason: str, evidence: Mapping[str, Any]) -> dict:
    return {"stage": stage, "label": STAGE_LABELS[stage], "score": score, "reason": reason,
            "evidence": dict(evidence)}


#: What a stage rule returns: a candidate dict, or the reason the stage was not assessed.
_Outcome = dict | str


def _dose_scale(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> _Outcome:
    """Dataset vs fallback scale and model vs used intensity scale."""
    T = THRESHOLDS  # noqa: N806
    intensity = s["intensity"]
    dsi, iscale = intensity.get("dataset_scale_info"), intensity.get("intensity_scale")
    devs: dict[str, float] = {}
    ds, fb = _num(_dig(dsi, "dataset_scale")), _num(_dig(dsi, "fallback_scale"))
    mode = intensity.get("used_mode")
    if mode in ("closed_form", "fallback") and ds and fb:
        devs["used_vs_dataset_scale"] = _rel(fb / ds)
    model_ratio = _num(_dig(iscale, "ratio"))
    if model_ratio is None:
        model_ratio = _ratio(_num(_dig(iscale, "model_value")), _num(_dig(iscale, "used_value")))
    if model_ratio is not None:
        devs["model_vs_used_scale"] = _rel(model_ratio)
    if not (devs or mode is not None):
        return "no dataset_scale_info or intensity_scale"
    worst = max(devs.items(), key=lambda kv: kv[1], default=("none", 0.0))
    return _candidate("dose_scale", worst[1] / T["dose_scale_rel"],
                      f"{worst[0]} deviates by {100 * worst[1]:.3g}%" if devs else
                      f"scale mode {mode}; no mismatch measurable",
                      {"used_mode": mode, "dataset_scale": ds, "fallback_scale": fb,
                       "model_vs_used_ratio": model_ratio, "deviations": devs})


def _split_parity(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> _Outcome:
    """Train/test scale deviation."""
    sp = s["split_parity"]
    if not sp.get("available"):
        return sp.get("reason", "absent")
    return _candidate("split_parity", sp["deviation_pct"] / THRESHOLDS["split_parity_pct"],
                      f"train/test scale deviation {sp['deviation_pct']:.3g}% "
                      f"({sp['verdict']})",
                      {"train_vs_test_scale_ratio": sp["train_vs_test_scale_ratio"],
                       "deviation_pct": sp["deviation_pct"]})


def _label_ratio(s: Mapping[str, Any]) -> float | None:
    """Labels' amplitude mean over the truth's (1 + gap/100), when the labels stage measured a gap."""
    lvt = s["label_vs_truth"]
    gap = lvt.get("amplitude_gap_pct")
    return 1.0 + gap / 100.0 if lvt.get("available") and gap is not None else None


def _labels(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> _Outcome:
    """Amplitude labels vs the ground truth."""
    lvt = s["label_vs_truth"]
    if not (lvt.get("available") and (lvt.get("amplitude_gap_pct") is not None
                                      or lvt.get("recorded_verdict_inconsistent"))):
        return lvt.get("reason", "no amplitude gap recorded")
    gap = lvt.get("amplitude_gap_pct")
    score = abs(gap) / THRESHOLDS["label_gap_pct"] if gap is not None else 1.0
    return _candidate(
        "labels", score,
        (f"amplitude labels differ from the ground truth by {gap:+.3g}%" if gap is not None
         else "recorded verdict says the labels are inconsistent with the truth"),
        {"amplitude_gap_pct": gap, "verdict": lvt.get("verdict"),
         "Y_amp_mean": lvt.get("Y_amp_mean"),
         "ground_truth_amp_mean": lvt.get("ground_truth_amp_mean"),
         "loss_label_terms_active": s["loss_composition"].get("label_terms_active")})


def _nan_in_training(s: Mapping[str, Any], md: Mapping[str, Any],
                     cmp: Mapping[str, Any]) -> _Outcome:
    """NaN flags recorded by training."""
    tn = s["training_nan"]
    if not tn.get("available"):
        return "no training NaN flags recorded"
    return _candidate("nan_in_training", THRESHOLDS["nan_score"] if tn["any_nan"] else 0.0,
                      "training produced NaN" if tn["any_nan"] else "no NaN in training",
                      {k: tn.get(k) for k in ("nan_detected", "first_nan_epoch",
                                              "first_nan_step", "metrics_with_nan")})


def _amplitude(cmp: Mapping[str, Any]) -> Mapping[str, Any]:
    return cmp.get("amplitude") if isinstance(cmp.get("amplitude"), Mapping) else {}


def _model_output(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> _Outcome:
    """Prediction/truth mean ratio (relative to the labels' when they explain it) and saturation."""
    T = THRESHOLDS  # noqa: N806
    amp = _amplitude(cmp)
    label_ratio = _label_ratio(s)
    r_pt = _num(_dig(s["derived_stage_ratios"], "ratios", "prediction_to_truth"))
    r_src = "intensity_stats stage means (inference_prediction / ground_truth_amp)"
    if r_pt is None and s["prediction_vs_truth_scaling"].get("available"):
        pv = s["prediction_vs_truth_scaling"]
        r_pt, r_src = _ratio(pv["pred_mean_unscaled"], pv["truth_mean"]), \
            "comparison pred_stats/truth_stats means (unscaled)"
    if r_pt is None:
        r_pt = _num(_dig(md, "forward_pass_diagnostics", "output_vs_truth_ratio"))
        r_src = "forward_pass_diagnostics.output_vs_truth_ratio"
    frac = _num(_dig(amp, "output_range_check", "fraction_at_bound"))
    if r_pt is None and frac is None:
        return "no prediction/truth ratio or output range check"
    explained = (label_ratio is not None and label_ratio > 0
                 and _rel(label_ratio) > T["label_gap_pct"] / 100.0)
    r_model = (r_pt / label_ratio if explained and r_pt is not None else r_pt)
    parts = {"prediction_to_truth": (_rel(r_model) or 0.0) / T["model_output_rel"]
             if r_model is not None else 0.0,
             "saturation": (frac or 0.0) / T["saturation_fraction"]}
    key = max(parts, key=lambda k: parts[k])
    reason = (f"{100 * (frac or 0):.3g}% of covered pixels at the amplitude activation bound"
              if key == "saturation" else
              f"prediction/truth mean ratio {format_number(r_model)}"
              + (" after dividing by the label ratio" if explained else ""))
    return _candidate("model_output", parts[key], reason,
                      {"prediction_to_truth": r_pt, "ratio_source": r_src,
                       "relative_to_labels": r_model if explained else None,
                       "fraction_at_bound": frac,
                       "bound": _num(_dig(amp, "output_range_check", "bound"))})


def _coverage(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> _Outcome:
    """Fraction of the evaluated region the scan covers."""
    cov = _num(_amplitude(cmp).get("coverage_fraction"))
    if cov is None:
        cov = s["inference"].get("coverage_fraction")
    if cov is None:
        return "no coverage_fraction recorded"
    return _candidate("coverage",
                      max(0.0, 1.0 - cov) / (1.0 - THRESHOLDS["coverage_min_fraction"]),
                      f"coverage fraction {cov:.3g}", {"coverage_fraction": cov})


def _evaluation_frame(s: Mapping[str, Any], md: Mapping[str, Any],
                      cmp: Mapping[str, Any]) -> _Outcome:
    """Registration shift between prediction and truth. A shift the comparison refused as
    untrustworthy (the correlation peak is weak: registration error >= 0.5) is evidence of a poor
    prediction, not of a frame mismatch."""
    reg_error = _num(_dig(cmp, "registration", "error"))
    refused = (_dig(cmp, "registration", "applied") is False
               and "exceeds" in str(_dig(cmp, "registration", "note") or "")
               and (reg_error is None or reg_error >= THRESHOLDS["registration_error_max"]))
    shifts = {ch: _shift_magnitude(_dig(cmp, ch, "registration", "shift_px"))
              for ch in ("amplitude", "phase")}
    shifts = {k: v for k, v in shifts.items() if v is not None}
    if refused:
        return f"registration unreliable (error {reg_error}); shift reported but not applied"
    if not shifts:
        return "no registration shift recorded"
    ch, mag = max(shifts.items(), key=lambda kv: kv[1])
    return _candidate("evaluation_frame", mag / THRESHOLDS["registration_shift_px"],
                      f"registration shift {mag:.3g} px ({ch})",
                      {"shift_px": {k: _dig(cmp, k, "registration", "shift_px") for k in shifts},
                       "applied": _dig(cmp, ch, "registration", "applied")})


#: One rule per diagnosed stage, in STAGE_ORDER.
_STAGE_RULES = {"dose_scale": _dose_scale, "split_parity": _split_parity, "labels": _labels,
                "nan_in_training": _nan_in_training, "model_output": _model_output,
                "coverage": _coverage, "evaluation_frame": _evaluation_frame}


def _diagnose(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any]) -> dict:
    """Run every stage rule on (summary, run metadata, comparison) and rank the candidates."""
    T = THRESHOLDS  # noqa: N806
    cands: list[dict] = []
    not_assessed: dict[str, str] = {}
    for stage in STAGE_ORDER:
        outcome = _STAGE_RULES[stage](s, md, cmp)
        if isinstance(outcome, dict):   # a candidate; anything else is the reason it was not
            cands.append(outcome)
        else:
            not_assessed[stage] = outcome

    for c in cands:  # JSON-safe scores (a sign flip gives inf)
        c["score"] = min(c["score"], T["nan_score"]) if math.isfinite(c["score"]) else T["nan_score"]
    ranked = sorted(cands, key=lambda c: (-c["score"], STAGE_ORDER.index(c["stage"])))
    if not ranked:
        return {"stage": None, "label": None, "score": None, "exceeds_threshold": False,
                "reason": "insufficient evidence: no stage could be assessed",
                "evidence": {}, "ranking": [], "not_assessed": not_assessed}
    top = ranked[0]
    return {**top, "exceeds_threshold": top["score"] > 1.0,
            "ranking": [{"stage": c["stage"], "score": c["score"]} for c in ranked],
            "candidates": ranked, "not_assessed": not_assessed}
