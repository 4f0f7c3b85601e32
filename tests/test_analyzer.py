"""The bias analyzer on hand-made run directories (no simulation, no training)."""

from __future__ import annotations

import json
import os

import pytest

from ptychotrace.analysis import (
    TABLE_HEADER,
    AnalyzerInputError,
    analyze_runs,
    parse_scenario_args,
)
from ptychotrace.telemetry import build_intensity_stats, label_vs_truth, write_json

TRUTH_MEAN = 2.8


def _stage(name, mean):
    return {"name": name, "source": "fixture",
            "stats": {"shape": [8], "dtype": "float32", "min": mean, "max": mean, "mean": mean,
                      "std": 0.0, "nan_count": 0, "finite_count": 8, "total_count": 8},
            "metadata": {"count": 8, "gridsize": 1, "group_limit": None, "domain": "amplitude"}}


def _channel(pred_mean, truth_mean, bias, shift=(0.1, -0.2), pearson=0.9, at_bound=0.0):
    return {"count": 1000, "coverage_fraction": 0.8, "mae": abs(bias) + 0.05, "rmse": 0.2,
            "max_abs": 1.0, "pearson_r": pearson, "ssim": 0.8,
            "psnr": {"value": 25.0, "peak": 5.0},
            "frc": {"half_bit_resolution": 0.3, "frc50": 0.25, "curve": [1.0, 0.5]},
            "pred_stats": {"mean": pred_mean}, "truth_stats": {"mean": truth_mean},
            "bias_summary": {"mean": bias, "median": bias, "p05": bias - 0.3, "p95": bias + 0.3},
            "registration": {"shift_px": list(shift), "applied": True},
            "output_range_check": {"bound": 10.0, "fraction_at_bound": at_bound}}


def make_run(root, *, label_scale=1.0, pred_scale=1.0, test_scale=100.0, nan=False,
             shift=(0.1, -0.2), at_bound=0.0, optional=True, drop_keys=(), gain=0.01,
             container_gain=1.0, least_squares=None, measured_vs_physics=1.0):
    """Write a plausible minimal run directory; knobs inject one fault at a time.
    ``test_scale`` sets the test split's unit-dose intensity (what the physics predicts);
    ``measured_vs_physics`` multiplies the measured test photons against that prediction."""
    root.mkdir(parents=True)
    pred = TRUTH_MEAN * pred_scale
    labels = {"X": {"mean": 0.4}, "Y_amp": {"mean": TRUTH_MEAN * label_scale},
              "Y_I": {"mean": (TRUTH_MEAN * label_scale) ** 2}, "missing": {}}
    dev = abs(100.0 / test_scale - 1) * 100
    md = {
        "schema_version": "1.0", "status": "ok", "scenario": root.name,
        "config": {"training": {"loss_weights": {"nll": 1.0, "mae": 0.0, "realspace": 0.0}}},
        "dataset_scale_info": {"N": 64, "nphotons": 1e9, "batch_mean_sum_intensity": 1e5,
                               "dataset_scale": 100.0, "fallback_scale": 988.0,
                               "used_mode": "dataset"},
        "split_intensity_stats": {
            "train": {"batch_mean_sum_intensity": 1e5, "n_samples": 256, "dataset_scale": 100.0},
            "test": {"batch_mean_sum_intensity": 1e9 / test_scale**2, "n_samples": 256,
                     "dataset_scale": test_scale},
            "train_vs_test_scale_ratio": 100.0 / test_scale,
            "train_vs_test_deviation_pct": dev, "deviation_exceeds_5pct": dev > 5},
        "measured_photons_per_pattern": {
            "train": 1e9, "test": 1e9 * (100.0 / test_scale) ** 2 * measured_vs_physics,
            "units": "photons (summed counts)"},
        "training_labels": labels,
        "label_vs_truth_analysis": label_vs_truth(labels, TRUTH_MEAN),
        "forward_pass_diagnostics": {"output_vs_truth_ratio": pred_scale},
        "training": {"epochs_completed": 3, "nan_detected": nan,
                     "first_nan_epoch": 1 if nan else None, "first_nan_step": 7 if nan else None},
        "inference": {"coverage_fraction": 0.8, "group_limit": None},
        "prediction_scale": {"mode": "none", "value": 1.0, "applied": False},
    }
    for key in drop_keys:
        md.pop(key)
    ps = {"mode": "none", "value": 1.0, "applied": False}
    if least_squares is not None:
        ps = {"mode": "least_squares", "value": least_squares, "applied": False,
              "least_squares": {"finite_count": 1000, "numerator": least_squares * 10.0,
                                "denominator": 10.0}}
    cmp = {"amplitude": _channel(pred, TRUTH_MEAN, pred - TRUTH_MEAN, shift, at_bound=at_bound),
           "phase": _channel(0.0, 0.0, 0.01, shift, pearson=0.7),
           "full_canvas": {"amplitude": {"mae": 0.5}, "coverage_fraction": 0.8},
           "prediction_scale": ps}
    write_json(root / "run_metadata.json", md)
    write_json(root / "comparison_metrics.json", cmp)
    if optional:
        stages = [_stage("raw_diffraction", 40.0), _stage("grouped_diffraction", 40.0),
                  _stage("grouped_X_full", 40.0 * gain),
                  _stage("container_X", 40.0 * gain * container_gain),
                  _stage("training_labels_Y_amp", TRUTH_MEAN * label_scale),
                  _stage("inference_prediction", pred), _stage("ground_truth_amp", TRUTH_MEAN)]
        write_json(root / "intensity_stats.json", build_intensity_stats(
            stages, normalize_gain=gain, label_vs_truth_analysis=md.get("label_vs_truth_analysis")))
        write_json(root / "train_outputs" / "history_summary.json",
                   {"loss": {"count": 3, "last": 0.1, "has_nan": nan},
                    "nan_overview": {"has_nan": nan, "metrics": ["loss"] if nan else []}})
        write_json(root / "inference_outputs" / "stats.json",
                   {"amplitude": {"mean": pred, "nan_count": 0}, "phase": {"nan_count": 0},
                    "canvas": {"fits_canvas": True}, "coverage_fraction": 0.8})
    return root


