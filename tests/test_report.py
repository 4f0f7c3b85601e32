"""``ptychotrace report`` on hand-made run, sweep and analyze directories (no simulation, no
training), plus one render in real headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from ptychotrace.cli import main
from ptychotrace.records import (
    COMPARISON_FILE,
    HISTORY_FILE,
    HISTORY_SUMMARY_FILE,
    INTENSITY_STATS_FILE,
    RUN_METADATA_FILE,
    Counts,
    DatasetScaleInfo,
    LabelVsTruth,
    Profile,
    Provenance,
    RunMetadata,
    SplitIntensityStats,
    Training,
    TrainingLabels,
)
from ptychotrace.records import examples as ex
from ptychotrace.records.run_metadata import DatasetSource, Environment, RunError, SplitStats
from ptychotrace.report import (
    ANALYZE_SECTIONS,
    FAILURE_SECTION,
    RUN_SECTIONS,
    SWEEP_SECTIONS,
    ReportInputError,
    build_report,
    fmt,
)
from ptychotrace.stages.evaluate import evaluate
from ptychotrace.telemetry import array_stats, build_intensity_stats, label_vs_truth, write_json
from ptychotrace.telemetry.scale_chain import intensity_scale_block, record_training_label_stats
from ptychotrace.telemetry.writers import write_bytes, write_npy
from ptychotrace.train.history import History

GAIN = 0.02
SCENARIO = "gs1_fixture"


def _png_of(array: np.ndarray) -> bytes:
    import io

    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, array, format="png", cmap="gray")
    return buf.getvalue()


def make_run(root: Path, *, status: str = "ok", images: bool = True, history: bool = True) -> dict:
    """A run directory of a 48 x 48 object, every file built by its producer or from its typed
    record (records/), so a renamed field fails here; returns key numbers.

    The comparison comes from the one evaluation (stages.evaluate), the scale chain from the
    real build_intensity_stats, the history from train.history.History and run_metadata.json
    from records.RunMetadata. With ``images``, the amplitude images are written as PNG and .npy,
    the phase images only as .npy (the report must draw those itself); ``history``:
    train_outputs/history*.json. (Each figure the report draws costs ~0.2 s on a 2-core runner:
    tests that do not look at them leave them out.)
    """
    rng = np.random.default_rng(0)
    n = 48
    yy, xx = np.mgrid[:n, :n]
    truth_amp = 1.0 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    truth_phase = 0.5 * np.tanh(np.sin(yy / 5.0))
    truth = truth_amp * np.exp(1j * truth_phase)
    pred = 0.9 * truth_amp * np.exp(1j * (truth_phase + 0.2)) + 0.02 * rng.standard_normal((n, n))
    covered = np.zeros((n, n), bool)
    covered[4:44, 4:44] = True
    record = evaluate(pred, truth, covered)
    record.write(root / COMPARISON_FILE)
    cmp = record.dump()

    arrays = {"ground_truth_amp": truth_amp, "ground_truth_phase": truth_phase,
              "amplitude_diff": np.abs(pred) - truth_amp,
              "phase_diff": np.angle(pred) - truth_phase,
              "inference_outputs/amplitude": np.abs(pred), "inference_outputs/phase": np.angle(pred)}
    for rel, arr in arrays.items() if images else ():
        write_npy(root / f"{rel}.npy", arr)
        if "amp" in rel:
            write_bytes(root / f"{rel}.png", _png_of(arr))

    counts = rng.poisson(50.0, size=(16, 8, 8)).astype(np.float64)
    x = np.sqrt(counts) * GAIN
    y_amp = np.broadcast_to(truth_amp[:8, :8], (16, 8, 8)).copy()
    labels = record_training_label_stats(
        {"X": x, "Y_amp": y_amp, "Y_I": y_amp**2, "Y": y_amp * np.exp(0.1j)},
        missing_reasons={"Y_phi": "phase label not carried by this fixture"})
    lvt = label_vs_truth(labels, float(truth_amp[:8, :8].mean()))
    meta = {"count": 16, "gridsize": 1, "group_limit": None}
    stages = [
        ("raw_diffraction", "simulate", np.sqrt(counts), {**meta, "domain": "amplitude"}),
        ("grouped_diffraction", "group", np.sqrt(counts), {**meta, "domain": "amplitude"}),
        ("grouped_X_full", "normalise", x, {**meta, "domain": "amplitude"}),
        ("container_X", "container", x, meta),
        ("training_labels_Y_amp", "container", y_amp, meta),
        ("inference_prediction", "infer", np.abs(pred), meta),
        ("ground_truth_amp", "compare", truth_amp, {"count": None, "gridsize": None,
                                                    "group_limit": None}),
    ]
    ist = build_intensity_stats(
        [{"name": nm, "source": src, "stats": array_stats(a), "metadata": m}
         for nm, src, a, m in stages], normalize_gain=GAIN,
        intensity_scale=intensity_scale_block(100.0, 98.8, "dataset", True, 100.0),
        training_labels=labels, label_vs_truth_analysis=lvt)
    write_json(root / INTENSITY_STATS_FILE, ist)

    if history:
        hist = History()
        for i, (loss, val, nll, mae, lr) in enumerate(
                [(2.0, 2.2, 1.5, 0.3, 1e-3), (1.1, 1.3, 0.9, 0.2, 1e-3), (0.7, 0.8, 0.6, 0.15, 1e-3),
                 (0.52, 0.6, 0.45, 0.12, 5e-4), (0.45, 0.55, 0.4, 0.1, 5e-4)], start=1):
            hist.append(i, 4 * i, {"loss": loss, "val_loss": val, "nll": nll, "mae": mae,
                                   "lr": lr})
        write_json(root / HISTORY_FILE, hist.to_dict())
        write_json(root / HISTORY_SUMMARY_FILE, hist.summary())

    blocks = dict(
        scenario=SCENARIO, timestamp="2026-11-25T10:00:00.000Z",
        finished_at="2026-11-25T10:02:05.500Z", elapsed_seconds=125.5,
        stage_seconds={"simulate": 3.5, "group": 0.5, "train": 110.0, "infer": 8.0,
                       "compare": 3.5},
        config={"scenario": SCENARIO,
                "simulation": {"N": 32, "object_size": 48, "nphotons": 1e9, "gridsize": 1,
                               "probe_mode": "ideal"},
                "training": {"nepochs": 5, "batch_size": 16, "lr": 1e-3,
                             "loss_weights": {"nll": 1.0, "mae": 0.0, "realspace": 0.0}},
                "inference": {"group_limit": 64}},
        cli_args={"scenario": SCENARIO},
        profile=Profile(name="stable", defaults={"training.lr": 1e-3},
                        applied={"training.lr": 1e-3}, active=True),
        provenance=Provenance(
            package_version="0.1.0", git_commit="0123456789abcdef", git_dirty=False,
            environment=Environment(python="3.11.9", numpy=np.__version__, device="cpu",
                                    threads=2),
            seeds={"object_seed": 42, "sim_seed": 42, "training_seed": 42},
            dataset_source=DatasetSource(type="simulated")),
        counts=Counts(total_images=64, train_count=32, test_count=32, group_count=32,
                      group_limit=64, gridsize=1, N=32, nphotons=1e9),
        dataset_scale_info=DatasetScaleInfo(N=32, nphotons=1e9, batch_mean_sum_intensity=1e5,
                                            dataset_scale=100.0, fallback_scale=1976.4,
                                            ratio=0.0506, used_mode="dataset"),
        split_intensity_stats=SplitIntensityStats(
            train=SplitStats(batch_mean_sum_intensity=1e5, n_samples=32, dataset_scale=100.0),
            test=SplitStats(batch_mean_sum_intensity=1.02e5, n_samples=32, dataset_scale=99.0),
            train_vs_test_scale_ratio=1.0101, train_vs_test_deviation_pct=1.01,
            deviation_exceeds_5pct=False),
        training_labels=TrainingLabels.model_validate(labels),
        label_vs_truth_analysis=LabelVsTruth.model_validate(lvt),
        forward_pass_diagnostics={"data_scale": 100.0, "model_scale": 100.0,
                                  "scale_match_pct": 0.0, "output_vs_truth_ratio": 0.9},
        training=Training(epochs_completed=5, final_loss=0.45, final_val_loss=0.55,
                          samples_per_second=812.5),
        artifacts=[COMPARISON_FILE, INTENSITY_STATS_FILE],
    )
    if status == "failed":
        blocks.update(failed_stage="infer", error=RunError(
            type="RuntimeError", message="stitch canvas too small (fixture)",
            traceback="Traceback (most recent call last):\n  ...\nRuntimeError: x"))
    ex.run_metadata(record, status=status, **blocks).write(root / RUN_METADATA_FILE)
    return {"cmp": cmp, "ist": ist, "lvt": lvt}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A full run directory and its report, made once through the CLI (tests only read it)."""
    root = tmp_path_factory.mktemp("built") / "run"
    numbers = make_run(root)
    assert main(["report", str(root)]) == 0
    return root, numbers


