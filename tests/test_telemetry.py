"""Telemetry: array stats, atomic writers, the run recorder, run-dir policy and the scale chain."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from ptychotrace.telemetry import (
    RunDirExistsError,
    RunRecorder,
    array_stats,
    build_intensity_stats,
    collect_provenance,
    intensity_scale_block,
    label_vs_truth,
    prepare_run_dir,
    record_training_label_stats,
    render_intensity_stats_md,
    sanitize,
    write_json,
    write_npy,
    write_text,
)


def _strict_load(path):
    """json.load that refuses NaN/Infinity tokens (the contract forbids them)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _stage(name, mean, **meta):
    return {"name": name, "source": "test", "metadata": {"count": 4, **meta},
            "stats": {"shape": [4], "dtype": "float32", "min": mean, "max": mean, "mean": mean,
                      "std": 0.0, "nan_count": 0, "finite_count": 4, "total_count": 4}}


# ---------------------------------------------------------------------------------------- stats
def test_array_stats_known_values_in_float64():
    a = np.arange(10, dtype=np.float32)
    s = array_stats(a, note="counts")
    assert s["shape"] == [10] and s["dtype"] == "float32" and s["note"] == "counts"
    assert s["mean"] == pytest.approx(4.5) and s["std"] == pytest.approx(math.sqrt(8.25))
    assert (s["min"], s["max"]) == (0.0, 9.0)
    assert (s["nan_count"], s["finite_count"], s["total_count"]) == (0, 10, 10)
    # reductions are float64 (the contract), whatever the input dtype
    r = np.random.default_rng(1).normal(1e4, 1.0, size=10_000).astype(np.float32)
    s = array_stats(r)
    assert s["mean"] == float(np.mean(r.astype(np.float64)))
    assert s["std"] == float(np.std(r.astype(np.float64)))
    assert array_stats(np.array([1, 2, 3], dtype=np.int16))["mean"] == 2.0


def test_array_stats_counts_nan_and_inf_and_ignores_them():
    a = np.array([[1.0, np.nan], [np.inf, 3.0]], dtype=np.float32)
    s = array_stats(a)
    assert (s["nan_count"], s["inf_count"], s["finite_count"], s["total_count"]) == (1, 1, 2, 4)
    assert s["mean"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    empty = array_stats(np.full(3, np.nan))
    assert empty["mean"] is None and empty["std"] is None and empty["nan_count"] == 3
    assert array_stats(np.zeros((0, 4)))["mean"] is None


def test_array_stats_complex_has_amplitude_and_phase_blocks():
    a = np.array([3 + 4j, 1j, np.nan + 0j], dtype=np.complex64)
    s = array_stats(a)
    assert s["complex"] is True and s["mean"] is None
    assert s["nan_count"] == 1 and s["finite_count"] == 2
    assert s["amplitude"]["mean"] == pytest.approx(3.0)
    assert s["amplitude"]["max"] == pytest.approx(5.0)
    assert s["phase"]["max"] == pytest.approx(np.pi / 2)
    assert s["phase"]["min"] == pytest.approx(np.arctan2(4, 3))


def test_array_stats_is_numpy_only_and_read_only():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="numpy"):
        array_stats(torch.zeros(3))
    with pytest.raises(TypeError):
        array_stats([1, 2, 3])
    a = np.array([1.0, np.nan, 2.0])
    before = a.copy()
    array_stats(a)
    np.testing.assert_array_equal(a, before)


