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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluate.consistency import CONSISTENCY_DIR, CONSISTENCY_JSON
from ..evaluate.consistency_record import load_consistency
from ..records import ComparisonRecord, RecordError, RunMetadata
from ..records.bias import AnalysisSummary, Verdict
from ..telemetry.stats import dig as _dig
from ..telemetry.writers import sanitize, write_json, write_text
from .blocks import (
    _Absent,
    _comparison_block,
    _inference,
    _intensity,
    _label_vs_truth,
    _loss_composition,
    _prediction_scaling,
    _split_parity,
    _stages_and_invariant,
    _training_nan,
)
from .evidence import gather_evidence
from .markdown import render_bias_markdown
from .ranking import THRESHOLDS, _diagnose, _num
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


def _failed_before(md: Mapping[str, Any], path: Path) -> bool:
    """A run whose metadata records a failure and that wrote no comparison_metrics.json (the
    runner writes run_metadata.json even when a stage raises)."""
    return isinstance(md, Mapping) and md.get("status") == "failed" and not path.exists()


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
        if key == "comparison" and _failed_before(out["run_metadata"], root / rel):
            # the run stopped before its comparison stage: the verdict is the failure itself
            stage = out["run_metadata"].get("failed_stage")
            out[key] = {"available": False, "reason": f"the run failed in stage {stage!r}"}
            out["absent_files"][rel] = f"the run failed in stage {stage!r} before writing it"
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
    verdicts = {n: Verdict.model_validate({k: v for k, v in s["diagnosis"].items()
                                           if k in Verdict.model_fields})
                for n, s in scenarios.items()}
    record = AnalysisSummary(
        generated_at=_utc_now_iso(), scenario_count=len(scenarios),
        inputs={n: str(p) for n, p in runs.items()}, thresholds=dict(THRESHOLDS),
        decision_limits=dict(LIMITS), verdicts=verdicts,
        verdict_lines={n: v.line(n) for n, v in verdicts.items()},
        scenarios=sanitize(scenarios), overview=sanitize(_overview(scenarios)),
        artifacts=[SUMMARY_JSON, SUMMARY_MD] + ([SUMMARY_PNG] if figure else []))
    summary = record.model_dump(mode="json")
    out_dir.mkdir(parents=True, exist_ok=True)
    if figure:
        from .plots import plot_bias_summary
        plot_bias_summary(summary, out_dir / SUMMARY_PNG)
    else:  # (force) a figure from an earlier analysis would no longer match the summary
        (out_dir / SUMMARY_PNG).unlink(missing_ok=True)
    write_text(out_dir / SUMMARY_MD, render_bias_markdown(summary))
    write_json(out_dir / SUMMARY_JSON, summary)
    return summary
