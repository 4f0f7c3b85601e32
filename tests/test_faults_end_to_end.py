"""The fault suite end to end: every case is a real run (train -> infer -> refine -> compare) on
faulted inputs, not a variant derived from a healthy run (tests/test_faults.py), and ``analyze``
names the stage. This is what a user meets: a file with a wrong probe or swapped positions goes
through ``run`` and then ``analyze``.

Input faults are injected into the dataset the run reads (analysis.faults.inject: the metadata,
e.g. the nominal dose, stays as recorded, as in a real file); the model faults a real run can
produce are made by the runner's test faults (labels 2x, a stage that raises) and by a learning
rate that drives training to NaN. Tiny gs1_ideal configuration, 1 epoch, seeded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ptychotrace.analysis import analyze_runs
from ptychotrace.analysis.faults import EXPECTED_STAGE, INPUT_FAULTS, inject

#: model-side faults a real run can produce: (config overrides, runner test faults)
MODEL_CASES = {"wrong_labels": ({}, {"label_scale": 2.0}),
               "failed_run": ({}, {"fail_stage": "infer"}),
               "nan_in_training": ({"training.lr": 1e6}, {})}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory, run_tiny):
    root = tmp_path_factory.mktemp("e2e")
    _, ds = run_tiny(root / "healthy")
    runs: dict[str, Path] = {"healthy": root / "healthy"}
    for case in INPUT_FAULTS:
        run_tiny(root / case, dataset=inject(ds, case))
        runs[case] = root / case
    for case, (over, faults) in MODEL_CASES.items():
        try:
            run_tiny(root / case, over, faults=faults)
        except RuntimeError:          # the injected stage failure propagates, as in the CLI
            pass
        runs[case] = root / case
    return analyze_runs(runs, root / "analysis", figure=False, force=True)


def test_healthy_end_to_end_run_is_healthy(verdicts):
    v = verdicts["verdicts"]["healthy"]
    assert v["healthy"] is True, v
    assert verdicts["verdict_lines"]["healthy"].startswith("healthy: HEALTHY")


@pytest.mark.parametrize("case", INPUT_FAULTS + tuple(MODEL_CASES))
def test_end_to_end_fault_names_its_stage(verdicts, case):
    v = verdicts["verdicts"][case]
    assert v["stage"] == EXPECTED_STAGE[case], verdicts["verdict_lines"][case]
    assert v["healthy"] is False and v["next_check"]


def test_failed_run_verdict_carries_the_recorded_error(verdicts):
    """A run that stopped before its comparison is analysed (not refused for the missing
    comparison_metrics.json) and its verdict quotes the error."""
    line = verdicts["verdict_lines"]["failed_run"]
    assert "RuntimeError" in line and "'infer'" in line