# -------------------------------------------------------------------------------------- writers
def test_write_json_replaces_non_finite_and_says_why(tmp_path):
    obj = {"a": np.float32(np.nan), "b": np.arange(3, dtype=np.int64), "c": [1.0, np.inf],
           "d": np.bool_(True), "p": tmp_path / "x"}
    replaced = write_json(tmp_path / "out.json", obj)
    assert replaced == {"$.a": "nan", "$.c[1]": "inf"}
    data = _strict_load(tmp_path / "out.json")
    assert data["a"] is None and data["c"] == [1.0, None] and data["b"] == [0, 1, 2]
    assert data["d"] is True and data["p"].endswith("/x")
    assert data["non_finite_values"]["values"] == {"$.a": "nan", "$.c[1]": "inf"}
    assert (tmp_path / "out.json").read_text(encoding="utf-8").startswith("{\n  ")  # indent 2
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary file left
    assert sanitize({"x": float("-inf")}) == {"x": None}


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"ok": 1})
    with pytest.raises(TypeError, match=r"\$\.bad"):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    write_text(tmp_path / "t.md", "héllo\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(os.listdir(tmp_path)) == ["m.json", "t.md"]


def test_write_npy_is_float32(tmp_path):
    write_npy(tmp_path / "a.npy", np.arange(6, dtype=np.float64).reshape(2, 3))
    back = np.load(tmp_path / "a.npy")
    assert back.dtype == np.float32 and back.shape == (2, 3) and back[1, 2] == 5
    with pytest.raises(TypeError):
        write_npy(tmp_path / "c.npy", np.ones(2, dtype=np.complex64))
    assert sorted(os.listdir(tmp_path)) == ["a.npy"]


# ------------------------------------------------------------------------------------- recorder
def test_recorder_failure_writes_failed_record_with_earlier_blocks(tmp_path):
    rec = RunRecorder(tmp_path, "gs1_ideal")
    rec.set_block("config", {"N": 64})
    with rec.stage("simulate"):
        rec.set_block("dataset_scale_info", {"dataset_scale": 12.5})
    with pytest.raises(RuntimeError, match="boom"):
        with rec.stage("train"):
            raise RuntimeError("boom")
    md = _strict_load(tmp_path / "run_metadata.json")
    assert md["status"] == "failed" and md["failed_stage"] == "train"
    assert md["error"]["type"] == "RuntimeError" and md["error"]["message"] == "boom"
    assert "Traceback" in md["error"]["traceback"]
    assert md["config"] == {"N": 64} and md["dataset_scale_info"]["dataset_scale"] == 12.5
    assert set(md["stage_seconds"]) == {"simulate", "train"}
    with pytest.raises(RuntimeError, match="cannot finalize as ok"):
        rec.finalize("ok")


def test_recorder_partial_record_then_finalize(tmp_path):
    rec = RunRecorder(tmp_path, "gs2_ideal")
    with rec.stage("simulate"):
        rec.update_block("training", nan_detected=False)
        rec.update_block("training", epochs_completed=2)
    assert rec.get_block("training") == {"nan_detected": False, "epochs_completed": 2}
    partial = _strict_load(tmp_path / "run_metadata.json")
    assert partial["status"] == "failed" and partial["partial"] is True  # killed-run safe
    assert partial["error"]["type"] == "Incomplete"
    (tmp_path / "x.npy").write_bytes(b"")
    rec.add_artifact("x.npy")
    rec.add_artifact(tmp_path / "x.npy")  # absolute inside the run dir: same entry
    rec.add_artifact("gone.png")
    md = rec.finalize()
    on_disk = _strict_load(tmp_path / "run_metadata.json")
    assert on_disk["status"] == "ok" and "partial" not in on_disk and "error" not in on_disk
    assert on_disk["artifacts"] == ["x.npy", "gone.png"]
    assert on_disk["artifacts_missing"] == ["gone.png"]
    assert on_disk["schema_version"] == md["schema_version"]
    assert on_disk["timestamp"].endswith("Z") and on_disk["elapsed_seconds"] >= 0
    with pytest.raises(ValueError):
        rec.set_block("status", {})
    with pytest.raises(ValueError):
        rec.add_artifact("../outside.txt")


def test_recorder_intensity_stages_and_intensity_stats_files(tmp_path):
    rec = RunRecorder(tmp_path, "s")
    raw = np.full((4, 8, 8), 2.0, dtype=np.float32)
    rec.add_intensity_stage("raw_diffraction", "simulate", raw, {"count": 4, "domain": "amplitude"})
    rec.add_intensity_stage("grouped_diffraction", "group", raw, {"domain": "amplitude"})
    rec.add_intensity_stage("grouped_X_full", "normalise", raw * 0.5, {"domain": "amplitude"})
    with pytest.raises(ValueError, match="already"):
        rec.add_intensity_stage("raw_diffraction", "simulate", raw)
    d = rec.write_intensity_stats(normalize_gain=0.5)
    assert d["ratios"]["grouped_to_normalized"] == pytest.approx(0.5)
    assert d["stages"][0]["metadata"] == {"count": 4, "gridsize": None, "group_limit": None,
                                          "domain": "amplitude"}
    assert _strict_load(tmp_path / "intensity_stats.json")["stage_means"]["raw_diffraction"] == 2.0
    assert (tmp_path / "intensity_stats.md").read_text().startswith("# Intensity scale chain")
    assert rec.artifacts == ["intensity_stats.json", "intensity_stats.md"]


def test_prepare_run_dir_refuses_then_force_moves_aside(tmp_path):
    run = tmp_path / "run"
    assert prepare_run_dir(run) is None and run.is_dir()
    assert prepare_run_dir(run) is None  # empty: reusable
    (run / "old.json").write_text("{}")
    with pytest.raises(RunDirExistsError, match="--force"):
        prepare_run_dir(run)
    assert (run / "old.json").exists()  # untouched
    backup = prepare_run_dir(run, force=True)
    assert backup is not None and backup.name.startswith("run.bak-")
    assert (backup / "old.json").read_text() == "{}"  # nothing lost
    assert run.is_dir() and not any(run.iterdir())
    (run / "second.json").write_text("{}")
    backup2 = prepare_run_dir(run, force=True)
    assert backup2 != backup and (backup2 / "second.json").exists() and (backup / "old.json").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError):
        prepare_run_dir(tmp_path / "afile", force=True)