def _section_ids(text: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', text)


def _md_anchors(text: str) -> list[str]:
    return re.findall(r'^<a id="([^"]+)"></a>$', text, flags=re.M)


# ----------------------------------------------------------------------------------- run report
def test_run_report_sections_numbers_and_twin(built):
    root, numbers = built
    page = (root / "report.html").read_text(encoding="utf-8")
    assert _section_ids(page) == list(RUN_SECTIONS)  # ok run: no failure banner
    # self-contained: embedded images only, no script, nothing fetched
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', page)
    assert page.count('src="data:image/png;base64,') >= 8  # 6 images + curves + FRC

    cmp, ist, lvt = numbers["cmp"], numbers["ist"], numbers["lvt"]
    text = html.unescape(page)
    assert SCENARIO in text and "125.5 s (2 min 6 s)" in text
    for value, unit in [(cmp["amplitude"]["mae"], ""), (cmp["phase"]["rmse"], "rad"),
                        (cmp["amplitude"]["pearson_r"], ""),
                        (cmp["full_canvas"]["amplitude"]["mae"], ""),
                        (cmp["amplitude"]["psnr"]["value"], "dB"),
                        (cmp["amplitude"]["frc"]["half_bit_resolution"], "px"),
                        (ist["ratios"]["grouped_to_normalized"], ""),
                        (ist["stage_means"]["container_X"], ""),
                        (lvt["amplitude_gap_pct"], "%"), (812.5, "patterns/s"),
                        (1e9, "photons/pattern")]:
        assert fmt(value, unit) in text, (value, unit)
    assert "Symmetry check VIOLATED (prediction_to_truth; tolerance 5 %)" in text
    assert f"Verdict: {lvt['verdict']}" in text
    assert "phase label not carried by this fixture" in text  # training_labels.missing
    assert "rendered from inference_outputs/phase.npy" in text  # no PNG -> drawn from .npy
    assert "(ground_truth_amp.png)" in text  # PNG written by the run is used as is

    md = (root / "report.md").read_text(encoding="utf-8")
    assert _md_anchors(md) == list(RUN_SECTIONS)
    titles = re.findall(r"<h2>([^<]+)</h2>", page)
    assert re.findall(r"^## (.+)$", md, flags=re.M) == [html.unescape(t) for t in titles]
    assert fmt(cmp["amplitude"]["mae"]) in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "ground_truth_amp.png" in links and "report_files/training_curves.png" in links
    assert "report_files/frc.png" in links and "report_files/image_phase_truth.png" in links
    for link in links:  # every figure the twin references exists, relative to report.md
        assert (root / link).read_bytes().startswith(b"\x89PNG"), link


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    root = tmp_path / "run"
    make_run(root, images=False)
    assert main(["report", str(root)]) == 0
    before = (root / "report.html").read_bytes()
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "report.html" in err and "--force" in err
    assert (root / "report.html").read_bytes() == before
    # --force replaces; generated figures no longer needed are removed
    stale = root / "report_files" / "old_figure.png"
    stale.write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "train_outputs" / "history.json").unlink()
    assert main(["report", str(root), "--force"]) == 0
    assert not stale.exists() and not (root / "report_files" / "training_curves.png").exists()
    assert (root / "report_files" / "frc.png").is_file()


