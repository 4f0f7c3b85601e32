"""The bias analyzer: reads finished run directories and explains where each one's bias comes from.

Input: ``{name: run_dir}`` (``parse_scenario_args`` turns ``NAME=DIR`` arguments into that).
Per run it reads (field names of telemetry.md):

    run_metadata.json                     required (typed RunMetadata when it validates)
    comparison_metrics.json               required (typed ComparisonRecord when it validates),
                                          except for a run without a ground truth (its
                                          run_metadata comparison block: available false)
    consistency/consistency.json          optional (typed ConsistencyRecord)
    intensity_stats.json                  optional
    train_outputs/history_summary.json    optional
    inference_outputs/stats.json          optional

A missing or malformed required file raises ``AnalyzerInputError`` naming the file. Optional files
and optional keys that are missing are listed under the scenario's ``absent`` (with reasons in
``absent_reasons``) and the blocks that need them say ``available: false``; nothing crashes.

Output (``analyze_runs``): ``bias_summary.json``, ``bias_summary.md`` and ``bias_summary.png`` in
the output directory (all written atomically).

Verdict
-------
Each scenario's ``diagnosis`` is the verdict of the decision procedure in :mod:`.rules`
(data consistency first, from ``consistency/consistency.json``; evidence gathered in
:mod:`.evidence`); the typed output is :class:`.records.BiasSummary`. The ranking below is kept
under ``diagnosis.ranking`` as supplementary evidence and never decides.

Ranking of recorded ratios (supplementary)
------------------------------------------
Every candidate stage with evidence gets a *score*: its deviation divided by its threshold, so a
score above 1 means the threshold is exceeded. Deviations of ratios are symmetric in log terms,
``rel(r) = max(r, 1/r) - 1`` (2x and 0.5x both give 1.0). The stage with the highest score is the
diagnosis (reported even when no score exceeds 1, with ``exceeds_threshold: false``); equal scores
are broken by pipeline order, upstream first (``STAGE_ORDER``), because an upstream deviation
propagates downstream.

    dose_scale        max(rel(used / dataset-derived scale) when the fallback was used although a
                      dataset scale exists, rel(intensity_scale.ratio = model / used)) / 0.05
    split_parity      train_vs_test_deviation_pct / 5  (recomputed from the per-split scales)
    labels            |amplitude_gap_pct| / 5  (label_vs_truth; an "inconsistent" verdict with no
                      gap number scores 1)
    nan_in_training   1000 when training saw a NaN (``training.nan_detected`` or the history's
                      ``nan_overview.has_nan``): every later number of such a run is suspect
    model_output      max(rel(prediction_to_truth) / 0.05, fraction_at_bound / 0.05). When the
                      labels themselves deviate beyond 5 %, prediction_to_truth is first divided
                      by the label ratio (Y_amp / truth): a model that reproduces wrong labels is
                      explained by the labels, not by the model.
    coverage          (1 - coverage_fraction) / (1 - 0.1): exceeds 1 when less than 10 % of the
                      object frame is evaluated (a test split covers about half the frame by
                      design, so a 50 % threshold would blame coverage in every run)
    evaluation_frame  registration |shift_px| / 2 px (largest of amplitude and phase); not assessed
                      when the comparison refused the shift as unreliable (registration error
                      >= 0.5 and the shift beyond its max_shift_px)

Prediction scaling
------------------
Candidates are scalars c applied to the *unscaled* prediction: ``none`` (1), ``recorded`` (the
run's recorded prediction scale), ``least_squares`` (sum(p t) / sum(p p) as recorded),
``median_ratio`` (median truth / median prediction, when the stats carry medians) and
``mean_ratio`` (mean truth / mean prediction). The residual of c is the mean bias it leaves,
``c * mean(p) - mean(t)``. ``mean_ratio`` nulls that residual by construction, so it is reported
as ``ideal`` and excluded from ``best``; ``best`` is the other candidate with the smallest
``|residual|`` (ties: listed order), with ``gap_to_ideal_pct``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluate.consistency import CONSISTENCY_DIR, CONSISTENCY_JSON
from ..evaluate.consistency_record import load_consistency
from ..records import ComparisonRecord, RecordError, RunMetadata
from ..telemetry.scale_chain import chain_ratios, stage_means, symmetry_check
from ..telemetry.stats import dig as _dig
from ..telemetry.writers import sanitize, write_json, write_text
from .evidence import gather_evidence
from .markdown import render_bias_markdown
from .ranking import THRESHOLDS, _diagnose, _num, _ratio
from .records import BiasSummary, Verdict
from .rules import LIMITS, decide

REQUIRED_FILES = ("run_metadata.json", "comparison_metrics.json")
CONSISTENCY_REL = f"{CONSISTENCY_DIR}/{CONSISTENCY_JSON}"
OPTIONAL_FILES = {
    "intensity_stats": "intensity_stats.json",
    "history_summary": "train_outputs/history_summary.json",
    "inference_stats": "inference_outputs/stats.json",
}
SUMMARY_JSON, SUMMARY_MD, SUMMARY_PNG = "bias_summary.json", "bias_summary.md", "bias_summary.png"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class AnalyzerInputError(ValueError):
    """Bad analyzer input: malformed NAME=DIR argument, missing or malformed required file."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# arguments and loading