def test_collect_provenance_fields(tmp_path):
    p = collect_provenance({"object_seed": 1, "sim_seed": 2, "training_seed": 3},
                           {"type": "simulated", "path": None, "sha256": None},
                           device="cpu", repo_dir=tmp_path)
    assert p["git_commit"] is None and p["git_dirty"] is None  # tmp_path is no git checkout
    env = p["environment"]
    assert set(env) >= {"python", "platform", "numpy", "torch", "scipy", "device", "threads"}
    assert env["device"] == "cpu" and p["seeds"]["sim_seed"] == 2
    assert p["package_version"]


# ---------------------------------------------------------------------------------- scale chain
def test_scale_chain_ratios_are_quotients_of_stage_means():
    means = {"raw_diffraction": 40.0, "grouped_diffraction": 44.0, "grouped_X_full": 0.44,
             "container_X": 0.44, "training_labels_Y_amp": 2.8, "inference_prediction": 2.1,
             "ground_truth_amp": 2.8}
    stages = [_stage(n, m, domain="amplitude") for n, m in means.items()]
    d = build_intensity_stats(stages, normalize_gain=0.01)
    r = d["ratios"]
    assert r["raw_to_grouped"] == pytest.approx(44.0 / 40.0)
    assert r["grouped_to_normalized"] == pytest.approx(0.44 / 44.0)
    assert r["normalized_to_container"] == pytest.approx(1.0)
    assert r["prediction_to_truth"] == pytest.approx(0.75)
    assert d["stage_means"] == means and d["missing_stages"] == []
    assert d["full_chain_product"] == pytest.approx(0.44 / 40.0)
    assert d["largest_drop"]["name"] == "grouped_to_normalized"
    sym = d["symmetry_check"]
    assert sym["tolerance"] == 0.05 and sym["expected"]["grouped_to_normalized"] == 0.01
    assert sym["violated"] and sym["violations"] == ["prediction_to_truth"]
    assert sym["primary_deviation_source"] == "inference_prediction"
    md = render_intensity_stats_md(d)
    assert "| stage | source | shape | mean |" in md and "grouped_to_normalized" in md


