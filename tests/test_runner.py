"""The scenario runner end to end on a tiny problem: every telemetry block present and
self-consistent, failures recorded, wrong-scale labels flagged and diagnosed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptychotrace.cli import main
from ptychotrace.config import resolve_scenario
from ptychotrace.scenarios.runner import RunRequest, run_scenario

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
        "simulation.buffer": 8.0, "grouping.group_count": 16, "training.nepochs": 1,
        "training.batch_size": 8, "inference.stitch_window": 12}

REQUIRED_TOP = ["schema_version", "status", "scenario", "timestamp", "elapsed_seconds",
                "stage_seconds", "config", "cli_args", "profile", "provenance", "counts", "probe",
                "dataset_scale_info", "split_intensity_stats", "training_labels",
                "label_vs_truth_analysis", "forward_pass_diagnostics", "training", "inference",
                "prediction_scale", "comparison", "artifacts"]


def _run(tmp_path: Path, name="run", faults=None, scenario="gs1_ideal", **over) -> tuple[Path, dict]:
    cfg, profile, warnings = resolve_scenario(scenario, {**TINY, **over})
    out = tmp_path / name
    req = RunRequest(config=cfg, output_dir=out, profile=profile, warnings=warnings,
                     progress=False, faults=faults or {})
    return out, run_scenario(req)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("runs"),
                **{"evaluation.prediction_scale_source": "least_squares"})


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_run_directory_has_every_required_block_and_file(tiny_run):
    out, meta = tiny_run
    disk = _load(out / "run_metadata.json")
    assert disk["status"] == "ok"
    for key in REQUIRED_TOP:
        assert key in disk, key
    for stage in ("simulate", "group", "train", "infer", "compare"):
        assert disk["stage_seconds"][stage] >= 0
    for rel in ["intensity_stats.json", "intensity_stats.md", "comparison_metrics.json",
                "gs1_ideal_comparison_summary.md", "gs1_ideal_training_summary.md",
                "ground_truth_amp.npy", "ground_truth_amp.png", "ground_truth_phase.npy",
                "amplitude_diff.npy", "phase_diff.png", "train_outputs/history.json",
                "train_outputs/history_summary.json", "inference_outputs/amplitude.npy",
                "inference_outputs/amplitude_unscaled.npy", "inference_outputs/phase.npy",
                "inference_outputs/amplitude.png", "inference_outputs/stats.json",
                "inference_outputs/prediction_scale.json", "logs/run.log"]:
        assert (out / rel).is_file(), rel
        assert rel in disk["artifacts"] or rel.startswith("train_outputs/history"), rel
    for name in ("amplitude", "amplitude_unscaled", "phase"):
        arr = np.load(out / "inference_outputs" / f"{name}.npy", allow_pickle=False)
        assert arr.dtype == np.float32 and arr.shape == (96, 96)


def test_counts_add_up_and_labels_match_saved_arrays(tiny_run):
    out, meta = tiny_run
    c = meta["counts"]
    assert c["total_images"] == c["train_count"] + c["test_count"] == 48
    assert c["train_count"] == meta["split_intensity_stats"]["train"]["n_samples"]
    labels = meta["training_labels"]
    for key in ("X", "Y_amp", "Y_I", "Y_phi", "Y"):
        assert key in labels and labels[key]["total_count"] > 0
    # Y_I = Y_amp^2, so mean(Y_I) = var(Y_amp) + mean(Y_amp)^2 (population moments)
    ya = labels["Y_amp"]
    assert labels["Y_I"]["mean"] == pytest.approx(ya["std"] ** 2 + ya["mean"] ** 2, rel=1e-4)
    lvt = meta["label_vs_truth_analysis"]
    assert lvt["Y_amp_mean"] == pytest.approx(labels["Y_amp"]["mean"])
    assert lvt["ratio_truth_to_Y_amp_mean"] == pytest.approx(
        lvt["ground_truth_amp_mean"] / lvt["Y_amp_mean"])
    assert lvt["verdict"].startswith("consistent")


def test_intensity_chain_ratios_are_quotients_of_recorded_means(tiny_run):
    out, _ = tiny_run
    ist = _load(out / "intensity_stats.json")
    names = [s["name"] for s in ist["stages"]]
    for required in ("raw_diffraction", "grouped_diffraction", "grouped_X_full", "container_X",
                     "training_labels_Y_amp", "inference_prediction"):
        assert required in names
    means = ist["stage_means"]
    assert ist["ratios"]["grouped_to_normalized"] == pytest.approx(
        means["grouped_X_full"] / means["grouped_diffraction"])
    # the gain that normalises the network input is the recorded one
    assert ist["ratios"]["grouped_to_normalized"] == pytest.approx(ist["normalize_gain"], rel=1e-4)
    # the saved prediction is what the chain measured (evaluation region, unscaled)
    amp = np.load(out / "inference_outputs" / "amplitude_unscaled.npy")
    region = np.load(out / "inference_outputs" / "evaluation_region.npy") > 0.5
    assert means["inference_prediction"] == pytest.approx(float(amp[region].mean()), rel=1e-4)
    truth = np.load(out / "ground_truth_amp.npy")
    assert means["ground_truth_amp"] == pytest.approx(float(truth[region].mean()), rel=1e-4)
    assert ist["ratios"]["prediction_to_truth"] == pytest.approx(
        means["inference_prediction"] / means["ground_truth_amp"])


def test_comparison_and_prediction_scale_are_consistent(tiny_run):
    out, meta = tiny_run
    cmp = _load(out / "comparison_metrics.json")
    ps = cmp["prediction_scale"]
    assert ps["mode"] == "least_squares" and ps["applied"] is True
    ls = ps["least_squares"]
    assert ps["value"] == pytest.approx(ls["numerator"] / ls["denominator"])
    scaled = np.load(out / "inference_outputs" / "amplitude.npy")
    unscaled = np.load(out / "inference_outputs" / "amplitude_unscaled.npy")
    cov = unscaled != 0
    np.testing.assert_allclose(scaled[cov], unscaled[cov] * ps["value"], rtol=1e-5)
    assert 0 < cmp["amplitude"]["coverage_fraction"] <= 1
    region = cmp["evaluation_region"]
    assert meta["inference"]["coverage_fraction"] == pytest.approx(region["stitch_covered_fraction"])
    assert region["evaluated_fraction"] <= region["stitch_covered_fraction"]
    assert "full_canvas" in cmp


def test_wrong_scale_labels_are_flagged_and_diagnosed(tmp_path, tiny_run):
    out_bad, meta = _run(tmp_path, "bad", faults={"label_scale": 2.0})
    lvt = meta["label_vs_truth_analysis"]
    assert not lvt["verdict"].startswith("consistent")
    assert lvt["amplitude_gap_pct"] == pytest.approx(100.0, rel=1e-3)
    good, _ = tiny_run
    assert main(["analyze", "--scenario", f"good={good}", "--scenario", f"bad={out_bad}",
                 "--output-dir", str(tmp_path / "an")]) == 0
    summary = _load(tmp_path / "an" / "bias_summary.json")
    assert summary["scenarios"]["bad"]["diagnosis"]["stage"] == "labels"
    assert summary["scenarios"]["good"]["diagnosis"]["stage"] != "labels"
    md = (tmp_path / "an" / "bias_summary.md").read_text()
    assert "| scenario | amp bias mean | median | phase bias mean | median | scale | delta scale " \
           "| scale mode | NaN |" in md


def test_failure_mid_way_leaves_a_failed_record_with_earlier_blocks(tmp_path):
    with pytest.raises(RuntimeError, match="injected"):
        _run(tmp_path, "fail", faults={"fail_stage": "infer"})
    disk = _load(tmp_path / "fail" / "run_metadata.json")
    assert disk["status"] == "failed" and disk["failed_stage"] == "infer"
    assert "injected" in disk["error"]["message"]
    for key in ("config", "probe", "dataset_scale_info", "training_labels", "training"):
        assert key in disk, key


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc = main(["run", "--scenario", "gs1_ideal", "--output-dir", str(out), "--N", "32",
               "--object-size", "96", "--base-total-images", "48", "--buffer", "8", "--quiet"])
    assert rc == 2 and "--force" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_cli_smoke_every_subcommand_has_help(capsys):
    from ptychotrace.cli import COMMANDS, build_parser

    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert {"simulate", "inspect", "run", "analyze"} <= registered
    for name in sorted(registered & set(COMMANDS)):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_profile_override_is_warned_and_recorded():
    cfg, profile, warnings = resolve_scenario("gs1_ideal", {"training.batch_size": 32})
    assert cfg.training.batch_size == 32
    assert profile["skipped"]["training.batch_size"]["preferred"] == 8
    assert warnings and "batch_size" in warnings[0]
    assert cfg.simulation.train_count + cfg.simulation.test_count == cfg.simulation.total_images


def test_network_only_quality_is_reported_next_to_the_refined_one(tiny_run):
    """Issue #12: with refinement on (the default), the run also scores the network's stitched
    object before refinement, with the same recipe, in comparison_metrics.json, run_metadata and
    the summary."""
    out, meta = tiny_run
    cmp = _load(out / "comparison_metrics.json")
    net = cmp["network_only"]["amplitude"]
    assert -1 <= net["pearson_r"] <= 1 and net["ssim"] is not None
    assert net["ssim"] != cmp["amplitude"]["ssim"]      # a different object, not the refined one
    block = meta["comparison_network_only"]
    assert block["amplitude"]["ssim"] == pytest.approx(net["ssim"])
    assert block["least_squares_scale"] > 0
    summary = (out / "gs1_ideal_comparison_summary.md").read_text()
    assert "network only (before refinement)" in summary


def test_run_records_the_network_precision(tiny_run):
    """A float32 run records its training precision (and the device's native bfloat16 support)
    and the precision inference ran in, in run_metadata and in the typed record."""
    from ptychotrace.model.precision import native_bfloat16
    from ptychotrace.records.run_metadata import RunMetadata

    out, meta = tiny_run
    assert meta["training"]["precision"] == {"precision": "float32",
                                             "native_bfloat16": native_bfloat16("cpu"),
                                             "warning": None}
    inf = meta["inference"]["precision"]
    assert inf["requested"] == "auto" and inf["trained_precision"] == "float32"
    assert inf["compute_precision"] == "float32"
    typed = RunMetadata.model_validate(meta)
    assert typed.inference.precision.compute_precision == "float32"
    assert typed.training.precision.precision == "float32"
