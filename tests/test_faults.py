"""The fault suite: the analyzer names the right stage for each fault class, and calls healthy
runs healthy; the data-consistency normalisation is ~1 for the true object at every dose.

Built with the project's own simulator and runner on tiny configurations. One real run (1 epoch,
gs1_ideal) per session gives a healthy run directory; every fault variant is derived from it
without training by ``analysis.faults.build_case``: the inputs the run would have seen are
faulted and the consistency record and comparison are recomputed, with as "the reconstruction"
what a consistent solver would return where one exists (e.g. 0.5x the healthy object for a probe
stored 2x too strong) and the healthy one otherwise; model faults replace the network's output or
the recorded flags.

Margins (measured on this fixture, 2026-12-01, see docs/telemetry.md): the truth's aggregate z is
|z| < 2 at every dose (limit 5) and > 40 for every input fault at 1e9 photons; the 1-epoch
network's contrast is 0.27 of the truth's (flat limit 0.01); the final object explains 0.86 of the
structured deviance against a flat object (limit 0); its least-squares scale is 0.997 (limit 5 %).
The 1-epoch numbers vary across CPUs; the margins are 5x or more.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ptychotrace.analysis import analyze_runs
from ptychotrace.analysis.faults import (
    EXPECTED_STAGE,
    INPUT_FAULTS,
    MODEL_FAULTS,
    build_case,
    healthy_pieces,
    write_variant,
)
from ptychotrace.config import resolve_scenario
from ptychotrace.evaluate.consistency import (
    Z_BOUND,
    expected_unit_deviance,
    object_deviance,
    object_patches,
    summarise,
    unit_deviance,
)
from ptychotrace.simulate import simulate

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
        "simulation.buffer": 8.0, "grouping.group_count": 64, "training.nepochs": 1,
        "training.batch_size": 8, "inference.stitch_window": 12,
        "evaluation.prediction_scale_source": "least_squares"}


# ------------------------------------------------------------------ the normalisation itself
@pytest.mark.parametrize("lam", [1e-4, 0.05, 0.7, 3.0, 40.0, 2e4])
def test_expected_unit_deviance_matches_poisson_draws(lam):
    # 400k draws: the Monte-Carlo mean has a relative error ~ sqrt(Var/E^2/4e5) < 2 % here
    rng = np.random.default_rng(7)
    d = unit_deviance(rng.poisson(lam, 400_000), lam)
    mean, var = expected_unit_deviance(np.array([lam]))
    se = np.sqrt(var[0] / d.size)
    assert abs(d.mean() - mean[0]) < 5 * se
    if lam >= 0.05:   # below, the variance rests on a few dozen non-zero draws
        assert abs(d.var() / var[0] - 1) < 0.1


def test_unit_deviance_is_zero_at_the_model_and_positive_elsewhere():
    lam = np.array([0.0, 0.3, 5.0, 1e6])
    assert np.all(unit_deviance(np.array([0.0, 0.3, 5.0, 1e6]), lam + [1e-12, 0, 0, 0])
                  < 1e-6)
    assert np.all(unit_deviance(np.array([1.0, 0.0, 7.0, 1.01e6]), lam) > 0)


@pytest.fixture(scope="module")
def dose_datasets():
    out = {}
    for dose in (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9):
        cfg, _, _ = resolve_scenario("gs1_ideal", {**TINY, "simulation.base_total_images": 128,
                                                   "simulation.nphotons": dose},
                                     use_profile=False)
        out[dose] = simulate(cfg.simulation)[0]
    return out


def test_true_object_scores_one_at_every_dose(dose_datasets):
    """The stated normalisation: D_j / E_j ~ 1 for the object that made the data, 1e3..1e9."""
    for dose, ds in dose_datasets.items():
        s = summarise(object_deviance(ds.obj, ds.probe, ds.xcoords, ds.ycoords, ds.counts))
        # z is N(0, 1) for the exact model: 5 sigma leaves no false alarm on any seed
        assert abs(s.z_aggregate) < Z_BOUND, (dose, s)
        assert abs(s.normalised_median - 1) < 0.05, (dose, s)
        assert s.fraction_beyond_bound <= 0.02, (dose, s)
    # per pixel the raw deviance is far below 1 at low dose: dividing by the pixel count would
    # not give 1 (this is why E_j is used)
    low = summarise(object_deviance(*(lambda d: (d.obj, d.probe, d.xcoords, d.ycoords,
                                                 d.counts))(dose_datasets[1e3])))
    assert low.deviance_per_pixel_median < 0.3


def test_deviance_detects_a_wrong_probe_and_ignores_masked_pixels(dose_datasets):
    ds = dose_datasets[1e5]
    wrong = summarise(object_deviance(ds.obj, ds.probe * 1.1, ds.xcoords, ds.ycoords, ds.counts))
    assert wrong.z_aggregate > 50
    valid = np.ones(ds.counts.shape[1:], bool)
    valid[:4] = False
    poked = ds.counts.copy()
    poked[:, :4] = 1e6                        # garbage in masked rows changes nothing
    a = object_deviance(ds.obj, ds.probe, ds.xcoords, ds.ycoords, ds.counts, valid)
    b = object_deviance(ds.obj, ds.probe, ds.xcoords, ds.ycoords, poked, valid)
    np.testing.assert_array_equal(a.deviance, b.deviance)
    assert a.n_pixels == valid.sum()


# ------------------------------------------------------------------ run directories
@pytest.fixture(scope="module")
def healthy(tmp_path_factory, run_tiny):
    """One real tiny run (1 epoch) and the pieces its fault variants are built from."""
    root = tmp_path_factory.mktemp("faults")
    _, ds = run_tiny(root / "healthy")
    return root, healthy_pieces(root / "healthy", ds)


def _verdict(run, tmp):
    s = analyze_runs({"r": run}, tmp, figure=False, force=True)
    return s["verdicts"]["r"], s


def test_healthy_real_run_is_healthy(healthy, tmp_path):
    v, s = _verdict(healthy[1].run, tmp_path)
    assert v["healthy"] is True and v["stage"] == "healthy", v
    assert s["verdict_lines"]["r"].startswith("r: HEALTHY")
    # the recorded train/test deviation is reported as the object's physics
    assert "as expected" in v["reason"]
    assert [t["outcome"] for t in v["trace"]] == ["pass"] * len(v["trace"])


@pytest.mark.parametrize("case", INPUT_FAULTS + MODEL_FAULTS)
def test_fault_case_names_its_stage(healthy, tmp_path, case):
    root, h = healthy
    run = build_case(h, case, root / f"case_{case}")
    v, _ = _verdict(run, tmp_path)
    assert v["stage"] == EXPECTED_STAGE[case], v
    assert v["healthy"] is False and v["next_check"]
    if case in INPUT_FAULTS:       # the truth does not explain the faulted inputs, by far
        rec = json.loads((run / "consistency" / "consistency.json").read_text())
        assert rec["truth"]["z_aggregate"] > 10 * Z_BOUND


@pytest.mark.parametrize("scenario", ["gs1_ideal", "gs2_ideal", "gs1_custom", "gs2_custom"])
def test_four_scenarios_healthy_when_the_reconstruction_is_right(healthy, tmp_path, scenario):
    """Each scenario's own data and physics, the truth as the reconstruction: healthy, and the
    train/test photon deviation (the lines object's physics) reported as expected."""
    root, h = healthy
    cfg, _, _ = resolve_scenario(scenario, {**TINY, "simulation.base_total_images": 32},
                                 use_profile=False)
    ds, record = simulate(cfg.simulation, scenario=scenario)
    test = np.flatnonzero(ds.split == 1)
    pred = dataclasses.replace(h.pred, pattern_index=test, xcoords=ds.xcoords[test],
                               ycoords=ds.ycoords[test],
                               patches=object_patches(ds.obj, ds.xcoords[test], ds.ycoords[test],
                                                      ds.patch_size))
    md = {k: record[k] for k in ("probe", "dataset_scale_info", "split_intensity_stats",
                                 "measured_photons_per_pattern")}
    run = write_variant(h, root / f"sc_{scenario}", ds, final=ds.obj, md_update=md, pred=pred,
                        region=np.ones(ds.obj.shape, bool))
    v, _ = _verdict(run, tmp_path)
    assert v["healthy"] is True, v
    assert "as expected" in v["reason"]
