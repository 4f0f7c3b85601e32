"""Model card (train/model_card.py): written by `ptychotrace train`, round-trips exactly, and
`ptychotrace infer` refuses a dataset the model cannot reconstruct, writing nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ptychotrace.cli import main
from ptychotrace.config import resolve_scenario
from ptychotrace.data.dataset import save_dataset
from ptychotrace.physics.probe import probe_fingerprint
from ptychotrace.simulate import simulate
from ptychotrace.train.checkpoint import load_checkpoint
from ptychotrace.train.model_card import (
    CARD_JSON,
    CARD_MD,
    DEFAULT_PROBE_TOLERANCE,
    ModelCard,
    ModelCompatibilityError,
    check_compatible,
    probe_distance,
    read_model_card,
)

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 64,
        "simulation.buffer": 8.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    cfg, _, _ = resolve_scenario("gs1_ideal", TINY, use_profile=False)
    ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
    data = save_dataset(root / "d.npz", ds)
    run = root / "run"
    rc = main(["train", "--data", str(data), "--output-dir", str(run), "--nepochs", "1",
               "--batch-size", "8", "--group-count", "24", "--no-progress", "--device", "cpu",
               "--corpus-families", "grf", "--corpus-count", "1", "--corpus-patterns", "8",
               "--corpus-object-size", "48"])
    assert rc == 0
    return ds, data, run, root


def test_train_writes_a_card_that_round_trips(trained):
    ds, data, run, _ = trained
    path = run / "train_outputs" / CARD_JSON
    text = path.read_text()
    card = ModelCard.model_validate_json(text)
    assert card.model_dump_json(indent=2) == text                   # JSON -> model -> JSON
    assert ModelCard.model_validate(json.loads(text)) == card
    assert read_model_card(run / "train_outputs") == card
    assert card.network.N == 32 and card.network.gridsize == 1
    assert card.training.epochs_requested == 1 and card.training.epochs_completed == 1
    assert card.probe.fingerprint == probe_fingerprint(ds.probe)
    assert card.dose.dose_scale == ds.dose_scale and card.dose.nphotons_target == 1e9
    kinds = [e.kind for e in card.training_data.entries]
    assert kinds == ["scenario_train", "corpus"] and card.training_data.corpus.count == 1
    assert card.training_data.n_patterns == len(ds.indices("train")) + 8
    assert card.validation.best_val_loss is not None
    assert card.training.group_method == "knn"                      # the grouping is on the card
    # a card written before group_method existed still reads (as knn)
    old = json.loads(text)
    del old["training"]["group_method"]
    assert ModelCard.model_validate(old).training.group_method == "knn"
    assert card.checkpoint.best == "train_outputs/checkpoints/best.pt"
    md = (run / "train_outputs" / CARD_MD).read_text()
    assert "## Training data" in md and "grf_1000" in md
    # the corpus cache lives under the run dir, the card next to the checkpoints
    assert (run / "corpus_cache" / "counts.npy").is_file()


def test_a_changed_card_does_not_validate(trained):
    _, _, run, _ = trained
    d = json.loads((run / "train_outputs" / CARD_JSON).read_text())
    d["network"]["N"] = "sixty-four"
    with pytest.raises(ValueError):
        ModelCard.model_validate(d)
    d = json.loads((run / "train_outputs" / CARD_JSON).read_text())
    d["unexpected"] = 1
    with pytest.raises(ValueError):
        ModelCard.model_validate(d)


def _variant(ds, **changes):
    return dataclasses.replace(ds, **changes)


@pytest.mark.parametrize("kind", ["N", "gridsize", "probe"])
def test_infer_refuses_an_incompatible_dataset_and_writes_nothing(trained, kind, capsys):
    ds, _, run, root = trained
    if kind == "N":
        bad = _variant(ds, counts=np.ascontiguousarray(ds.counts[:, 4:28, 4:28]),
                       probe=np.ascontiguousarray(ds.probe[4:28, 4:28]))
        expect = "N: the model takes 32x32 patterns, the data are 24x24"
    elif kind == "gridsize":
        meta = {**ds.metadata, "simulation": {**ds.metadata["simulation"], "gridsize": 2}}
        bad = _variant(ds, metadata=meta)
        expect = "gridsize: the model was trained at gridsize 1, the data were recorded at gridsize 2"
    else:
        bad = _variant(ds, probe=(ds.probe * np.float32(1.2)).astype(np.complex64))
        expect = "probe: relative L2 distance 0.2"
    path = save_dataset(root / f"bad_{kind}.npz", bad)
    out = root / f"inf_{kind}"
    assert main(["infer", "--model", str(run), "--data", str(path), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert expect in err and "cannot reconstruct" in err and "Nothing was written" in err
    assert not out.exists()


def test_infer_accepts_the_training_data_and_a_global_probe_phase(trained, tmp_path):
    ds, data, run, _ = trained
    ckpt = load_checkpoint(run)
    checked = check_compatible(ckpt, ds)
    assert checked["probe_distance"] < 1e-6
    rotated = _variant(ds, probe=(ds.probe * np.complex64(np.exp(0.7j))).astype(np.complex64))
    assert check_compatible(ckpt, rotated)["probe_distance"] < 1e-5
    slightly = _variant(ds, probe=(ds.probe * np.float32(1.02)).astype(np.complex64))
    assert check_compatible(ckpt, slightly)["probe_distance"] == pytest.approx(0.02, rel=1e-3)
    with pytest.raises(ModelCompatibilityError):
        check_compatible(ckpt, slightly, tolerance=0.01)
    out = tmp_path / "inf"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(out),
                 "--group-limit", "4", "--refine-steps", "0"]) == 0
    assert (out / "amplitude.npy").is_file()


def test_probe_distance_properties():
    rng = np.random.default_rng(0)
    p = (rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8))).astype(np.complex64)
    assert probe_distance(p, p) == pytest.approx(0.0, abs=1e-6)
    assert probe_distance(p * np.exp(1.3j), p) == pytest.approx(0.0, abs=1e-6)
    assert probe_distance(2 * p, p) == pytest.approx(1.0, rel=1e-6)
    assert probe_distance(np.zeros_like(p), p) == pytest.approx(1.0, rel=1e-6)
    assert 0 < DEFAULT_PROBE_TOLERANCE < 0.1


def test_infer_refuses_block_regrouping_for_a_knn_model_and_writes_nothing(trained, capsys):
    _, data, run, root = trained
    out = root / "inf_regroup"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(out),
                 "--block-stride", "5"]) == 2
    assert "group_method 'knn'" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def trained_blocks(tmp_path_factory):
    """A tiny gridsize-2 model trained on 6-px raster blocks of a 3-px raster (1 epoch, every block)."""
    root = tmp_path_factory.mktemp("blocks")
    cfg, _, _ = resolve_scenario("gs2_ideal", {**TINY, "simulation.scan": "grid",
                                               "simulation.grid_step": 3.0}, use_profile=False)
    ds, _ = simulate(cfg.simulation, scenario="gs2_ideal")
    data = save_dataset(root / "d.npz", ds)
    run = root / "run"
    assert main(["train", "--data", str(data), "--output-dir", str(run), "--nepochs", "1",
                 "--batch-size", "16", "--group-count", "1000", "--no-progress", "--device", "cpu",
                 "--gridsize", "2", "--group-method", "raster_blocks",
                 "--block-step-px", "6"]) == 0
    return data, run, root


def test_a_raster_block_model_records_its_step_and_infer_holds_test_blocks_to_it(
        trained_blocks, capsys):
    data, run, root = trained_blocks
    ckpt = load_checkpoint(run / "train_outputs" / "checkpoints" / "best.pt")
    geom = ckpt["scales"]["group_geometry"]
    assert geom["method"] == "raster_blocks" and geom["block_step_px"] == pytest.approx(6.0)
    # as trained: the test blocks have the trained step, and stats.json says how it grouped
    out = root / "inf"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(out),
                 "--refine-steps", "0"]) == 0
    rec = json.loads((out / "stats.json").read_text())["prediction"]["grouping"]
    assert rec["method"] == "raster_blocks" and rec["block_stride"] == 1
    assert rec["block_step_px"] == pytest.approx(6.0) == rec["trained_block_step_px"]
    # a re-laid grouping (origins every 2nd raster point) is recorded as such, same geometry
    sparse = root / "inf_sparse"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(sparse),
                 "--refine-steps", "0", "--block-stride", "2"]) == 0
    srec = json.loads((sparse / "stats.json").read_text())["prediction"]["grouping"]
    assert srec["block_stride"] == 2 and srec["block_step_px"] == pytest.approx(6.0)
    assert srec["n_groups"] < rec["n_groups"] / 3
    # another step is a geometry the network never saw: refused before anything is written
    capsys.readouterr()
    wrong = root / "inf_wrong"
    assert main(["infer", "--model", str(run), "--data", str(data), "--output-dir", str(wrong),
                 "--refine-steps", "0", "--block-step-px", "3"]) == 2
    err = capsys.readouterr().err
    assert "3 px apart" in err and "--block-step-px 6" in err
    assert not wrong.exists()
