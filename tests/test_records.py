"""Typed records: producers' output validates, renamed fields fail, round trips keep notes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychotrace.records import (
    BaselineMetadata,
    ComparisonRecord,
    RecordError,
    RunMetadata,
)
from ptychotrace.records import examples as ex
from ptychotrace.stages.evaluate import evaluate


def test_comparison_round_trip_keeps_notes_and_validates(tmp_path):
    cmp = ex.comparison_record()
    path = cmp.write(tmp_path / "comparison_metrics.json")
    back = ComparisonRecord.read(path)
    assert back == cmp
    assert back.schema_version == cmp.schema_version
    # a constant truth phase: ssim is null and a note says why (kept as an extra key)
    pred, truth, covered = ex.synthetic_pair()
    flat = np.abs(truth).astype(np.complex64)
    rec = evaluate(pred, flat, covered)
    assert rec.phase.pearson_r is None and rec.phase.note_for("pearson_r")


@pytest.mark.parametrize("path,key", [(("amplitude",), "pearson_r"), (("phase",), "ssim"),
                                      ((), "prediction_scale"), (("full_canvas",), "amplitude")])
def test_renamed_field_fails_validation(path, key):
    d = ex.comparison_record().dump()
    node = d
    for p in path:
        node = node[p]
    node[key + "_renamed"] = node.pop(key)
    with pytest.raises(RecordError, match=key):
        ComparisonRecord.parse(d)


def test_run_metadata_and_baseline_records_round_trip(tmp_path):
    cmp = ex.comparison_record(seed=1)
    root = ex.write_run_dir(tmp_path / "run", comparison=cmp)
    meta = RunMetadata.read(root / "run_metadata.json")
    assert meta.finished_ok and meta.comparison.amplitude.ssim == cmp.amplitude.ssim
    assert meta.inference.seconds.total > 0
    b = ex.baseline_metadata(cmp)
    b.write(tmp_path / "b.json")
    assert BaselineMetadata.read(tmp_path / "b.json").comparison == cmp.headline()


def test_unreadable_or_missing_record_names_the_file(tmp_path):
    with pytest.raises(RecordError, match="no such file"):
        RunMetadata.read(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"status": "ok"}))
    with pytest.raises(RecordError, match="bad.json.*scenario"):
        RunMetadata.read(bad)


def test_frc_never_crossed_is_reported_as_such():
    from ptychotrace.format import format_resolution

    pred, truth, covered = ex.synthetic_pair(noise=0.0)
    rec = evaluate(truth, truth, covered)
    frc = rec.amplitude.frc
    assert frc.half_bit_resolution is None and frc.half_bit_crossed is False
    assert "threshold not crossed" in format_resolution(frc)
    noisy = ex.comparison_record(noise=2.0)
    assert noisy.amplitude.frc.half_bit_crossed in (True, False)
    assert format_resolution(None) == "n/a"


def test_wrap_tokens_breaks_only_between_name_value_pairs():
    from ptychotrace.format import wrap_tokens

    tokens = ["epoch 3:", "loss 0.06162", "val 0.07123", "lr 0.001", "samples/s 41.5"]
    for width in (5, 18, 30, 44, 200):
        text = wrap_tokens(tokens, width)
        lines = text.split("\n")
        # every token survives whole on exactly one line, in order
        assert [t for line in lines for t in line.strip().split("  ")] == tokens
        # no line is over the width unless it holds a single token longer than the width
        assert all(len(line) <= width or len(line.strip().split("  ")) == 1 for line in lines)
    assert wrap_tokens(tokens, 200) == "  ".join(tokens)


def test_producers_write_what_the_report_records_declare(tmp_path):
    """intensity_stats.json (build_intensity_stats), history*.json (train.history.History) and
    the label blocks validate against their records; a renamed stage statistic fails."""
    from ptychotrace.records import HistorySummary, IntensityStats, TrainingHistory
    from ptychotrace.telemetry import array_stats, build_intensity_stats, label_vs_truth
    from ptychotrace.telemetry.scale_chain import record_training_label_stats
    from ptychotrace.train.history import History

    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8))
    labels = record_training_label_stats({"X": x, "Y_amp": x, "Y": x * np.exp(0.1j)})
    ist = build_intensity_stats(
        [{"name": "raw_diffraction", "source": "s", "stats": array_stats(x), "metadata": {}},
         {"name": "container_X", "source": "s", "stats": array_stats(x), "metadata": {}}],
        normalize_gain=0.5, training_labels=labels,
        label_vs_truth_analysis=label_vs_truth(labels, 0.5))
    rec = IntensityStats.parse(ist)
    assert set(rec.training_labels.labels) == {"X", "Y_amp", "Y"}
    assert rec.training_labels.labels["Y"].complex and rec.training_labels.labels["Y"].phase
    assert rec.label_vs_truth_analysis.verdict.startswith(("consistent", "inconsistent"))
    ist["training_labels"]["X"]["average"] = ist["training_labels"]["X"].pop("mean")
    with pytest.raises(RecordError, match="label X"):
        IntensityStats.parse(ist)
    hist = History()
    hist.append(1, 4, {"loss": 1.0, "val_loss": float("nan")})
    assert TrainingHistory.parse(hist.to_dict()).metrics["val_loss"] == [None]
    assert HistorySummary.parse(hist.summary()).metrics["val_loss"].has_nan


def test_headline_of_a_run_with_truth_has_no_no_truth_keys():
    from ptychotrace.records.comparison import NO_TRUTH_KEYS, ComparisonHeadline

    head = ex.comparison_record().headline()
    assert not set(NO_TRUTH_KEYS) & set(head.dump())          # the file is as before
    assert ComparisonHeadline.model_validate(head.dump()) == head
    bare = ComparisonHeadline(available=False, reason="no ground truth", product_file="p.h5")
    assert bare.dump()["product_file"] == "p.h5" and "scan" not in bare.dump()