# --------------------------------------------------------------------------------------------
def parse_scenario_args(args: Sequence[str]) -> dict[str, Path]:
    """Parse ``NAME=DIR`` arguments into ``{name: Path}`` (order kept).

    Errors (``AnalyzerInputError``): no '=', empty name, a name with characters other than
    letters, digits and ``_.+-``, empty directory, duplicate name, directory missing.
    """
    if not args:
        raise AnalyzerInputError("no runs given; pass one or more NAME=RUN_DIR arguments")
    runs: dict[str, Path] = {}
    for arg in args:
        if "=" not in arg:
            raise AnalyzerInputError(f"malformed run argument {arg!r}: expected NAME=RUN_DIR")
        name, _, directory = arg.partition("=")
        name, directory = name.strip(), directory.strip()
        if not name:
            raise AnalyzerInputError(f"malformed run argument {arg!r}: empty NAME before '='")
        if not _NAME_RE.match(name):
            raise AnalyzerInputError(f"malformed run argument {arg!r}: NAME may only hold "
                                     "letters, digits and _ . + -")
        if not directory:
            raise AnalyzerInputError(f"malformed run argument {arg!r}: empty RUN_DIR after '='")
        if name in runs:
            raise AnalyzerInputError(f"duplicate run name {name!r} (given for {runs[name]} and "
                                     f"{directory})")
        path = Path(directory)
        if not path.is_dir():
            raise AnalyzerInputError(f"run {name!r}: directory {path} does not exist"
                                     if not path.exists() else
                                     f"run {name!r}: {path} is not a directory")
        runs[name] = path
    return runs


def _read_json(name: str, path: Path, required: bool) -> tuple[Any, str | None]:
    """(content, None) or (None, reason); raises for a bad required file."""
    if not path.is_file():
        if required:
            raise AnalyzerInputError(f"run {name!r}: required file missing: {path}")
        return None, "file not found"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if required:
            raise AnalyzerInputError(f"run {name!r}: {path} is not valid JSON ({exc})") from exc
        return None, f"malformed JSON ({exc})"
    if not isinstance(data, dict):
        if required:
            raise AnalyzerInputError(f"run {name!r}: {path} must hold a JSON object, got "
                                     f"{type(data).__name__}")
        return None, f"not a JSON object ({type(data).__name__})"
    return data, None


def _without_truth(md: Mapping[str, Any], path: Path) -> bool:
    """A run on data without a ground truth: its comparison block says ``available: false``
    and it wrote no comparison_metrics.json (then that file is not required)."""
    cmp = md.get("comparison") if isinstance(md, Mapping) else None
    return isinstance(cmp, Mapping) and cmp.get("available") is False and not path.exists()