def test_symmetry_check_flags_gain_applied_twice_and_missing_stages():
    stages = [_stage("grouped_diffraction", 10.0), _stage("grouped_X_full", 1.0),
              _stage("container_X", 0.1)]  # gain 0.1 applied again when building the container
    d = build_intensity_stats(stages, normalize_gain=0.1)
    sym = d["symmetry_check"]
    assert sym["violations"] == ["normalized_to_container"]
    assert sym["primary_deviation_source"] == "container_X"
    assert d["ratios"]["raw_to_grouped"] is None and "raw_diffraction" in d["ratio_notes"][
        "raw_to_grouped"]
    assert "prediction_to_truth" in sym["unchecked"]
    assert "raw_diffraction" in d["missing_stages"]
    zero = build_intensity_stats([_stage("grouped_diffraction", 0.0), _stage("grouped_X_full", 1.0)])
    assert zero["ratios"]["grouped_to_normalized"] is None
    assert "zero" in zero["ratio_notes"]["grouped_to_normalized"]
    assert "grouped_to_normalized" in zero["symmetry_check"]["unchecked"]  # no gain recorded


def test_intensity_scale_block():
    b = intensity_scale_block(100.0, 250.0, "dataset", recorded_in_checkpoint=True,
                              model_value=110.0)
    assert b["used_value"] == 100.0 and b["delta"] == pytest.approx(10.0)
    assert b["ratio"] == pytest.approx(1.1)
    assert intensity_scale_block(100.0, 250.0, "closed_form")["delta"] is None


# ------------------------------------------------------------------------------- training labels
def _labels(scale=1.0, rng=None):
    rng = rng or np.random.default_rng(0)
    amp = (rng.uniform(0.5, 5.0, size=(6, 1, 8, 8)) * scale).astype(np.float32)
    phi = rng.uniform(-1, 1, size=amp.shape).astype(np.float32)
    x = rng.uniform(0, 1, size=amp.shape).astype(np.float32)
    return {"X": x, "Y_amp": amp, "Y_I": np.square(amp), "Y_phi": phi,
            "Y": (amp * np.exp(1j * phi)).astype(np.complex64)}


def test_record_training_label_stats_notes_missing_and_read_only():
    arrays = _labels()
    copies = {k: v.copy() for k, v in arrays.items()}
    arrays["Y_I"] = None
    block = record_training_label_stats(arrays, {"Y_I": "container keeps amplitudes only"})
    assert block["missing"] == {"Y_I": "container keeps amplitudes only"}
    assert "dimensionless" in block["X"]["note"] and "radians" in block["Y_phi"]["note"]
    assert block["Y"]["complex"] and block["Y"]["amplitude"]["mean"] == pytest.approx(
        float(np.mean(copies["Y_amp"], dtype=np.float64)), rel=1e-6)
    assert block["Y_amp"]["mean"] == pytest.approx(float(np.mean(copies["Y_amp"], dtype=np.float64)))
    for k, v in arrays.items():
        if v is not None:
            np.testing.assert_array_equal(v, copies[k])  # telemetry only observes
    assert "Y_I" not in block and record_training_label_stats({})["missing"].keys() == {
        "X", "Y_amp", "Y_I", "Y_phi", "Y"}


def test_label_vs_truth_flags_2x_scale_error_and_passes_consistent():
    truth = _labels()["Y_amp"]
    truth_mean = float(np.mean(truth, dtype=np.float64))
    good = label_vs_truth(record_training_label_stats(_labels()), truth_mean)
    assert good["verdict"] == "consistent" and abs(good["amplitude_gap_pct"]) < 1e-6
    assert good["ratio_truth_to_Y_amp_mean"] == pytest.approx(1.0)
    assert good["spec_reference"] == "physics.md §3" and good["tolerance"] == 0.05
    bad = label_vs_truth(record_training_label_stats(_labels(scale=2.0)), truth_mean)
    assert bad["verdict"].startswith("inconsistent")
    assert bad["amplitude_gap_pct"] == pytest.approx(100.0, rel=1e-5)
    assert bad["ratio_truth_to_Y_amp_mean"] == pytest.approx(0.5, rel=1e-5)
    assert bad["sqrt_Y_I_mean"] == pytest.approx(math.sqrt(bad["Y_I_mean"]))
    near = label_vs_truth({"Y_amp": {"mean": 1.04}}, 1.0)
    assert near["verdict"] == "consistent"
    assert label_vs_truth({"Y_amp": {"mean": 1.06}}, 1.0)["verdict"].startswith("inconsistent")
    assert label_vs_truth({}, 1.0)["verdict"].startswith("undetermined")