def test_output_option_and_bad_output(tmp_path):
    root = tmp_path / "run"
    make_run(root, history=False)
    for rel in ("ground_truth_phase.npy", "phase_diff.npy", "inference_outputs/phase.npy"):
        (root / rel).unlink()  # keep to the PNGs the run wrote: nothing to draw but the FRC
    out = tmp_path / "elsewhere" / "gs1.html"
    result = build_report(root, out)
    assert result.html == out and result.markdown == out.with_suffix(".md")
    md = out.with_suffix(".md").read_text()
    assert "gs1_files/frc.png" in md and "../run/ground_truth_amp.png" in md
    assert not (root / "report.html").exists()
    with pytest.raises(ValueError, match=r"\.html"):
        build_report(root, tmp_path / "report.txt")


def test_missing_optional_files_are_reported_not_fatal(tmp_path):
    root = tmp_path / "run"
    make_run(root)
    for rel in ("comparison_metrics.json", "intensity_stats.json", "train_outputs/history.json",
                "ground_truth_phase.npy", "inference_outputs/amplitude.png"):
        (root / rel).unlink()
    (root / "train_outputs" / "history_summary.json").write_text("{not json")
    md = json.loads((root / "run_metadata.json").read_text())
    for key in ("training_labels", "label_vs_truth_analysis", "provenance"):
        md.pop(key)
    md["training"]["final_loss"] = float("nan")  # the writer stores null and says so
    write_json(root / "run_metadata.json", md)
    result = build_report(root)
    text = html.unescape(result.html.read_text())
    assert _section_ids(text) == list(RUN_SECTIONS)
    for phrase in ("Metrics not available (file comparison_metrics.json missing)",
                   "FRC not available (file comparison_metrics.json missing)",
                   "Scale chain not available (file intensity_stats.json missing)",
                   "Training curves not available (file train_outputs/history.json missing)",
                   "History summary not available (file train_outputs/history_summary.json is "
                   "not valid JSON",
                   "not available (files ground_truth_phase.png and ground_truth_phase.npy",
                   "rendered from inference_outputs/amplitude.npy",
                   "Labels vs truth not available (no label_vs_truth_analysis block in "
                   "run_metadata.json or intensity_stats.json)",
                   "Training labels not available (no training_labels block",
                   "Provenance not available (no provenance block in run_metadata.json)",
                   "run_metadata.json stores 1 non-finite value(s) as null: "
                   "$.training.final_loss = nan"):
        assert phrase in text, phrase
    twin = result.markdown.read_text()
    assert _md_anchors(twin) == list(RUN_SECTIONS)
    assert "Metrics not available (file comparison_metrics.json missing)" in twin