def load_run(name: str, run_dir: str | Path) -> dict[str, Any]:
    """Read one run directory: {run_dir, run_metadata, comparison, <optional>..., absent_files}."""
    root = Path(run_dir)
    out: dict[str, Any] = {"run_dir": root, "absent_files": {}, "schema_notes": {}}
    for key, rel, schema in (("run_metadata", REQUIRED_FILES[0], RunMetadata),
                             ("comparison", REQUIRED_FILES[1], ComparisonRecord)):
        if key == "comparison" and _without_truth(out["run_metadata"], root / rel):
            # own data without a ground truth (scenarios/no_truth.py): no comparison_metrics.json;
            # the run's comparison block says so, and no truth-based check is made from it
            out[key] = dict(out["run_metadata"]["comparison"])
            out["absent_files"][rel] = "no ground truth in the data (comparison.available false)"
            continue
        raw, _ = _read_json(name, root / rel, True)
        # The typed records (records/) when the file matches them; a file that does not (an
        # older or hand-made run) is read as plain JSON and the mismatch is reported, not fatal.
        try:
            out[key] = schema.parse(raw, source=rel).dump()
        except RecordError as exc:
            out[key] = raw
            out["schema_notes"][rel] = str(exc)[:300]
    for key, rel in OPTIONAL_FILES.items():
        out[key], why = _read_json(name, root / rel, False)
        if why:
            out["absent_files"][rel] = why
    out["consistency"] = None
    try:
        out["consistency"] = load_consistency(root)
    except (ValueError, OSError) as exc:   # pydantic's ValidationError is a ValueError
        out["absent_files"][CONSISTENCY_REL] = f"malformed consistency record ({exc})"[:300]
    else:
        if out["consistency"] is None:
            out["absent_files"][CONSISTENCY_REL] = "file not found"
    return out


# --------------------------------------------------------------------------------------------
# per-scenario blocks
# --------------------------------------------------------------------------------------------
class _Absent:
    """Collects which optional blocks were missing, and why."""

    def __init__(self, files: Mapping[str, str]):
        self.reasons: dict[str, str] = dict(files)

    def need(self, value: Any, label: str, why: str = "key not present") -> Any:
        if value is None:
            self.reasons.setdefault(label, why)
        return value


