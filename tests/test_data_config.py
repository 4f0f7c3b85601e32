"""The data-file options are part of the run configuration (issues #13, #15): ``RunConfig.data``
(config.DataConfig) is what ``load_data_from_args`` applies (config file section ``data`` <
data-file flags), ``train`` and ``run`` record it in their saved config, and a saved config
repeats the load. A config file's simulation.N that disagrees with the data is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("h5py")

from ptychotrace.cli import build_parser, main  # noqa: E402
from ptychotrace.commands.common import load_data_from_args  # noqa: E402
from ptychotrace.config import DataConfig, RunConfig, resolve_config  # noqa: E402
from ptychotrace.data.dataset import DatasetError  # noqa: E402
from ptychotrace.io import LoadOptions, load_data, load_options_of  # noqa: E402
from test_io_readers import D, write_foreign_cxi  # noqa: E402

CROP = ["--crop", "16", "--beam-centre", "20", "21"]    # the foreign CXI's 40 px detector
TRAIN = ["--nepochs", "1", "--batch-size", "4", "--group-count", "4", "--no-progress",
         "--device", "cpu"]


def _same(a, b) -> bool:
    """Two Datasets hold identical arrays (counts, positions, probe, mask, split, truth)."""
    fields = ("counts", "xcoords", "ycoords", "probe", "split", "scan_index", "valid", "obj")
    return all((getattr(a, f) is None and getattr(b, f) is None)
               or np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)


@pytest.fixture(scope="module")
def cxi(tmp_path_factory):
    path = tmp_path_factory.mktemp("data_config") / "scan.cxi"
    write_foreign_cxi(path)
    return path


def test_train_records_the_data_section_and_it_repeats_the_load(cxi, tmp_path):
    out = tmp_path / "t"
    assert main(["train", "--data", str(cxi), "--output-dir", str(out), *CROP, *TRAIN]) == 0
    saved = json.loads((out / "train_outputs" / "config.json").read_text())
    data = saved["data"]
    assert data["crop_N"] == 16 and data["beam_centre_px"] == [20.0, 21.0]
    assert data["path"] == str(cxi) and data["bin_factor"] == 1 and data["format"] == "auto"
    assert saved["simulation"]["N"] == 16
    # the saved section alone gives the Dataset train used; without it the detector is uncropped
    used, _ = load_data(cxi, LoadOptions(N=16, beam_centre=(20.0, 21.0)))
    again, _ = load_data(data["path"], load_options_of(DataConfig.model_validate(data)))
    assert _same(again, used) and again.patch_size == 16
    with pytest.raises(DatasetError, match=f"{D}x{D}"):   # uncropped: the 16 px probe misfits
        load_data(cxi)
    # and so does the saved config given back as --config, without any data-file flag
    args = build_parser().parse_args(["train", "--data", str(cxi), "--output-dir", "x",
                                      "--config", str(out / "train_outputs" / "config.json")])
    assert _same(load_data_from_args(args)[0], used)


def test_run_records_the_same_data_section_as_train(cxi, tmp_path):
    from ptychotrace.commands.run import request_from_args
    from ptychotrace.commands.train import config_from_args

    flags = ["--data", str(cxi), "--output-dir", "x", *CROP, "--saturation-count", "1e6",
             "--probe-scaling", "measured", "--cxi-translation-sign", "-1"]
    t = build_parser().parse_args(["train", *flags])
    r = build_parser().parse_args(["run", *flags])
    a = config_from_args(t, load_data_from_args(t)[0])
    b = request_from_args(r, tmp_path / "r").config
    assert a.data == b.data
    assert (a.data.saturation_count, a.data.probe_scaling, a.data.cxi_translation_sign) == \
        (1e6, "measured", -1)


def test_a_config_file_data_section_is_applied_and_flags_override_it(cxi, tmp_path):
    from ptychotrace.commands.train import config_from_args

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  crop_N: 16\n  beam_centre_px: [20, 21]\n  bin_factor: 1\n")
    base = ["train", "--data", str(cxi), "--output-dir", "x", "--config", str(cfg)]
    args = build_parser().parse_args(base)
    ds = load_data_from_args(args)[0]
    assert _same(ds, load_data(cxi, LoadOptions(N=16, beam_centre=(20.0, 21.0)))[0])
    assert config_from_args(args, ds).data.crop_N == 16
    args = build_parser().parse_args([*base, "--beam-centre", "19", "20"])
    moved = load_data_from_args(args)[0]
    assert _same(moved, load_data(cxi, LoadOptions(N=16, beam_centre=(19.0, 20.0)))[0])
    assert not _same(moved, ds)
    assert config_from_args(args, moved).data.beam_centre_px == (19.0, 20.0)
    cfg.write_text("data:\n  crop_N: 4\n")           # below the loader's minimum of 8
    with pytest.raises(ValueError, match=r"--config .*c\.yaml: data\.crop_N"):
        load_data_from_args(build_parser().parse_args(base))
    with pytest.raises(ValueError, match=r"--crop: "):  # a bad flag is named as the flag
        load_data_from_args(build_parser().parse_args(
            ["train", "--data", str(cxi), "--output-dir", "x", "--crop", "4"]))


def test_a_config_file_n_that_disagrees_with_the_data_is_refused(cxi, tmp_path, capsys):
    cfg = tmp_path / "n.yaml"
    cfg.write_text("simulation:\n  N: 32\n")
    for cmd, extra in (("train", TRAIN), ("run", ["--quiet", "--nepochs", "1"])):
        out = tmp_path / cmd
        assert main([cmd, "--data", str(cxi), "--output-dir", str(out), "--config", str(cfg),
                     *CROP, *extra]) == 2
        err = capsys.readouterr().err
        assert "simulation.N 32 but the data's patterns are 16 px" in err and str(cfg) in err
        assert not out.exists(), cmd
    cfg.write_text("simulation:\n  N: 16\n")           # agreeing with the data is fine
    args = build_parser().parse_args(["train", "--data", str(cxi), "--output-dir", "x",
                                      "--config", str(cfg), *CROP])
    assert load_data_from_args(args)[0].patch_size == 16


def test_a_data_section_without_data_is_refused(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("data:\n  crop_N: 16\n")
    out = tmp_path / "r"
    assert main(["run", "--scenario", "gs1_ideal", "--config", str(cfg), "--output-dir",
                 str(out), "--quiet"]) == 2
    assert "data.crop_N" in capsys.readouterr().err and not out.exists()
    # a section at its defaults (as in every saved config) is dropped, not recorded as a load
    from ptychotrace.commands.run import request_from_args

    cfg.write_text(json.dumps({"data": {**DataConfig().model_dump(), "path": "old.cxi"}}))
    cfg = cfg.rename(tmp_path / "d.json")
    args = build_parser().parse_args(["run", "--scenario", "gs1_ideal", "--config", str(cfg),
                                      "--output-dir", str(out)])
    assert request_from_args(args, out).config.data == DataConfig() and not out.exists()


def test_defaults_prepare_nothing_and_old_configs_load():
    # the section's defaults are the loader's (a default changed on one side fails here)
    assert load_options_of(DataConfig()) == LoadOptions()
    old = RunConfig().to_dict()
    del old["data"]                                    # a config saved before the section
    assert resolve_config(old)[0].data == DataConfig()
    assert RunConfig.model_validate(old).data == DataConfig()


def test_every_data_flag_is_a_data_field_and_every_field_has_a_flag():
    from ptychotrace.commands.inspect import LOAD_FLAGS

    parser = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest for a in parser._actions}
    assert set(LOAD_FLAGS) <= dests
    assert set(LOAD_FLAGS.values()) == set(DataConfig.model_fields) - {"path"}
    for name, info in DataConfig.model_fields.items():
        assert info.description, name                  # described, with units where they apply
