"""One evaluation for every command: ``run``, ``infer`` and ``baseline`` on one dataset and model
report identical comparison records (the stages layer), on a tiny configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptychotrace.cli import main
from ptychotrace.records import BaselineMetadata, ComparisonRecord, RunMetadata

TINY = ["--scenario", "gs1_ideal", "--N", "32", "--object-size", "96", "--base-total-images", "48",
        "--buffer", "8", "--group-count", "16", "--nepochs", "1", "--batch-size", "8",
        "--stitch-window", "12", "--prediction-scale-source", "least_squares", "--quiet"]


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    from ptychotrace.config import resolve_scenario
    from ptychotrace.data.dataset import save_dataset
    from ptychotrace.simulate import simulate

    cfg, _, _ = resolve_scenario("gs1_ideal", {
        "simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
        "simulation.buffer": 8.0}, use_profile=False)
    ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
    return save_dataset(tmp_path_factory.mktemp("data") / "tiny.npz", ds)


def _records(path: Path) -> dict:
    return ComparisonRecord.read(path / "comparison_metrics.json").dump()


def test_run_and_infer_report_identical_comparisons(tmp_path, dataset_file):
    run = tmp_path / "run"
    assert main(["run", *TINY, "--data", str(dataset_file), "--output-dir", str(run)]) == 0
    meta = RunMetadata.read(run / "run_metadata.json")
    assert meta.finished_ok
    inf = tmp_path / "inf"
    assert main(["infer", "--model", str(run), "--data", str(dataset_file),
                 "--output-dir", str(inf)]) == 0
    a, b = _records(run), _records(inf)
    assert a["prediction_scale"]["mode"] == "least_squares"   # the run's setting, carried over
    assert a == b
    # the run_metadata headline is the record's own headline (one shape)
    assert meta.comparison.amplitude == ComparisonRecord.read(
        run / "comparison_metrics.json").headline().amplitude
    for name in ("comparison.png", "frc.png", "amplitude.png", "phase.png"):
        assert (inf / name).is_file(), name


def test_baseline_command_and_sweep_stage_report_identical_comparisons(tmp_path, dataset_file):
    from ptychotrace.config import BaselineConfig
    from ptychotrace.data.dataset import load_dataset
    from ptychotrace.stages.baseline import run_baseline

    cmd = tmp_path / "cmd"
    assert main(["baseline", "--data", str(dataset_file), "--output-dir", str(cmd),
                 "--iterations", "3", "--stitch-window", "12", "--no-progress"]) == 0
    stage = tmp_path / "stage"
    run_baseline(load_dataset(dataset_file), stage, BaselineConfig(iterations=3),
                 stitch_window=12, seed=0)
    a, b = _records(cmd), _records(stage)
    assert a == b
    meta = BaselineMetadata.read(cmd / "baseline_metadata.json")
    assert meta.finished_ok and meta.comparison.amplitude.ssim == a["amplitude"]["ssim"]


def test_every_config_field_has_a_flag_and_bounds_are_checked_at_the_flag(capsys):
    from ptychotrace.cli import build_parser
    from ptychotrace.commands.flags import FLAG_MAP_ATTR, _fields
    from ptychotrace.commands.run import RUN_SECTIONS
    from ptychotrace.config import RunConfig

    parser = build_parser()
    args = parser.parse_args(["run", "--scenario", "gs1_ideal", "--output-dir", "x"])
    mapped = set(getattr(args, FLAG_MAP_ATTR).values())
    for section in RUN_SECTIONS:
        model = RunConfig.model_fields[section].annotation
        for path, _, _ in _fields(model, section, ""):
            assert path in mapped, path          # a field added to config.py gets its flag
    sweep = parser.parse_args(["sweep", "--scenario", "gs1_ideal", "--nphotons", "1e3",
                               "--output-dir", "x", "--with-baseline", "--baseline-holdout", "0"])
    assert sweep.cfg__baseline__holdout == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--scenario", "gs1_ideal", "--output-dir", "x",
                           "--refine-holdout", "1.5"])
    assert "--refine-holdout: must be < 1" in capsys.readouterr().err
