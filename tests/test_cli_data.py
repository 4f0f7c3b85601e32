"""``train``, ``infer`` and ``baseline`` read every format ``run --data`` and ``inspect`` read
(issue #13), through the one loading path (commands.common.load_data_from_args ->
ptychotrace.io.load_data) with the same data-file flags and errors (exit status 2, nothing
written), and a given --N that disagrees with the data is refused wherever --data is accepted."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("h5py")

from ptychotrace.cli import main  # noqa: E402
from ptychotrace.data.dataset import Dataset, load_dataset, save_dataset  # noqa: E402
from ptychotrace.evaluate.consistency_record import load_consistency  # noqa: E402
from ptychotrace.io import assign_geometry, save_data  # noqa: E402
from test_io_readers import D, write_foreign_cxi, write_foreign_ptychodus  # noqa: E402

TRAIN = ["--nepochs", "1", "--batch-size", "8", "--group-count", "16", "--no-progress",
         "--device", "cpu"]
CROP = ["--crop", "16", "--beam-centre", "20", "21"]     # the foreign CXI's 40 px detector


@pytest.fixture(scope="module")
def files(tiny_dataset, tmp_path_factory):
    """The tiny simulation as NPZ, and without its truth as CXI (positions in metres)."""
    d = tmp_path_factory.mktemp("cli_data")
    ds0, _ = tiny_dataset
    npz = save_dataset(d / "sim.npz", ds0)
    ds = load_dataset(npz)
    bare = Dataset(ds.xcoords, ds.ycoords, ds.counts, ds.probe, None, ds.scan_index, ds.split,
                   ds.metadata)
    (cxi,) = save_data(d / "bare.cxi", bare, assign_geometry(bare, 8000.0, 2.0, 75e-6), "cxi")
    return d, npz, cxi


@pytest.fixture(scope="module")
def model(files):
    d, _, cxi = files
    run = d / "model"
    assert main(["train", "--data", str(cxi), "--output-dir", str(run), *TRAIN]) == 0
    return run


def test_train_on_a_cxi_file(files, model):
    saved = json.loads((model / "train_outputs" / "config.json").read_text())
    assert saved["simulation"]["N"] == 32 and saved["training"]["nepochs"] == 1   # N from the data
    assert (model / "train_outputs" / "checkpoints" / "best.pt").is_file()
    card = json.loads((model / "train_outputs" / "model_card.json").read_text())
    assert card["training_data"]["source_file"] == str(files[2])


def test_infer_on_a_cxi_file_without_truth(files, model):
    d, _, cxi = files
    out = d / "infer_bare"
    assert main(["infer", "--model", str(model), "--data", str(cxi), "--output-dir", str(out),
                 "--group-limit", "8", "--refine-steps", "2"]) == 0
    amp = np.load(out / "amplitude.npy")
    assert amp.dtype == np.float32 and amp.ndim == 2 and (amp > 0).any()
    assert (out / "amplitude.png").is_file() and not (out / "comparison_metrics.json").exists()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["comparison"]["available"] is False
    assert "no ground truth" in stats["comparison"]["reason"]
    rec = load_consistency(out)                        # the typed record, as a run writes it
    assert rec is not None and rec.truth is None and rec.final is not None
    assert rec.final.normalised_median > 0
    assert stats["data_consistency"]["final"]["normalised_median"] == rec.final.normalised_median


def test_baseline_on_a_cxi_file_without_truth(files, capsys):
    d, _, cxi = files
    out = d / "baseline_bare"
    assert main(["baseline", "--data", str(cxi), "--output-dir", str(out), "--iterations", "2",
                 "--group-limit", "8", "--no-progress"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["comparison"] is None and (out / "amplitude.npy").is_file()
    assert "no ground truth" in capsys.readouterr().out


def test_train_reads_ptychodus_and_ptychopinn_files_with_the_data_flags(tmp_path, tiny_dataset):
    write_foreign_ptychodus(tmp_path / "p")            # 12 patterns of 16 px, product.h5 beside
    assert main(["train", "--data", str(tmp_path / "p" / "diffraction.h5"), "--output-dir",
                 str(tmp_path / "r1"), "--nepochs", "1", "--batch-size", "4", "--no-progress",
                 "--device", "cpu"]) == 0
    cfg = json.loads((tmp_path / "r1" / "train_outputs" / "config.json").read_text())
    assert cfg["simulation"]["N"] == 16
    ds0, _ = tiny_dataset                               # PtychoPINN layout: amplitudes, (H, W, M)
    np.savez(tmp_path / "pinn.npz", diffraction=np.moveaxis(np.sqrt(ds0.counts), 0, 2),
             xcoords=ds0.xcoords, ycoords=ds0.ycoords, probeGuess=ds0.probe)
    args = ["train", "--data", str(tmp_path / "pinn.npz"), "--output-dir", str(tmp_path / "r2"),
            *TRAIN]
    assert main(args) == 2 and not (tmp_path / "r2").exists()   # the domain must be stated
    assert main([*args, "--measurement-domain", "amplitude", "--no-dose-normalised"]) == 0


BAD = [  # (writer kwargs, the message naming the key)
    ({"distance": False}, "detector distance .*detector_1/distance"),
    ({"mask_shape": (D, D - 1)}, "detector_1/mask has shape"),
    ({"positions": np.r_[np.nan, np.zeros(11)]}, "translation has 1 NaN/Inf positions"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input_refused_by_every_command_before_writing(tmp_path, model, capsys, kwargs,
                                                           message):
    import re

    bad = tmp_path / "bad.cxi"
    write_foreign_cxi(bad, **kwargs)
    for cmd in (["train", *TRAIN], ["infer", "--model", str(model)],
                ["baseline", "--no-progress"], ["run", "--quiet", "--nepochs", "1"]):
        out = tmp_path / cmd[0]
        assert main([cmd[0], "--data", str(bad), "--output-dir", str(out), *CROP, *cmd[1:]]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err), (cmd[0], err)
        assert not out.exists(), cmd[0]
    for cmd in (["train", *TRAIN], ["infer", "--model", str(model)], ["baseline"]):
        assert main([cmd[0], "--data", str(tmp_path / "missing.cxi"), "--output-dir",
                     str(tmp_path / "m"), *cmd[1:]]) == 2
        assert "no such file" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_a_given_n_that_disagrees_with_the_data_is_refused(files, tmp_path, capsys):
    _, npz, cxi = files
    for cmd in ("train", "run"):
        for data, extra in ((npz, []), (cxi, ["--crop", "16"])):
            out = tmp_path / f"{cmd}_{data.suffix[1:]}"
            args = [cmd, "--data", str(data), "--output-dir", str(out), "--N", "64", *extra]
            assert main(args) == 2, (cmd, data)
            n = 16 if extra else 32
            assert f"--N 64 but the data's patterns are {n} px" in capsys.readouterr().err
            assert not out.exists()
    # the sweep simulates every dose: --data is refused there outright
    assert main(["sweep", "--scenario", "gs1_ideal", "--nphotons", "1e3", "--data", str(npz),
                 "--N", "64", "--output-dir", str(tmp_path / "sw")]) == 2
    assert "--data cannot be swept" in capsys.readouterr().err


def test_run_without_truth_records_consistency_and_analyze_gives_a_verdict(files, capsys):
    """Own data without a truth: ``run --data file.cxi`` writes the data-consistency record, and
    ``analyze`` on that run gives a verdict without claiming any truth-based check."""
    from ptychotrace.records.run_metadata import RunMetadata

    d, _, cxi = files
    run = d / "run_bare"
    assert main(["run", "--data", str(cxi), "--output-dir", str(run), "--nepochs", "1",
                 "--batch-size", "8", "--group-count", "16", "--group-limit", "8",
                 "--stitch-window", "12", "--quiet"]) == 0
    assert "inference_outputs/amplitude.png" in capsys.readouterr().out   # no comparison.png
    meta = json.loads((run / "run_metadata.json").read_text())
    RunMetadata.model_validate(meta)
    rec = load_consistency(run)
    assert rec is not None and rec.truth is None and rec.final is not None
    assert meta["data_consistency"]["final"]["normalised_median"] == rec.final.normalised_median
    assert not (run / "comparison_metrics.json").exists()
    text = (run / "data_comparison_summary.md").read_text()
    assert "median normalised deviance D/E" in text and "not recorded" not in text

    out = d / "analysis_bare"
    assert main(["analyze", "--scenario", f"bare={run}", "--output-dir", str(out),
                 "--no-figure"]) == 0
    summary = json.loads((out / "bias_summary.json").read_text())
    v = summary["verdicts"]["bare"]
    outcomes = {t["rule"]: t["outcome"] for t in v["trace"]}
    assert outcomes["labels"] == outcomes["evaluation_frame"] == "not_assessed"
    assert "every check passed" not in v["reason"]    # only what needs no truth was checked
    if v["healthy"]:
        assert "not assessed: no ground truth" in v["reason"]
        # and it says how far the reconstruction is from explaining the data
        assert f"normalised deviance {rec.final.normalised_median:.4g}" in v["reason"]
    else:   # a 1-epoch model may well fail a check, but never one that needs the truth
        assert v["stage"] not in ("labels", "evaluation_frame", "probe", "probe_scale",
                                  "scan_positions")
    assert "comparison_metrics.json" in summary["scenarios"]["bare"]["absent"]


def test_rules_without_truth_never_assess_truth_checks():
    """Evidence that would fault the truth-based rules (a label gap, a registration shift) is
    not assessed when the run has no truth; with a truth the same evidence faults."""
    from ptychotrace.analysis.rules import Evidence, decide

    kw = {"status": "ok", "label_gap_pct": 50.0, "shift_px": [6.0, 0.0]}
    assert decide(Evidence(**kw)).stage == "labels"
    assert decide(Evidence(**{**kw, "label_gap_pct": None})).stage == "evaluation_frame"
    v = decide(Evidence(**kw, has_truth=False))
    assert v.healthy and "labels vs truth, evaluation frame not assessed" in v.reason
    assert {t.rule: t.outcome for t in v.trace}["labels"] == "not_assessed"


# ------------------------------------------------------------------ one config (issue #15)
def _subparser(name):
    from ptychotrace.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


def test_train_and_run_accept_the_same_training_and_corpus_flags():
    from ptychotrace.commands.train import CORPUS_FLAGS

    def config_flags(p):
        return {s: a.dest for a in p._actions for s in a.option_strings
                if a.dest.startswith("cfg__") or a.dest in CORPUS_FLAGS}

    train, run = config_flags(_subparser("train")), config_flags(_subparser("run"))
    assert {k: run.get(k) for k in train} == train        # same names, same config fields
    sections = {d.split("__")[1] for d in train.values() if d.startswith("cfg__")}
    assert sections == {"simulation", "grouping", "training", "corpus"}
    for flag in ("--nepochs", "--time-limit", "--time-limit-s", "--arch", "--collapse-guard",
                 "--loss-weights-mae", "--corpus-families", "--corpus-textures", "--gridsize",
                 "--N", "--probe-big"):
        assert flag in train, flag
    # every training/grouping/corpus field has its flag in train (none kept by hand)
    from ptychotrace.config import RunConfig

    paths = {d.removeprefix("cfg__").replace("__", ".") for d in train.values()
             if d.startswith("cfg__")}
    for section in ("grouping", "training"):
        model = RunConfig.model_fields[section].annotation
        for f, info in model.model_fields.items():
            sub = getattr(info.annotation, "model_fields", None)
            names = [f"{section}.{f}.{g}" for g in sub] if sub else [f"{section}.{f}"]
            assert all(n in paths for n in names), names


def test_same_flags_give_the_same_saved_config_via_train_and_run(files, model, tmp_path):
    """train's saved config (train_outputs/config.json) is what run resolves (and saves in
    run_metadata.json 'config') for the same flags and data; precedence: the data file's record
    < config file < flags, in both."""
    from ptychotrace.cli import build_parser
    from ptychotrace.commands.common import load_data_from_args
    from ptychotrace.commands.run import request_from_args
    from ptychotrace.commands.train import config_from_args

    d, npz, cxi = files
    saved = json.loads((model / "train_outputs" / "config.json").read_text())
    flags = ["--nepochs", "1", "--batch-size", "8", "--group-count", "16", "--device", "cpu"]
    run_args = build_parser().parse_args(["run", "--data", str(cxi), "--output-dir",
                                          str(tmp_path / "r"), *flags])
    assert request_from_args(run_args, tmp_path / "r").config.to_dict() == saved

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("training:\n  lr: 0.5\n  lr_floor: 2.0e-5\ngrouping:\n  group_seed: 3\n")
    flags = ["--config", str(cfg_file), "--lr", "2e-3", "--nepochs", "3", "--time-limit", "50",
             "--seed", "7", "--no-collapse-guard", "--loss-weights-mae", "0.1", "--arch", "unet",
             "--corpus-families", "grf", "--corpus-count", "1", "--corpus-textures", "camera",
             "--gridsize", "1", "--N", "32"]
    t = build_parser().parse_args(["train", "--data", str(npz), "--output-dir", "x", *flags])
    r = build_parser().parse_args(["run", "--data", str(npz), "--output-dir", "x", *flags])
    a = config_from_args(t, load_data_from_args(t)[0])
    b = request_from_args(r, tmp_path / "x").config
    assert a == b
    tr = a.training
    assert (tr.lr, tr.lr_floor, tr.nepochs, tr.time_limit_s, tr.seed) == (2e-3, 2e-5, 3, 50, 7)
    assert not tr.collapse_guard and tr.loss_weights.mae == 0.1 and tr.arch == "unet"
    assert a.grouping.group_seed == 3 and a.corpus.textures == ("camera",)
    assert a.scenario == "data" and a.simulation.object_size == 96   # the file's own record


def test_dataset_base_takes_the_recorded_simulation_and_n_from_the_data():
    from ptychotrace.config import dataset_base, resolve_config

    meta = {"simulation": {"gridsize": 2, "N": 64, "nphotons": 1e4, "unknown_key": 1}}
    cfg, _, _ = resolve_config(dataset_base(meta, 32), overrides={"training.lr": 1e-2})
    assert (cfg.simulation.gridsize, cfg.simulation.N, cfg.simulation.nphotons) == (2, 32, 1e4)
    assert cfg.training.lr == 1e-2 and cfg.training.batch_size == 16   # no stable profile
    assert resolve_config(dataset_base(None, 48))[0].simulation.N == 48