def test_failed_run_gets_a_banner(tmp_path):
    root = tmp_path / "failed"
    make_run(root, status="failed", images=False, history=False)
    (root / "comparison_metrics.json").unlink()
    text = html.unescape(build_report(root).html.read_text())
    assert _section_ids(text) == [FAILURE_SECTION, *RUN_SECTIONS]
    assert "This run FAILED in stage 'infer': RuntimeError: stitch canvas too small (fixture)" in text
    assert '<section id="failure" class="tone-bad">' in text
    assert "Traceback (most recent call last)" in text


def test_minimal_failed_record_still_renders(tmp_path):
    # what the recorder writes when a run is killed in its first stage: no block but the top level
    root = tmp_path / "bare"
    RunMetadata(status="failed", scenario="x", partial=True, timestamp="2026-01-01T00:00:00Z",
                elapsed_seconds=0.5, failed_stage="simulate",
                error=RunError(type="Incomplete", message="m")).write(root / RUN_METADATA_FILE)
    text = html.unescape(build_report(root).html.read_text())
    assert _section_ids(text) == [FAILURE_SECTION, *RUN_SECTIONS]
    assert "The record is partial" in text
    for phrase in ("Counts not available (no counts block in run_metadata.json)",
                   "Training summary not available (no training block"):
        assert phrase in text, phrase


