"""``analyze --rescore``: a run made before the consistency record gets it back from its recorded
model, inference and data, identical (same machine) to what the runner wrote; bad cases refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ptychotrace.analysis.rescore import RescoreError, rescore_run
from ptychotrace.cli import main
from ptychotrace.evaluate.consistency_record import load_consistency


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_tiny):
    root = tmp_path_factory.mktemp("rescore")
    run_tiny(root / "run")
    return root / "run"


def _old_run(run_dir, tmp_path):
    """A copy of the run as a run made before the record existed (no consistency/)."""
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    shutil.rmtree(old / "consistency")
    return old


def test_rescore_restores_the_record_the_run_wrote(run_dir, tmp_path):
    original = load_consistency(run_dir)
    old = _old_run(run_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in old.glob("*.json")}
    rec = rescore_run(old, log=lambda *a: None)
    for part in ("final", "network_only", "truth"):
        a, b = getattr(original, part), getattr(rec, part)
        assert b.n_patterns == a.n_patterns
        np.testing.assert_allclose(b.normalised_median, a.normalised_median, rtol=1e-5)
    assert "rescored" in rec.notes[-1]
    assert {p.name: p.read_bytes() for p in old.glob("*.json")} == before   # nothing changed
    with pytest.raises(RescoreError, match="already has"):
        rescore_run(old, log=lambda *a: None)


def test_rescore_refuses_data_that_do_not_match_the_run(run_dir, tmp_path):
    old = _old_run(run_dir, tmp_path)
    md = json.loads((old / "run_metadata.json").read_text())
    md["measured_photons_per_pattern"]["train"] *= 1.01       # another dataset than the run's
    (old / "run_metadata.json").write_text(json.dumps(md))
    with pytest.raises(RescoreError, match="do not match the run"):
        rescore_run(old, log=lambda *a: None)
    assert not (old / "consistency").exists()                  # refused before writing


def test_analyze_rescore_cli_then_verdict(run_dir, tmp_path, capsys):
    old = _old_run(run_dir, tmp_path)
    assert main(["analyze", "--scenario", f"old={old}", "--output-dir", str(tmp_path / "a1"),
                 "--no-figure"]) == 0
    first = json.loads((tmp_path / "a1" / "bias_summary.json").read_text())
    assert any("no consistency record" in n for n in first["verdicts"]["old"]["notes"])
    assert main(["analyze", "--scenario", f"old={old}", "--output-dir", str(tmp_path / "a2"),
                 "--no-figure", "--rescore"]) == 0
    out = capsys.readouterr().out
    assert "old: rescored" in out and "old: HEALTHY" in out
    second = json.loads((tmp_path / "a2" / "bias_summary.json").read_text())
    assert not any("no consistency record" in n for n in second["verdicts"]["old"]["notes"])
    assert main(["analyze", "--scenario", f"old={old}", "--output-dir", str(tmp_path / "a3"),
                 "--no-figure", "--rescore-data", "old=x.npz"]) == 2   # needs --rescore