# ------------------------------------------------------------------------------------- arguments
def test_parse_scenario_args(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert parse_scenario_args([f"gs1={a}", f"gs2 = {b}"]) == {"gs1": a, "gs2": b}
    for bad, msg in [([str(a)], "NAME=RUN_DIR"), ([f"={a}"], "empty NAME"),
                     (["x="], "empty RUN_DIR"), ([f"x={a}", f"x={b}"], "duplicate"),
                     ([f"x={tmp_path / 'nope'}"], "does not exist"), ([f"a b={a}"], "NAME may"),
                     ([], "no runs")]:
        with pytest.raises(AnalyzerInputError, match=msg):
            parse_scenario_args(bad)


# -------------------------------------------------------------------------------- analyze_runs
def test_healthy_run_outputs_and_table_header(tmp_path):
    run = make_run(tmp_path / "gs1")
    out = tmp_path / "analysis"
    summary = analyze_runs({"gs1": run}, out)
    assert sorted(os.listdir(out)) == ["bias_summary.json", "bias_summary.md", "bias_summary.png"]
    assert (out / "bias_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "bias_summary.json").read_text(),
                         parse_constant=lambda t: pytest.fail(f"non-JSON token {t}"))
    assert on_disk["scenario_count"] == 1 and "generated_at" in on_disk
    s = on_disk["scenarios"]["gs1"]
    # a run made without the consistency record: reported absent, the verdict says so
    assert s["absent"] == ["consistency/consistency.json"]
    assert on_disk["verdicts"]["gs1"]["healthy"] is True
    assert any("no consistency record" in n for n in on_disk["verdicts"]["gs1"]["notes"])
    assert s["normalization_invariant"]["violated"] is False
    assert s["label_vs_truth"]["verdict"] == "consistent"
    assert s["training_nan"]["any_nan"] is False
    assert s["loss_composition"]["weights"]["nll"] == 1.0
    assert s["diagnosis"]["exceeds_threshold"] is False  # nothing is wrong in this run
    md = (out / "bias_summary.md").read_text()
    lines = md.splitlines()
    assert TABLE_HEADER == ("| scenario | amp bias mean | median | phase bias mean | median | "
                            "scale | delta scale | scale mode | NaN |")
    assert TABLE_HEADER in lines
    row = lines[lines.index(TABLE_HEADER) + 2]
    assert row.startswith("| gs1 |") and "| dataset | no |" in row
    assert "## gs1" in md and "**Verdict: gs1 is healthy.**" in md
    assert "- gs1: HEALTHY" in md
    assert summary["overview"]["mean_amplitude_pearson"] == pytest.approx(0.9)
    with pytest.raises(FileExistsError, match="--force"):
        analyze_runs({"gs1": run}, out, figure=False)
    assert analyze_runs({"gs1": run}, out, figure=False, force=True)["scenario_count"] == 1


def test_split_parity_judged_against_the_physics(tmp_path):
    # The recorded train/test scale deviation (8.7 % here) is the object's physics when the
    # measured photons follow the prediction; a fault only when the measurement departs from it.
    runs = {"ok": make_run(tmp_path / "ok", test_scale=102.0),
            "physics": make_run(tmp_path / "physics", test_scale=92.0),
            "off": make_run(tmp_path / "off", test_scale=100.0, measured_vs_physics=0.9)}
    summary = analyze_runs(runs, tmp_path / "out", figure=False)
    ok, phys = (summary["scenarios"][n]["split_parity"] for n in ("ok", "physics"))
    assert ok["deviation_exceeds_5pct"] is False and ok["verdict"] == "within 5%"
    assert ok["deviation_pct"] == pytest.approx(abs(100 / 102 - 1) * 100)
    assert phys["deviation_exceeds_5pct"] is True and phys["agrees_with_recorded"] is True
    v = summary["verdicts"]
    assert v["ok"]["healthy"] and v["physics"]["healthy"]
    assert "as expected" in v["physics"]["reason"]
    assert v["off"]["stage"] == "split_parity"
    assert v["off"]["evidence"]["deviation_from_physics_pct"] == pytest.approx(-10.0)


def test_missing_optional_blocks_reported_absent(tmp_path):
    run = make_run(tmp_path / "bare", optional=False,
                   drop_keys=("split_intensity_stats", "label_vs_truth_analysis", "config",
                              "forward_pass_diagnostics"))
    s = analyze_runs({"bare": run}, tmp_path / "out")["scenarios"]["bare"]
    for name in ("intensity_stats.json", "train_outputs/history_summary.json",
                 "inference_outputs/stats.json", "run_metadata.split_intensity_stats",
                 "run_metadata.label_vs_truth_analysis",
                 "run_metadata.config.training.loss_weights"):
        assert name in s["absent"], name
    assert s["absent_reasons"]["intensity_stats.json"] == "file not found"
    for block in ("split_parity", "label_vs_truth", "normalization_invariant",
                  "derived_stage_ratios", "loss_composition"):
        assert s[block]["available"] is False, block
    assert s["diagnosis"]["stage"] is not None  # still decides from what is there
    assert "labels" in s["diagnosis"]["ranking"]["not_assessed"]


def test_malformed_optional_file_is_absent_not_fatal(tmp_path):
    run = make_run(tmp_path / "r")
    (run / "intensity_stats.json").write_text("{not json")
    s = analyze_runs({"r": run}, tmp_path / "out", figure=False)["scenarios"]["r"]
    assert "intensity_stats.json" in s["absent"]
    assert s["absent_reasons"]["intensity_stats.json"].startswith("malformed JSON")


@pytest.mark.parametrize("filename", ["run_metadata.json", "comparison_metrics.json"])
def test_missing_or_malformed_required_file_names_the_file(tmp_path, filename):
    run = make_run(tmp_path / "r")
    (run / filename).unlink()
    out = tmp_path / "out"
    with pytest.raises(AnalyzerInputError, match=f"required file missing: .*{filename}"):
        analyze_runs({"r": run}, out)
    assert not out.exists()  # nothing half-written
    (run / filename).write_text('{"status": "ok",')
    with pytest.raises(AnalyzerInputError, match=f"{filename} is not valid JSON"):
        analyze_runs({"r": run}, out)


@pytest.mark.parametrize("pred_scale", [1.0, 2.0])
def test_labels_at_wrong_scale_are_the_diagnosis(tmp_path, pred_scale):
    # labels 2x the truth; the model either matches the truth or reproduces the wrong labels
    run = make_run(tmp_path / "r", label_scale=2.0, pred_scale=pred_scale)
    summary = analyze_runs({"r": run}, tmp_path / "out", figure=False)
    d = summary["scenarios"]["r"]["diagnosis"]
    assert d["stage"] == "labels" and d["exceeds_threshold"] is True
    assert d["evidence"]["label_gap_pct"] == pytest.approx(100.0)
    md = (tmp_path / "out" / "bias_summary.md").read_text()
    assert "**Verdict: fault at labels vs truth.**" in md


@pytest.mark.parametrize("fault, stage", [
    ({"shift": (3.0, 4.0)}, "evaluation_frame"),
    ({"nan": True}, "nan_in_training"),
    ({"at_bound": 0.3}, "model_output"),
    ({"pred_scale": 0.5}, "model_output"),
])
def test_diagnosis_names_the_injected_fault(tmp_path, fault, stage):
    run = make_run(tmp_path / "r", **fault)
    d = analyze_runs({"r": run}, tmp_path / "out", figure=False)["scenarios"]["r"]["diagnosis"]
    assert d["stage"] == stage and d["exceeds_threshold"] is True
    assert d["line"].startswith(f"r: FAULT at {d['label']}") and "Next: check" in d["line"]
    scores = [c["score"] for c in d["ranking"]["ranking"]]
    assert scores == sorted(scores, reverse=True)


def test_normalization_invariant_and_prediction_scaling(tmp_path):
    run = make_run(tmp_path / "r", container_gain=0.01, pred_scale=0.5, least_squares=2.0)
    s = analyze_runs({"r": run}, tmp_path / "out", figure=False)["scenarios"]["r"]
    inv = s["normalization_invariant"]
    assert inv["violated"] is True and "normalized_to_container" in inv["violations"]
    assert inv["agrees_with_recorded"] is True
    pv = s["prediction_vs_truth_scaling"]
    assert pv["candidates"]["least_squares"]["value"] == pytest.approx(2.0)
    assert pv["candidates"]["none"]["residual_bias_mean"] == pytest.approx(-1.4)
    assert pv["best"]["name"] == "least_squares"
    assert pv["best"]["residual_bias_mean"] == pytest.approx(0.0, abs=1e-12)
    assert pv["ideal"]["value"] == pytest.approx(2.0) and pv["scale_explains_bias"] is True
    assert s["derived_stage_ratios"]["mismatch_with_recorded"] == {}