def test_renamed_fields_fail_loudly(tmp_path):
    """A producer that renames a required field is caught when the report reads the file: the
    marker file refuses the report, naming the field; another file turns its sections red with
    the field named, never into a quiet "n/a"."""
    root = tmp_path / "run"
    make_run(root, images=False, history=False)
    cmp = json.loads((root / COMPARISON_FILE).read_text())
    cmp["amplitude"]["mean_abs_error"] = cmp["amplitude"].pop("mae")
    write_json(root / COMPARISON_FILE, cmp)
    ist = json.loads((root / INTENSITY_STATS_FILE).read_text())
    ist["stages"][0]["stats"]["nans"] = ist["stages"][0]["stats"].pop("nan_count")
    write_json(root / INTENSITY_STATS_FILE, ist)
    text = html.unescape(build_report(root).html.read_text())
    assert re.search(r'<p class="tone-bad">Metrics not available \(comparison_metrics.json: not a '
                     r'valid ComparisonRecord: amplitude\.mae: Field required', text)
    assert "FRC not available (comparison_metrics.json: not a valid ComparisonRecord" in text
    assert "stages.0.stats.nan_count: Field required" in text
    md = json.loads((root / RUN_METADATA_FILE).read_text())
    md["counts"]["n_patterns"] = md["counts"].pop("total_images")
    write_json(root / RUN_METADATA_FILE, md)
    with pytest.raises(ReportInputError, match=r"run_metadata.json.*counts\.total_images"):
        build_report(root, force=True)


