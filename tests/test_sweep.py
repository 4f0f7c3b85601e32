"""Dose sweeps: flag parsing, summary structure, resume, redo of failed points, identical data for
the baseline, and one real tiny end-to-end sweep (process pool, PINN + baseline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ptychotrace.cli import build_parser, main
from ptychotrace.sweep import dose_label, parse_nphotons

TINY = ["--scenario", "gs1_ideal", "--N", "32", "--object-size", "96", "--base-total-images", "48",
        "--buffer", "8", "--group-count", "16", "--nepochs", "1", "--batch-size", "8", "--quiet"]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def test_parse_nphotons_accepts_lists():
    assert parse_nphotons("1e3,1e4, 1e5 ,1e9") == [1e3, 1e4, 1e5, 1e9]
    assert parse_nphotons("2500") == [2500.0]
    assert [dose_label(x) for x in (1e3, 2.5e4, 1e9, 5, 0.5)] == ["1e3", "2.5e4", "1e9", "5e0",
                                                                  "5e-1"]


@pytest.mark.parametrize("text, fragment", [
    ("1e3,abc", "item 2 'abc' is not a number"),
    ("1e3,,1e5", "item 2 is empty"),
    ("", "empty dose list"),
    ("1e3,-4", "must be > 0"),
    ("0", "must be > 0"),
    ("1e3,inf", "not finite"),
    ("nan", "not finite"),
    ("1e3,1000", "repeats dose"),
    ("1e3;1e4", "is not a number"),
])
def test_parse_nphotons_rejects_junk(text, fragment):
    with pytest.raises(ValueError, match="comma-separated|repeats dose") as err:
        parse_nphotons(text)
    assert fragment in str(err.value)


def test_cli_rejects_junk_dose_list_clearly(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["sweep", *TINY, "--nphotons", "1e3,lots",
                                   "--output-dir", str(tmp_path / "s")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --nphotons" in err and "'lots' is not a number" in err


def test_cli_accepts_every_run_flag_and_rejects_data(tmp_path):
    args = build_parser().parse_args(["sweep", *TINY, "--nphotons", "1e3,1e5", "--seeds", "2",
                                      "--jobs", "2", "--with-baseline", "--baseline-iterations",
                                      "4", "--lr", "2e-3", "--prediction-scale-source",
                                      "least_squares", "--output-dir", str(tmp_path / "s")])
    assert args.nphotons == [1e3, 1e5] and args.seeds == 2 and args.jobs == 2
    from ptychotrace.commands.sweep import plan_from_args

    plan = plan_from_args(args)
    assert [p.name for p in plan.points] == ["gs1_ideal_n1e3_s42", "gs1_ideal_n1e3_s43",
                                             "gs1_ideal_n1e5_s42", "gs1_ideal_n1e5_s43"]
    cfgs = [p.request.config for p in plan.points]
    assert [c.simulation.nphotons for c in cfgs] == [1e3, 1e3, 1e5, 1e5]
    assert [c.simulation.sim_seed for c in cfgs] == [42, 43, 42, 43]
    assert [c.training.seed for c in cfgs] == [42, 43, 42, 43]
    assert all(c.training.lr == 2e-3 and c.simulation.N == 32 for c in cfgs)
    assert all(c.evaluation.prediction_scale_source.value == "least_squares" for c in cfgs)
    args.data = "x.npz"
    with pytest.raises(ValueError, match="--data cannot be swept"):
        plan_from_args(args)
    assert main(["sweep", *TINY, "--nphotons", "1e3", "--baseline-iterations", "3",
                 "--output-dir", str(tmp_path / "t")]) == 2


# --------------------------------------------------------------------------------------------
# Orchestration with a stand-in for run_scenario (fast; the real pipeline is tested below)
# --------------------------------------------------------------------------------------------
class FakeRunner:
    """Writes a minimal but real-looking run directory from the in-memory dataset."""

    def __init__(self):
        self.calls: list[str] = []
        self.fingerprints: dict[str, str] = {}
        self.fail: set[str] = set()

    def __call__(self, req):
        from ptychotrace.baseline import coverage_mask
        from ptychotrace.records import Inference, InferenceSeconds, RunMetadata
        from ptychotrace.records import examples as ex
        from ptychotrace.records.run_metadata import RunError
        from ptychotrace.stages.evaluate import evaluate
        from ptychotrace.sweep import dataset_fingerprint
        from ptychotrace.telemetry.recorder import prepare_run_dir
        from ptychotrace.telemetry.writers import write_npy

        out = Path(req.output_dir)
        prepare_run_dir(out, force=req.force)
        name = out.name
        self.calls.append(name)
        ds = req.dataset
        assert ds is not None, "the sweep must pass the simulated dataset in memory"
        self.fingerprints[name] = dataset_fingerprint(ds)
        assert ds.metadata.get("nphotons", req.config.simulation.nphotons) is not None
        if name in self.fail:
            RunMetadata(status="failed", scenario=req.config.scenario, timestamp="t",
                        elapsed_seconds=1.0, failed_stage="train",
                        error=RunError(type="RuntimeError", message="boom")
                        ).write(out / "run_metadata.json")
            raise RuntimeError("injected training failure")
        idx = ds.indices("test")
        covered = coverage_mask(ds, idx, ds.obj.shape, req.config.inference.stitch_window)
        pred = np.where(covered, ds.obj * 0.9, 0).astype(np.complex64)
        cmp = evaluate(pred, ds.obj, covered)
        cmp.write(out / "comparison_metrics.json")
        write_npy(out / "inference_outputs" / "amplitude.npy", np.abs(pred))
        write_npy(out / "inference_outputs" / "phase.npy", np.angle(pred))
        write_npy(out / "inference_outputs" / "coverage_weight.npy", covered.astype(np.float32))
        write_npy(out / "inference_outputs" / "evaluation_region.npy", covered.astype(np.float32))
        inference = Inference(groups_available=len(idx), groups_used=len(idx), group_limit=None,
                              patterns_used=int(len(idx)), stitched_shape=list(ds.obj.shape),
                              stitch_window=req.config.inference.stitch_window,
                              coverage_fraction=float(covered.mean()), patterns_per_second=100.0,
                              seconds=InferenceSeconds(total=0.24))
        meta = ex.run_metadata(cmp, scenario=req.config.scenario, config=req.config.to_dict(),
                               stage_seconds={"train": 2.0, "infer": 0.5}, inference=inference)
        meta.write(out / "run_metadata.json")
        return meta.dump()


@pytest.fixture
def fake(monkeypatch):
    import ptychotrace.scenarios.runner as runner

    f = FakeRunner()
    monkeypatch.setattr(runner, "run_scenario", f)
    return f


def _sweep(out: Path, *extra: str) -> int:
    return main(["sweep", *TINY, "--nphotons", "1e4,1e9", "--with-baseline",
                 "--baseline-iterations", "3", "--output-dir", str(out), *extra])


def _mtimes(out: Path) -> dict[str, int]:
    files = list(out.glob("runs/*/run_metadata.json")) + \
        list(out.glob("baseline/*/comparison_metrics.json"))
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


def test_sweep_summary_resume_and_redo(tmp_path, fake):
    out = tmp_path / "sweep"
    assert _sweep(out) == 0
    names = ["gs1_ideal_n1e4_s42", "gs1_ideal_n1e9_s42"]
    assert fake.calls == names
    for name in names:
        assert (out / "runs" / name / "run_metadata.json").is_file()
        assert (out / "baseline" / name / "comparison_metrics.json").is_file()
        rec = json.loads((out / "datasets" / f"{name}.json").read_text())
        # the baseline saw exactly the data the PINN run received
        assert rec["sha256"] == fake.fingerprints[name]
        bmeta = json.loads((out / "baseline" / name / "baseline_metadata.json").read_text())
        assert bmeta["status"] == "ok" and bmeta["dataset"]["sha256"] == rec["sha256"]
        bcmp = json.loads((out / "baseline" / name / "comparison_metrics.json").read_text())
        assert bcmp["coverage"]["used"] == "pinn"
        pcmp = json.loads((out / "runs" / name / "comparison_metrics.json").read_text())
        assert bcmp["coverage_fraction"] == pytest.approx(pcmp["coverage_fraction"])
    for fig in ("quality_vs_dose.png", "bias_vs_dose.png", "time_vs_dose.png"):
        assert (out / fig).stat().st_size > 1000
    s = json.loads((out / "sweep_summary.json").read_text())
    assert s["status"] == "ok" and s["failed"] == [] and s["skipped"] == []
    assert s["doses"] == [1e4, 1e9] and s["methods"] == ["pinn", "baseline"]
    assert s["seeds"]["count"] == 1 and s["baseline"]["iterations"] == 3
    assert [b["nphotons"] for b in s["per_dose"]] == [1e4, 1e9]
    for block in s["per_dose"]:
        for m in ("pinn", "baseline"):
            b = block[m]
            assert b["n_ok"] == 1 and len(b["per_seed"]) == 1
            met = b["per_seed"][0]["metrics"]
            for key in ("amplitude_ssim", "amplitude_pearson_r", "amplitude_bias_mean",
                        "least_squares_scale", "seconds_per_pattern"):
                assert met[key] is not None, (m, key)
                assert b["mean"][key] == pytest.approx(met[key])
                assert b["std"][key] is None  # one seed
            assert "phase_ssim" in met and "amplitude_frc_half_bit_px" in met
        pinn = block["pinn"]["per_seed"][0]["metrics"]
        assert pinn["train_seconds"] == 2.0 and pinn["inference_patterns_per_second"] == 100.0
        assert pinn["least_squares_scale"] == pytest.approx(1 / 0.9, rel=1e-3)
        base = block["baseline"]["per_seed"][0]["metrics"]
        assert base["baseline_seconds"] > 0 and base["baseline_iterations"] >= 1
    md = (out / "sweep_summary.md").read_text()
    assert "| 1e4 | pinn |" in md and "| 1e9 | baseline |" in md

    # second invocation: everything finished -> nothing redone, files untouched, all skipped
    before = _mtimes(out)
    assert len(before) == 4
    fake.calls.clear()
    assert _sweep(out) == 0
    assert fake.calls == []
    assert _mtimes(out) == before
    s2 = json.loads((out / "sweep_summary.json").read_text())
    assert sorted((k["name"], k["method"]) for k in s2["skipped"]) == sorted(
        (n, m) for n in names for m in ("pinn", "baseline"))
    assert s2["status"] == "ok"
    assert s2["per_dose"][0]["pinn"]["mean"] == s["per_dose"][0]["pinn"]["mean"]

    # a deleted run and a baseline left unfinished are redone; the rest stays skipped
    shutil.rmtree(out / "runs" / names[0])
    (out / "baseline" / names[1] / "comparison_metrics.json").unlink()
    assert _sweep(out) == 0
    assert fake.calls == [names[0]]
    after = _mtimes(out)
    assert after[f"runs/{names[1]}/run_metadata.json"] == before[f"runs/{names[1]}/run_metadata.json"]
    assert after[f"baseline/{names[1]}/comparison_metrics.json"] != \
        before[f"baseline/{names[1]}/comparison_metrics.json"]
    assert list((out / "baseline").glob(f"{names[1]}.bak-*")), "the old baseline dir is kept aside"
    s3 = json.loads((out / "sweep_summary.json").read_text())
    assert [(k["name"], k["method"]) for k in s3["skipped"]] == [(names[1], "pinn")]
    assert s3["status"] == "ok"

    # another configuration in the same directory is a conflict, not silently mixed in
    fake.calls.clear()
    assert main(["sweep", *TINY[:-3], "--nepochs", "2", "--quiet", "--nphotons", "1e4",
                 "--output-dir", str(out)]) == 1
    assert fake.calls == []
    s4 = json.loads((out / "sweep_summary.json").read_text())
    assert s4["failed"][0]["stage"] == "resume" and "different configuration" in \
        s4["failed"][0]["error"]


def test_failed_point_listed_then_redone(tmp_path, fake, capsys):
    out = tmp_path / "sweep"
    fake.fail.add("gs1_ideal_n1e4_s42")
    assert _sweep(out) == 1
    s = json.loads((out / "sweep_summary.json").read_text())
    assert s["status"] == "failed"
    assert [(f["name"], f["method"]) for f in s["failed"]] == [("gs1_ideal_n1e4_s42", "pinn")]
    assert "injected training failure" in s["failed"][0]["error"]
    assert s["per_dose"][0]["pinn"]["n_ok"] == 0 and s["per_dose"][1]["pinn"]["n_ok"] == 1
    # the baseline of the failed point still ran, on its own coverage (documented)
    bcmp = json.loads((out / "baseline/gs1_ideal_n1e4_s42/comparison_metrics.json").read_text())
    assert bcmp["coverage"]["used"] == "baseline"
    assert "gs1_ideal_n1e4_s42" in (out / "sweep_summary.md").read_text().split("## Failed")[1]
    assert "failed: gs1_ideal_n1e4_s42" in capsys.readouterr().err

    fake.fail.clear()
    fake.calls.clear()
    assert _sweep(out) == 0
    assert fake.calls == ["gs1_ideal_n1e4_s42"]
    assert list((out / "runs").glob("gs1_ideal_n1e4_s42.bak-*")), "failed run moved aside"
    s = json.loads((out / "sweep_summary.json").read_text())
    assert s["status"] == "ok" and s["failed"] == []
    bcmp = json.loads((out / "baseline/gs1_ideal_n1e4_s42/comparison_metrics.json").read_text())
    assert bcmp["coverage"]["used"] == "pinn"  # redone together with its PINN run


# --------------------------------------------------------------------------------------------
# The real pipeline, tiny (process pool with two workers)
# --------------------------------------------------------------------------------------------
def test_real_tiny_sweep_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    rc = main(["sweep", *TINY, "--nphotons", "1e5,1e9", "--jobs", "2", "--with-baseline",
               "--baseline-iterations", "5", "--output-dir", str(out)])
    s = json.loads((out / "sweep_summary.json").read_text())
    assert rc == 0, s["failed"]
    assert s["execution"]["workers"] == 2 and s["execution"]["torch_threads_per_worker"] >= 1
    for block in s["per_dose"]:
        for m in ("pinn", "baseline"):
            met = block[m]["per_seed"][0]["metrics"]
            assert met is not None and met["amplitude_pearson_r"] is not None
            assert met["seconds_per_pattern"] > 0
    for r in s["runs"]:
        meta = json.loads((Path(r["run_dir"]) / "run_metadata.json").read_text())
        assert meta["status"] == "ok"
        assert meta["provenance"]["seeds"]["sim_seed"] == 42
        assert meta["config"]["simulation"]["nphotons"] == r["nphotons"]
        # the PINN and the baseline reconstructed the same photons, on the same region
        rec = json.loads((out / "datasets" / f"{r['name']}.json").read_text())
        assert meta["measured_photons_per_pattern"]["all"] == pytest.approx(
            rec["measured_photons_per_pattern"]["all"])
        bmeta = json.loads((Path(r["baseline_dir"]) / "baseline_metadata.json").read_text())
        assert bmeta["dataset"]["sha256"] == rec["sha256"] == r["dataset_sha256"]
        bcmp = json.loads((Path(r["baseline_dir"]) / "comparison_metrics.json").read_text())
        assert bcmp["coverage"]["used"] == "pinn"
        pcmp = json.loads((Path(r["run_dir"]) / "comparison_metrics.json").read_text())
        assert bcmp["coverage_fraction"] == pytest.approx(
            pcmp["evaluation_region"]["evaluated_fraction"])
    before = _mtimes(out)
    assert main(["sweep", *TINY, "--nphotons", "1e5,1e9", "--with-baseline",
                 "--baseline-iterations", "5", "--output-dir", str(out)]) == 0
    assert _mtimes(out) == before
    assert len(json.loads((out / "sweep_summary.json").read_text())["skipped"]) == 4


def test_speedup_is_baseline_time_over_pinn_time():
    from ptychotrace.sweep.sweep import speedup_vs_baseline
    block = {"pinn": {"mean": {"seconds_per_pattern": 0.02, "network_seconds_per_pattern": 0.004}},
             "baseline": {"mean": {"seconds_per_pattern": 0.2}}}
    sp = speedup_vs_baseline(block)
    assert sp["inference"] == pytest.approx(10.0) and sp["network_only"] == pytest.approx(50.0)
    block["pinn"]["mean"]["network_seconds_per_pattern"] = None
    assert speedup_vs_baseline(block)["network_only"] is None
    assert speedup_vs_baseline({"pinn": block["pinn"]}) is None


def test_quality_verdict_pairs_seeds_and_names_the_doses():
    from ptychotrace.sweep.sweep import MD_COLUMNS, quality_vs_baseline, render_markdown

    def seeds(vals):
        return [{"seed_index": i, "metrics": None if v is None else {"amplitude_ssim": v}}
                for i, v in enumerate(vals)]

    def block(dose, pinn, base, speed):
        b = {"nphotons": dose, "pinn": {"per_seed": seeds(pinn)},
             "baseline": {"per_seed": seeds(base)},
             "speedup_vs_baseline": {"inference": speed}}
        b["quality_vs_baseline"] = quality_vs_baseline(b)
        return b

    # seed 2 has no baseline result: it must not enter either mean
    low = block(1e3, [0.50, 0.40, 0.90], [0.45, 0.42, None], 0.25)
    q = low["quality_vs_baseline"]
    assert q["seeds_compared"] == 2 and q["seeds_pinn_at_or_above"] == 1
    assert q["pinn_mean"] == pytest.approx(0.45) and q["baseline_mean"] == pytest.approx(0.435)
    assert q["difference"] == pytest.approx(0.015) and q["pinn_at_or_above"]
    high = block(1e9, [0.90, 0.91, 0.92], [0.95, 0.96, 0.90], 2.0)
    assert not high["quality_vs_baseline"]["pinn_at_or_above"]
    assert high["quality_vs_baseline"]["seeds_pinn_at_or_above"] == 1
    assert quality_vs_baseline({"pinn": low["pinn"]}) is None
    assert quality_vs_baseline(block(1e4, [0.5], [None], 1.0)) is None

    summary = {"scenario": "gs1_ideal", "status": "ok", "doses": [1e3, 1e9], "methods": ["pinn", "baseline"],
               "seeds": {"count": 3, "base_sim_seed": 42, "base_training_seed": 42},
               "per_dose": [low, high], "baseline": {"enabled": True, "coverage_rule": "x"}}
    for b in summary["per_dose"]:
        for m in ("pinn", "baseline"):
            empty = {k: None for k, _ in MD_COLUMNS}
            b[m].update({"n_ok": 3, "n_seeds": 3, "mean": empty, "std": empty})
    md = render_markdown(summary)
    assert "| 1e3 | +0.0150 | 1/2 | baseline (4x) |" in md
    assert "| 1e9 | -0.0267 | 1/3 | PINN (2x) |" in md
    assert "at or above the baseline (seed mean) at: 1e3; below at: 1e9." in md


def test_baseline_smoothing_is_part_of_the_baseline_signature():
    from ptychotrace.sweep.sweep import BaselineOptions
    assert "smooth" not in BaselineOptions(enabled=True).signature()   # old sweeps resume as before
    assert BaselineOptions(enabled=True, smooth=True).signature()["smooth"] is True
    args = build_parser().parse_args(["sweep", "--scenario", "gs1_ideal", "--nphotons", "1e4",
                                      "--output-dir", "x", "--with-baseline", "--baseline-smooth"])
    from ptychotrace.commands.sweep import plan_from_args

    plan = plan_from_args(args)
    assert plan.baseline.smooth is True and plan.baseline.signature()["smooth"] is True
    assert plan.points[0].request.config.baseline.smooth is True   # recorded in the config


def test_frc_never_crossed_is_reported_as_nyquist_not_missing():
    from ptychotrace.records.comparison import Frc
    from ptychotrace.sweep.metrics import NYQUIST_PX, _half_bit_px

    assert _half_bit_px(Frc(half_bit_resolution=None, frc50=None, half_bit_crossed=False)) == NYQUIST_PX
    assert _half_bit_px(Frc(half_bit_resolution=3.5, frc50=4.0, half_bit_crossed=True)) == 3.5
    # undefined (e.g. a constant image): no number is made up
    assert _half_bit_px(Frc(half_bit_resolution=None, frc50=None, half_bit_crossed=None)) is None
    assert _half_bit_px(None) is None
