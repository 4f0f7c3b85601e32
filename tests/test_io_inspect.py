"""``ptychotrace inspect`` on every format: geometry, dose, mask, beam centre, what is unknown;
bad input -> exit status 2 with the key named, nothing written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("h5py")

from ptychotrace.cli import main  # noqa: E402
from ptychotrace.data.dataset import save_dataset  # noqa: E402
from test_io_readers import E_EV, D, write_foreign_cxi, write_foreign_ptychodus  # noqa: E402


def test_inspect_cxi_shows_geometry_mask_and_centre(tmp_path, capsys):
    write_foreign_cxi(tmp_path / "a.cxi")
    assert main(["inspect", str(tmp_path / "a.cxi"), "--crop", "16", "--beam-centre", "20", "21"]) == 0
    out = capsys.readouterr().out
    assert "valid cxi dataset" in out
    assert f"photon energy   {E_EV:.6g} eV" in out
    assert "detector        distance 1.5 m, pixel 55 um x 55 um" in out
    assert "object pixel" in out and "field of view" in out
    assert "1 pixels masked" in out and "beam centre" in out
    assert f"from [{D}, {D}]: crop [12, 28, 13, 29]" in out
    assert "mode 0 used" in out


def test_inspect_ptychodus_json(tmp_path, capsys):
    write_foreign_ptychodus(tmp_path / "p")
    assert main(["inspect", str(tmp_path / "p" / "diffraction.h5"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["format"] == "ptychodus" and s["mask"]["masked_pixels"] == 1
    assert s["geometry"]["object_frame"]["width_px"] == 70 and s["unknown"] == []


def test_inspect_npz_names_what_is_unknown(tiny_dataset, tmp_path, capsys):
    ds, _ = tiny_dataset
    save_dataset(tmp_path / "d.npz", ds)
    assert main(["inspect", str(tmp_path / "d.npz")]) == 0
    out = capsys.readouterr().out
    assert "unknown: photon energy (the NPZ has no metadata.geometry.photon_energy_eV)" in out
    assert "None, None" not in out


@pytest.mark.parametrize("kwargs,flags,message", [
    ({"distance": False}, [], "detector distance (the file has no /entry_1/instrument_1/detector_1/distance"),
    ({"mask_shape": (D, D - 1)}, [], "detector_1/mask has shape"),
    ({"energy": -1.0}, [], "source_1/energy must be > 0"),
    ({}, ["--photon-energy-ev", "-5"], "--photon-energy-ev: "),   # the flag as given
])
def test_inspect_bad_input_exit_2(tmp_path, capsys, kwargs, flags, message):
    write_foreign_cxi(tmp_path / "bad.cxi", **kwargs)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["inspect", str(tmp_path / "bad.cxi"), "--crop", "16", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