def test_not_a_report_directory_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError) as info:
        build_report(tmp_path / "empty")
    for marker in ("run_metadata.json", "sweep_summary.json", "bias_summary.json"):
        assert marker in str(info.value)
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run_metadata.json").write_text("[1, 2")
    with pytest.raises(ReportInputError, match="run_metadata.json is not valid JSON"):
        build_report(bad)
    assert not (bad / "report.html").exists()


# ------------------------------------------------------------------------ sweep and analyze dirs
def test_sweep_report_is_generic(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "nphotons_1e6", images=False, history=False)
    ex.sweep_summary({"nphotons_1e6": (1e6, 0.91), "nphotons_1e9": (1e9, None)}).write(
        sweep / "sweep_summary.json")
    write_bytes(sweep / "pearson_vs_nphotons.png", _png_of(np.eye(8)))
    result = build_report(sweep)
    text = html.unescape(result.html.read_text())
    assert result.kind == "sweep" and _section_ids(text) == list(SWEEP_SECTIONS)
    for needle in ("pinn.metrics.amplitude_pearson_r", "0.91", "nphotons_1e9",
                   "pearson_vs_nphotons.png", "per_dose", "Run directories in the sweep"):
        assert needle in text, needle
    assert '<td class="tone-bad">failed</td>' in text
    md = result.markdown.read_text()
    assert _md_anchors(md) == list(SWEEP_SECTIONS) and "(pearson_vs_nphotons.png)" in md
    # a summary that does not match its record is refused, naming the field
    bad = json.loads((sweep / "sweep_summary.json").read_text())
    bad["per_dose"][0]["dose"] = bad["per_dose"][0].pop("nphotons")
    write_json(sweep / "sweep_summary.json", bad)
    with pytest.raises(ReportInputError, match=r"per_dose\.0\.nphotons"):
        build_report(sweep, force=True)


def test_analyze_report(tmp_path):
    from ptychotrace.analysis import analyze_runs

    make_run(tmp_path / "gs1", images=False, history=False)
    summary = analyze_runs({"gs1": tmp_path / "gs1"}, tmp_path / "analysis")
    result = build_report(tmp_path / "analysis")
    text = html.unescape(result.html.read_text())
    assert result.kind == "analyze" and _section_ids(text) == list(ANALYZE_SECTIONS)
    s = summary["scenarios"]["gs1"]
    assert fmt(s["comparison"]["amplitude"]["bias_summary"]["mean"]) in text
    assert s["diagnosis"]["line"] in text      # the analyzer's one-line verdict
    assert "bias_summary.png" in text
    assert "(bias_summary.png)" in result.markdown.read_text()
    # one model for the writer and the reader: a rename in the analyzer fails when it writes
    # (nothing is written), and a renamed field in a file fails when the report reads it
    import ptychotrace.analysis.bias as bias_mod

    real = bias_mod.analyze_run

    def renamed(name, run):
        block = real(name, run)
        block["training_nan"]["nan"] = block["training_nan"].pop("any_nan")
        return block

    bias_mod.analyze_run = renamed
    try:
        with pytest.raises(ValueError, match="any_nan"):
            analyze_runs({"gs1": tmp_path / "gs1"}, tmp_path / "analysis_renamed")
    finally:
        bias_mod.analyze_run = real
    assert not (tmp_path / "analysis_renamed").exists()
    bs = json.loads((tmp_path / "analysis" / "bias_summary.json").read_text())
    bs["scenarios"]["gs1"]["training_nan"]["nan"] = bs["scenarios"]["gs1"]["training_nan"].pop(
        "any_nan")
    write_json(tmp_path / "analysis" / "bias_summary.json", bs)
    with pytest.raises(ReportInputError, match=r"scenarios\.gs1\.training_nan\.any_nan"):
        build_report(tmp_path / "analysis", force=True)


# ------------------------------------------------------------------------------ real browser
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _chromium() -> str:
    found = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("no chromium binary on PATH but CI is set: CI must install it "
                    "(apt-get install -y chromium)")
    pytest.skip("no chromium binary on PATH (apt-get install -y chromium); required when CI is set")


def _headless(binary: str, profile: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def test_chromium_missing_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        _chromium()


def test_report_renders_in_headless_chromium(built, tmp_path):
    from matplotlib.image import imread

    binary = _chromium()
    root, _ = built
    page = root / "report.html"
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = _headless(binary, profile, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    titles = {"overview": "Overview", "images": "Images", "training-curves": "Training curves",
              "scale-chain": "Scale chain", "metrics": "Metrics", "frc": "Fourier ring correlation",
              "data-consistency": "Data consistency", "label-vs-truth": "Labels vs ground truth",
              "training-labels": "Training labels"}
    assert set(titles) == set(RUN_SECTIONS)
    for sid, title in titles.items():
        assert re.search(rf'<section id="{sid}"[^>]*>\s*<h2>{title}</h2>', dom.stdout), sid
    assert dom.stdout.count("<img") >= 8

    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        res = _headless(binary, profile, f"--screenshot={shot}", "--window-size=1280,2400", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    non_white = np.mean(np.any(img < 0.9, axis=-1))
    assert non_white > 0.03, f"screenshot looks blank ({non_white:.3%} non-white pixels)"
    assert float(img.std()) > 0.05


# ------------------------------------------------------------------- a real (tiny) pipeline run
def test_report_of_a_real_tiny_run_validates_every_record(tmp_path):
    """The producers' own files (runner, recorder, trainer, evaluation) pass the report's typed
    records: no section says a file does not match its schema, none is missing."""
    from ptychotrace.config import resolve_scenario
    from ptychotrace.scenarios.runner import RunRequest, run_scenario

    tiny = {"simulation.N": 32, "simulation.object_size": 64, "simulation.base_total_images": 24,
            "simulation.buffer": 8.0, "grouping.group_count": 8, "training.nepochs": 1,
            "training.batch_size": 8, "inference.stitch_window": 12}
    cfg, profile, warnings = resolve_scenario("gs1_ideal", tiny)
    out = tmp_path / "run"
    run_scenario(RunRequest(config=cfg, output_dir=out, profile=profile, warnings=warnings,
                            progress=False))
    text = html.unescape(build_report(out).html.read_text())
    assert "not a valid" not in text
    assert "not available (file" not in text
    assert _section_ids(text) == list(RUN_SECTIONS)
    assert "scale bar" not in text        # a simulation: object pixels, no physical size
    # a run that failed before training: the partial record validates and says what is missing
    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="injected"):
        run_scenario(RunRequest(config=cfg, output_dir=failed, profile=profile, progress=False,
                                faults={"fail_stage": "train"}))
    text = html.unescape(build_report(failed).html.read_text())
    assert "not a valid" not in text and _section_ids(text) == [FAILURE_SECTION, *RUN_SECTIONS]
    assert "This run FAILED in stage 'train'" in text


def test_run_without_ground_truth_shows_reconstruction_probe_scan_and_consistency(tmp_path):
    """Own data without a truth (issue #13): no comparison file; the report shows what the run
    records instead (records built from their models), and the geometry card."""
    from ptychotrace.evaluate.consistency import (
        CONSISTENCY_DIR,
        CONSISTENCY_JSON,
        NORMALISATION,
        ConsistencyRecord,
        DevianceSummary,
        PhotonCheck,
    )
    from ptychotrace.records.comparison import (
        ComparisonHeadline,
        DetectorMask,
        NoTruthProbe,
        NoTruthReconstruction,
        NoTruthScan,
        NoTruthStats,
    )
    from ptychotrace.records.run_metadata import GeometryBlock

    stats = NoTruthStats(mean=1.0, std=0.1, min=0.5, max=1.5)
    head = ComparisonHeadline(
        available=False, reason="no ground truth: the data file holds no object",
        reconstruction=NoTruthReconstruction(shape=[64, 64], coverage_fraction=0.5,
                                             amplitude_covered=stats, phase_covered_rad=stats,
                                             field_of_view=["3.2 um", "3.2 um"],
                                             object_pixel="50 nm"),
        probe=NoTruthProbe(energy_photons=1e6, shape=[32, 32], width="1.6 um"),
        scan=NoTruthScan(positions=40, train=20, test=20, extent_px_xy=[30.0, 30.0],
                         median_step_px=5.0, extent=["1.5 um", "1.5 um"], median_step="250 nm"),
        detector_mask=DetectorMask(masked_fraction=0.02))
    meta = ex.run_metadata(prediction_scale=None, label_vs_truth_analysis=(
        LabelVsTruth(verdict=None, reason="no ground truth")),
        geometry=GeometryBlock(source_format="cxi", photon_energy_eV=8000.0,
                               detector_distance_m=2.0, object_pixel_width_m=50e-9,
                               object_pixel_height_m=50e-9))
    meta.comparison = head     # the no-truth block replaces the comparison headline
    root = tmp_path / "own"
    meta.write(root / RUN_METADATA_FILE)
    dev = DevianceSummary(n_patterns=20, n_valid_pixels=1000, normalised_median=1.234,
                          normalised_p90=2.0, normalised_aggregate=1.3, z_aggregate=3.0,
                          deviance_per_pixel_median=1.0, expected_per_pixel_median=1.0,
                          fraction_beyond_bound=0.05, relative_misfit_median=0.01,
                          photons_measured_mean=1e6, photons_predicted_mean=1e6,
                          non_finite_patterns=0)
    cons = ConsistencyRecord(normalisation=NORMALISATION, final=dev, network_only=None, truth=None,
                             photons=PhotonCheck(
                                 nominal=1e6, measured_train=1e6, measured_test=1e6,
                                 predicted_train=None, predicted_test=None,
                                 measured_over_nominal=1.0, measured_over_predicted=None,
                                 test_over_train_measured=1.0, test_over_train_predicted=None,
                                 parity_deviation_from_predicted_pct=None,
                                 probe_energy_photons=1e6, measured_over_probe_energy=1.0),
                             positions=None, model_output=None, valid_pixels=1000,
                             detector_pixels=1024)
    write_json(root / CONSISTENCY_DIR / CONSISTENCY_JSON, cons.model_dump(mode="json"))
    text = html.unescape(build_report(root).html.read_text())
    assert _section_ids(text) == list(RUN_SECTIONS) and "not a valid" not in text
    for phrase in ("No comparison: no ground truth: the data file holds no object.",
                   "FRC not available (no ground truth", "3.2 um x 3.2 um", "50 nm",
                   "40 (train 20, test 20)", "250 nm", "Verdict: n/a (no ground truth)",
                   "Geometry (from the data file)", "8000 eV", "2 m",
                   "Normalised Poisson deviance", fmt(1.234), "1000 of 1024"):
        assert phrase in text, phrase
    assert "Metrics not available (file comparison_metrics.json missing)" not in text