def _channel_headline(ch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(ch, Mapping):
        return None
    return {
        "count": ch.get("count"), "coverage_fraction": ch.get("coverage_fraction"),
        "mae": ch.get("mae"), "rmse": ch.get("rmse"), "max_abs": ch.get("max_abs"),
        "pearson_r": ch.get("pearson_r"), "ssim": ch.get("ssim"),
        "psnr": _dig(ch, "psnr", "value") if isinstance(ch.get("psnr"), Mapping) else ch.get("psnr"),
        "frc50": _dig(ch, "frc", "frc50"),
        "frc_half_bit_resolution": _dig(ch, "frc", "half_bit_resolution"),
        "bias_summary": ch.get("bias_summary"),
        "registration": ch.get("registration"),
        "output_range_check": ch.get("output_range_check"),
        "pred_mean": _dig(ch, "pred_stats", "mean"), "truth_mean": _dig(ch, "truth_stats", "mean"),
    }


def _comparison_block(cmp: Mapping[str, Any], absent: _Absent) -> dict[str, Any]:
    amp = absent.need(_channel_headline(cmp.get("amplitude")), "comparison_metrics.amplitude")
    phase = absent.need(_channel_headline(cmp.get("phase")), "comparison_metrics.phase")
    full = cmp.get("full_canvas")
    absent.need(full, "comparison_metrics.full_canvas")
    return {"amplitude": amp, "phase": phase, "full_canvas": full,
            "prediction_scale": cmp.get("prediction_scale")}


def _splits(sis: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    for key in ("splits", "per_split"):
        if isinstance(sis.get(key), Mapping):
            return dict(sis[key])
    return {k: v for k, v in sis.items() if k in ("train", "test") and isinstance(v, Mapping)}


def _split_parity(md: Mapping[str, Any], absent: _Absent) -> dict[str, Any]:
    sis = absent.need(md.get("split_intensity_stats"), "run_metadata.split_intensity_stats")
    if not isinstance(sis, Mapping):
        return {"available": False, "reason": "run_metadata.split_intensity_stats absent"}
    splits = _splits(sis)
    train, test = splits.get("train", {}), splits.get("test", {})
    ratio = _ratio(_num(train.get("dataset_scale")), _num(test.get("dataset_scale")))
    source = "recomputed from per-split dataset_scale (train / test)"
    if ratio is None:  # scale ~ 1/sqrt(mean summed intensity)
        r_i = _ratio(_num(test.get("batch_mean_sum_intensity")),
                     _num(train.get("batch_mean_sum_intensity")))
        ratio = None if r_i is None or r_i < 0 else math.sqrt(r_i)
        source = "recomputed from per-split batch_mean_sum_intensity: sqrt(test / train)"
    recorded_pct = _num(sis.get("train_vs_test_deviation_pct"))
    if ratio is None:
        ratio = _num(sis.get("train_vs_test_scale_ratio"))
        source = "recorded train_vs_test_scale_ratio"
    deviation = abs(ratio - 1.0) * 100.0 if ratio is not None else (
        None if recorded_pct is None else abs(recorded_pct))
    if ratio is None and deviation is not None:
        source = "recorded train_vs_test_deviation_pct"
    if deviation is None:
        return {"available": False, "reason": "no per-split scale, intensity or deviation recorded",
                "recorded": dict(sis)}
    limit = THRESHOLDS["split_parity_pct"]
    exceeds = deviation > limit
    recorded_flag = sis.get("deviation_exceeds_5pct")
    return {
        "available": True,
        "train_vs_test_scale_ratio": ratio,
        "deviation_pct": deviation,
        "threshold_pct": limit,
        "deviation_exceeds_5pct": exceeds,
        "verdict": f"beyond {limit:g}%" if exceeds else f"within {limit:g}%",
        "source": source,
        "recorded_deviation_pct": recorded_pct,
        "recorded_deviation_exceeds_5pct": recorded_flag,
        "agrees_with_recorded": None if not isinstance(recorded_flag, bool)
        else recorded_flag == exceeds,
        "splits": {k: dict(v) for k, v in splits.items()},
    }


def _label_vs_truth(md: Mapping[str, Any], ist: Mapping[str, Any] | None,
                    absent: _Absent) -> dict[str, Any]:
    lvt, source = md.get("label_vs_truth_analysis"), "run_metadata.label_vs_truth_analysis"
    if not isinstance(lvt, Mapping) and isinstance(ist, Mapping):
        lvt, source = ist.get("label_vs_truth_analysis"), "intensity_stats.label_vs_truth_analysis"
    if not isinstance(lvt, Mapping):
        absent.need(None, "run_metadata.label_vs_truth_analysis")
        return {"available": False, "reason": "no label_vs_truth_analysis recorded"}
    gap = _num(lvt.get("amplitude_gap_pct"))
    if gap is None:
        ratio = _ratio(_num(lvt.get("Y_amp_mean")), _num(lvt.get("ground_truth_amp_mean")))
        if ratio is None:
            inv = _num(lvt.get("ratio_truth_to_Y_amp_mean"))
            ratio = None if not inv else 1.0 / inv
        gap = None if ratio is None else 100.0 * (ratio - 1.0)
    verdict = lvt.get("verdict")
    inconsistent = isinstance(verdict, str) and verdict.startswith("inconsistent")
    return {"available": True, "source": source, **dict(lvt), "amplitude_gap_pct": gap,
            "gap_exceeds_threshold": None if gap is None else abs(gap) > THRESHOLDS["label_gap_pct"],
            "recorded_verdict_inconsistent": inconsistent}


def _loss_composition(md: Mapping[str, Any]) -> dict[str, Any]:
    for path in (("config", "training", "loss_weights"), ("training", "loss_weights"),
                 ("loss_weights",)):
        w = _dig(md, *path)
        if isinstance(w, Mapping):
            weights = {k: v for k, v in w.items()}
            active = [k for k, v in weights.items() if _num(v)]
            return {"available": True, "source": "run_metadata." + ".".join(path),
                    "weights": weights, "active_terms": active,
                    "label_terms_active": bool(_num(weights.get("realspace")))}
    return {"available": False, "reason": "no loss weights recorded (config.training.loss_weights "
            "or training.loss_weights)"}


def _training_nan(md: Mapping[str, Any], hist: Mapping[str, Any] | None,
                  absent: _Absent) -> dict[str, Any]:
    tr = absent.need(md.get("training"), "run_metadata.training")
    tr = tr if isinstance(tr, Mapping) else {}
    overview = _dig(hist, "nan_overview") if isinstance(hist, Mapping) else None
    detected = tr.get("nan_detected") if isinstance(tr.get("nan_detected"), bool) else None
    hist_nan = _dig(overview, "has_nan") if isinstance(_dig(overview, "has_nan"), bool) else None
    flags = [f for f in (detected, hist_nan) if f is not None]
    return {
        "available": bool(flags),
        "nan_detected": detected, "first_nan_epoch": tr.get("first_nan_epoch"),
        "first_nan_step": tr.get("first_nan_step"),
        "history_has_nan": hist_nan, "metrics_with_nan": _dig(overview, "metrics"),
        "any_nan": any(flags) if flags else None,
        "epochs_completed": tr.get("epochs_completed"), "final_loss": tr.get("final_loss"),
        "final_val_loss": tr.get("final_val_loss"),
    }


def _inference(md: Mapping[str, Any], stats: Mapping[str, Any] | None,
               absent: _Absent) -> dict[str, Any]:
    inf = absent.need(md.get("inference"), "run_metadata.inference")
    inf = dict(inf) if isinstance(inf, Mapping) else {}
    block: dict[str, Any] = {"available": bool(inf) or isinstance(stats, Mapping),
                             "run_metadata": inf or None}
    if isinstance(stats, Mapping):
        block["stats"] = {k: stats.get(k) for k in ("amplitude", "phase", "offsets", "canvas",
                                                    "coverage_fraction", "prediction_scale")}
    block["coverage_fraction"] = _num(inf.get("coverage_fraction"))
    if block["coverage_fraction"] is None and isinstance(stats, Mapping):
        block["coverage_fraction"] = _num(stats.get("coverage_fraction"))
    block["fits_canvas"] = _dig(stats, "canvas", "fits_canvas")
    nan_counts = [_dig(stats, ch, "nan_count") for ch in ("amplitude", "phase")]
    block["prediction_nan_count"] = (sum(int(v) for v in nan_counts if _num(v) is not None)
                                     if any(_num(v) is not None for v in nan_counts) else None)
    return block


def _used_scale(dsi: Mapping[str, Any] | None, iscale: Mapping[str, Any] | None
                ) -> tuple[float | None, str | None]:
    if isinstance(iscale, Mapping) and _num(iscale.get("used_value")) is not None:
        return _num(iscale["used_value"]), iscale.get("used_mode")
    mode = _dig(dsi, "used_mode") or _dig(iscale, "used_mode")
    if not isinstance(dsi, Mapping):
        return None, mode
    if mode in ("dataset", "dataset_derived"):
        return _num(dsi.get("dataset_scale")), mode
    if mode in ("closed_form", "fallback"):
        return _num(dsi.get("fallback_scale")), mode
    return None, mode


def _intensity(md: Mapping[str, Any], ist: Mapping[str, Any] | None,
               absent: _Absent) -> dict[str, Any]:
    dsi = absent.need(md.get("dataset_scale_info"), "run_metadata.dataset_scale_info")
    fpd = absent.need(md.get("forward_pass_diagnostics"), "run_metadata.forward_pass_diagnostics")
    iscale = _dig(ist, "intensity_scale")
    used, mode = _used_scale(dsi, iscale)
    return {
        "available": any(isinstance(x, Mapping) for x in (dsi, fpd, iscale)),
        "dataset_scale_info": dsi, "intensity_scale": iscale, "forward_pass_diagnostics": fpd,
        "used_scale": used, "used_mode": mode,
        "delta_scale": _num(_dig(iscale, "delta")),
        "largest_drop": _dig(ist, "largest_drop"), "normalize_gain": _dig(ist, "normalize_gain"),
        "full_chain_product": _dig(ist, "full_chain_product"),
    }


def _stages_and_invariant(ist: Mapping[str, Any] | None) -> tuple[dict, dict, dict]:
    if not isinstance(ist, Mapping) or not isinstance(ist.get("stages"), list):
        why = {"available": False, "reason": "intensity_stats.json absent or has no stages"}
        return dict(why), dict(why), dict(why)
    stages = [s for s in ist["stages"] if isinstance(s, Mapping) and "name" in s]
    norm = {"available": True, "stages": [
        {"name": s["name"], "source": s.get("source"),
         **{k: _dig(s, "stats", k) for k in ("mean", "std", "min", "max", "nan_count")},
         "count": _dig(s, "metadata", "count")} for s in stages]}
    means = stage_means(stages)
    ratios, notes = chain_ratios(means)
    recorded = ist.get("ratios") if isinstance(ist.get("ratios"), Mapping) else {}
    mismatch = {}
    for k, v in ratios.items():
        r = _num(recorded.get(k))
        if v is not None and r is not None and abs(r - v) > 1e-6 * max(abs(v), 1e-300):
            mismatch[k] = {"recorded": r, "derived": v}
    names = [s["name"] for s in stages]
    consecutive = {f"{a}->{b}": _ratio(means[b], means[a]) for a, b in zip(names, names[1:],
                                                                          strict=False)}
    derived = {"available": True, "stage_means": means, "ratios": ratios, "ratio_notes": notes,
               "consecutive": consecutive, "mismatch_with_recorded": mismatch}
    gain = _num(ist.get("normalize_gain"))
    recomputed = symmetry_check(stages, ratios, gain)
    rec_sym = ist.get("symmetry_check") if isinstance(ist.get("symmetry_check"), Mapping) else None
    rec_flag = _dig(rec_sym, "violated")
    invariant = {"available": True, "violated": recomputed["violated"],
                 "violations": recomputed["violations"],
                 "primary_deviation_source": recomputed["primary_deviation_source"],
                 "recomputed": recomputed, "recorded": rec_sym,
                 "agrees_with_recorded": rec_flag == recomputed["violated"]
                 if isinstance(rec_flag, bool) else None}
    return norm, derived, invariant


def _prediction_scaling(cmp: Mapping[str, Any], md: Mapping[str, Any]) -> dict[str, Any]:
    ps = cmp.get("prediction_scale") if isinstance(cmp.get("prediction_scale"), Mapping) else (
        md.get("prediction_scale") if isinstance(md.get("prediction_scale"), Mapping) else {})
    amp = cmp.get("amplitude") if isinstance(cmp.get("amplitude"), Mapping) else {}
    p_eval, t = _num(_dig(amp, "pred_stats", "mean")), _num(_dig(amp, "truth_stats", "mean"))
    if p_eval is None or t is None:
        return {"available": False, "reason": "comparison amplitude pred_stats/truth_stats mean "
                "absent", "prediction_scale": dict(ps) or None}
    value, mode, applied = _num(ps.get("value")), ps.get("mode"), ps.get("applied") is True
    undo = value if applied and value else 1.0  # the evaluated prediction carries the scale
    p = p_eval / undo
    p_med, t_med = (_num(_dig(amp, "pred_stats", "median")), _num(_dig(amp, "truth_stats", "median")))
    ls = ps.get("least_squares") if isinstance(ps.get("least_squares"), Mapping) else {}
    values: dict[str, float | None] = {
        "none": 1.0,
        "recorded": value if mode == "recorded" else _num(ps.get("recorded_value")),
        "least_squares": _ratio(_num(ls.get("numerator")), _num(ls.get("denominator")))
        or (value if mode == "least_squares" else None),
        "median_ratio": _ratio(t_med, None if p_med is None else p_med / undo),
        "mean_ratio": _ratio(t, p),
    }
    candidates = {}
    for name, c in values.items():
        if c is None:
            candidates[name] = {"value": None, "reason": "not recorded"}
            continue
        resid = c * p - t
        candidates[name] = {"value": c, "residual_bias_mean": resid,
                            "residual_rel": _ratio(resid, abs(t) if t else None)}
    candidates["mean_ratio"]["by_construction"] = True
    pool = [(n, c) for n, c in candidates.items() if n != "mean_ratio" and c["value"] is not None]
    best_name, best = min(pool, key=lambda nc: abs(nc[1]["residual_bias_mean"]))
    ideal = candidates["mean_ratio"]["value"]
    rel = best.get("residual_rel")
    return {
        "available": True,
        "pred_mean_unscaled": p, "pred_mean_evaluated": p_eval, "truth_mean": t,
        "prediction_scale": dict(ps) or None,
        "candidates": candidates,
        "ideal": {"name": "mean_ratio", "value": ideal},
        "best": {"name": best_name, "value": best["value"],
                 "residual_bias_mean": best["residual_bias_mean"], "residual_rel": rel,
                 "gap_to_ideal_pct": None if not ideal else 100.0 * (best["value"] / ideal - 1)},
        "scale_explains_bias": bool(best_name != "none" and rel is not None
                                    and abs(rel) <= THRESHOLDS["model_output_rel"]
                                    and abs(candidates["none"]["residual_rel"] or 0)
                                    > THRESHOLDS["model_output_rel"]),
    }


def analyze_run(name: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario block of bias_summary.json for one loaded run (see ``load_run``)."""
    md, cmp = run["run_metadata"], run["comparison"]
    ist, hist, inf_stats = run.get("intensity_stats"), run.get("history_summary"), \
        run.get("inference_stats")
    absent = _Absent(run.get("absent_files", {}))
    s: dict[str, Any] = {"run_dir": str(run["run_dir"]), "status": md.get("status"),
                         "recorded_scenario": md.get("scenario"),
                         "failed_stage": md.get("failed_stage")}
    s["intensity"] = _intensity(md, ist, absent)
    s["comparison"] = _comparison_block(cmp, absent)
    s["normalization_stages"], s["derived_stage_ratios"], s["normalization_invariant"] = \
        _stages_and_invariant(ist)
    s["inference"] = _inference(md, inf_stats, absent)
    s["training_nan"] = _training_nan(md, hist, absent)
    s["prediction_vs_truth_scaling"] = _prediction_scaling(cmp, md)
    s["split_parity"] = _split_parity(md, absent)
    s["loss_composition"] = _loss_composition(md)
    if not s["loss_composition"]["available"]:
        absent.need(None, "run_metadata.config.training.loss_weights")
    s["label_vs_truth"] = _label_vs_truth(md, ist, absent)
    s["absent"] = sorted(absent.reasons)
    s["absent_reasons"] = dict(sorted(absent.reasons.items()))
    ranking = _diagnose(s, md, cmp)
    s["schema_notes"] = dict(run.get("schema_notes") or {})
    verdict = decide(gather_evidence(s, md, cmp, run.get("consistency"), [
        f"{k} does not match its typed record ({v}); read as plain JSON"
        for k, v in s["schema_notes"].items()]))
    s["data_consistency"] = (run["consistency"].model_dump(mode="json")
                             if run.get("consistency") is not None else
                             {"available": False, "reason": s["absent_reasons"].get(
                                 CONSISTENCY_REL, "absent")})
    # diagnosis = the decision procedure's verdict (analysis/rules.py); the ranking of recorded
    # ratios against fixed thresholds is kept as supplementary evidence, never as the verdict.
    s["diagnosis"] = {**verdict.model_dump(mode="json"), "exceeds_threshold": not verdict.healthy,
                      "score": None, "line": verdict.line(name),
                      "ranking": {k: ranking.get(k) for k in ("stage", "score", "ranking",
                                                              "not_assessed")}}
    return s


# --------------------------------------------------------------------------------------------
# overview, markdown, entry point
# --------------------------------------------------------------------------------------------
def _worst(scen: Mapping[str, Mapping[str, Any]], getter, pick_max: bool) -> dict | None:
    best = None
    for name, s in scen.items():
        v = _num(getter(s))
        if v is not None and (best is None or (v > best[1] if pick_max else v < best[1])):
            best = (name, v)
    return None if best is None else {"scenario": best[0], "value": best[1]}


def _mean(values: Sequence[Any]) -> float | None:
    vals = [v for v in (_num(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _overview(scen: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    amp = lambda s, *k: _dig(s, "comparison", "amplitude", *k)  # noqa: E731
    ph = lambda s, *k: _dig(s, "comparison", "phase", *k)  # noqa: E731
    absval = lambda x: None if _num(x) is None else abs(x)  # noqa: E731
    diagnoses = {n: s["diagnosis"]["stage"] for n, s in scen.items()}
    counts: dict[str, int] = {}
    for stage in diagnoses.values():
        if stage:
            counts[stage] = counts.get(stage, 0) + 1
    return {
        "scenarios": list(scen),
        "statuses": {n: s.get("status") for n, s in scen.items()},
        "failed_runs": [n for n, s in scen.items() if s.get("status") != "ok"],
        "mean_amplitude_pearson": _mean([amp(s, "pearson_r") for s in scen.values()]),
        "mean_phase_pearson": _mean([ph(s, "pearson_r") for s in scen.values()]),
        "mean_abs_amplitude_bias": _mean([absval(amp(s, "bias_summary", "mean"))
                                          for s in scen.values()]),
        "worst": {
            "amplitude_abs_bias_mean": _worst(scen, lambda s: absval(amp(s, "bias_summary",
                                                                         "mean")), True),
            "phase_abs_bias_mean": _worst(scen, lambda s: absval(ph(s, "bias_summary", "mean")),
                                          True),
            "amplitude_pearson_r": _worst(scen, lambda s: amp(s, "pearson_r"), False),
            "phase_pearson_r": _worst(scen, lambda s: ph(s, "pearson_r"), False),
            "amplitude_mae": _worst(scen, lambda s: amp(s, "mae"), True),
            "amplitude_rmse": _worst(scen, lambda s: amp(s, "rmse"), True),
            "phase_mae": _worst(scen, lambda s: ph(s, "mae"), True),
            "coverage_fraction": _worst(scen, lambda s: amp(s, "coverage_fraction"), False),
            "split_parity_deviation_pct": _worst(
                scen, lambda s: _dig(s, "split_parity", "deviation_pct"), True),
            "label_gap_abs_pct": _worst(
                scen, lambda s: absval(_dig(s, "label_vs_truth", "amplitude_gap_pct")), True),
        },
        "nan_runs": [n for n, s in scen.items() if _dig(s, "training_nan", "any_nan")],
        "normalization_invariant_violations": [
            n for n, s in scen.items() if _dig(s, "normalization_invariant", "violated")],
        "split_parity_violations": [
            n for n, s in scen.items() if _dig(s, "split_parity", "deviation_exceeds_5pct")],
        "diagnoses": diagnoses,
        "diagnosis_counts": counts,
    }


def analyze_runs(runs: Mapping[str, str | Path], output_dir: str | Path, *,
                 figure: bool = True, force: bool = False) -> dict[str, Any]:
    """Analyse runs ``{name: run_dir}``; write bias_summary.json/.md (and .png); return the JSON.

    Every run is read before anything is written, so a bad input leaves no partial summary.
    An existing bias summary in ``output_dir`` is refused (``FileExistsError``) unless ``force``;
    with ``force`` it is replaced (it is derived data, regenerated from the runs).
    """
    if not runs:
        raise AnalyzerInputError("no runs given")
    out_dir = Path(output_dir)
    existing = [n for n in (SUMMARY_JSON, SUMMARY_MD, SUMMARY_PNG) if (out_dir / n).exists()]
    if existing and not force:
        raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass --force to "
                              "replace the bias summary, or choose another --output-dir")
    loaded = {name: load_run(name, path) for name, path in runs.items()}
    scenarios = {name: analyze_run(name, run) for name, run in loaded.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = {n: Verdict.model_validate({k: v for k, v in s["diagnosis"].items()
                                           if k in Verdict.model_fields})
                for n, s in scenarios.items()}
    record = BiasSummary(
        generated_at=_utc_now_iso(), scenario_count=len(scenarios),
        inputs={n: str(p) for n, p in runs.items()}, thresholds=dict(THRESHOLDS),
        decision_limits=dict(LIMITS), verdicts=verdicts,
        verdict_lines={n: v.line(n) for n, v in verdicts.items()},
        scenarios=sanitize(scenarios), overview=sanitize(_overview(scenarios)),
        artifacts=[SUMMARY_JSON, SUMMARY_MD] + ([SUMMARY_PNG] if figure else []))
    summary = record.model_dump(mode="json")
    if figure:
        from .plots import plot_bias_summary
        plot_bias_summary(summary, out_dir / SUMMARY_PNG)
    else:  # (force) a figure from an earlier analysis would no longer match the summary
        (out_dir / SUMMARY_PNG).unlink(missing_ok=True)
    write_text(out_dir / SUMMARY_MD, render_bias_markdown(summary))
    write_json(out_dir / SUMMARY_JSON, summary)
    return summary
