"""The dataset contract: round trip, units, and a table of bad inputs with specific errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ptychotrace.cli import main
from ptychotrace.data.dataset import DatasetError, load_dataset, save_dataset


def _valid_arrays(ds) -> dict:
    meta = {"measurement": {"domain": "counts", "dose_normalised": False}, "probe_units": "sqrt_photons"}
    return {"xcoords": ds.xcoords, "ycoords": ds.ycoords, "diff3d": ds.counts,
            "probeGuess": ds.probe, "objectGuess": ds.obj, "scan_index": ds.scan_index,
            "split": ds.split, "metadata": np.array(json.dumps(meta))}


def test_round_trip_preserves_counts_probe_and_metadata(tiny_dataset, tmp_path):
    ds, _ = tiny_dataset
    path = save_dataset(tmp_path / "d.npz", ds)
    back = load_dataset(path)
    # stored as sqrt(counts) in float32: squaring returns integer counts to float32 precision
    np.testing.assert_allclose(back.counts, ds.counts, rtol=2e-6, atol=1e-3)
    np.testing.assert_array_equal(back.probe, ds.probe)
    np.testing.assert_array_equal(back.split, ds.split)
    assert back.metadata["measurement"]["domain"] == "amplitude"
    assert back.dose_scale == pytest.approx(ds.metadata["dose"]["scale"])
    with pytest.raises(FileExistsError):
        save_dataset(path, ds)


def test_legacy_dose_normalised_file_is_converted_explicitly(tiny_dataset, tmp_path):
    ds, _ = tiny_dataset
    s = ds.metadata["dose"]["scale"]
    arrays = _valid_arrays(ds)
    arrays["diff3d"] = (np.sqrt(ds.counts) / s).astype(np.float32)      # X = sqrt(I)/s
    arrays["probeGuess"] = (ds.probe / s).astype(np.complex64)           # P0
    arrays["metadata"] = np.array(json.dumps({"measurement": {"domain": "amplitude",
                                                              "dose_normalised": True},
                                              "dose": {"scale": s}}))
    np.savez(tmp_path / "legacy.npz", **arrays)
    back = load_dataset(tmp_path / "legacy.npz")
    np.testing.assert_allclose(back.counts, ds.counts, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(back.probe, ds.probe, rtol=1e-5, atol=1e-3)
    assert back.metadata["converted_from"]["convention"] == "legacy_v1"


def test_unknown_units_refused_unless_stated(tiny_dataset, tmp_path):
    ds, _ = tiny_dataset
    arrays = _valid_arrays(ds)
    del arrays["metadata"]
    np.savez(tmp_path / "raw.npz", **arrays)
    with pytest.raises(DatasetError, match="measurement domain .* unknown"):
        load_dataset(tmp_path / "raw.npz")
    with pytest.raises(DatasetError, match="dose scale"):
        load_dataset(tmp_path / "raw.npz", measurement_domain="counts")
    ok = load_dataset(tmp_path / "raw.npz", measurement_domain="counts", dose_normalised=False)
    np.testing.assert_array_equal(ok.counts, ds.counts)


def _mutate(name):
    """Return a function that edits the valid arrays into one specific bad input."""
    def pickled(a):
        a["diff3d"] = np.array([{"x": 1}], dtype=object)
    table = {
        "missing_diff3d": (lambda a: a.pop("diff3d"), "missing required key 'diff3d'"),
        "diff3d_2d": (lambda a: a.__setitem__("diff3d", a["diff3d"][0]), "shape \\(P, N, N\\)"),
        "diff3d_int": (lambda a: a.__setitem__("diff3d", a["diff3d"].astype(np.int32)),
                       "floating point"),
        "diff3d_nan": (lambda a: a["diff3d"].__setitem__((0, 0, 0), np.nan), "NaN/Inf"),
        "negative_counts": (lambda a: a["diff3d"].__setitem__((1, 2, 3), -4.0), "negative"),
        "empty": (lambda a: a.update(diff3d=a["diff3d"][:0], xcoords=a["xcoords"][:0],
                                     ycoords=a["ycoords"][:0]), "empty"),
        "positions_mismatch": (lambda a: a.__setitem__("xcoords", a["xcoords"][:-1]),
                               "'xcoords' has .* positions but 'diff3d' has"),
        "probe_size": (lambda a: a.__setitem__("probeGuess", a["probeGuess"][:-2, :-2]),
                       "'probeGuess' must be"),
        "probe_zero": (lambda a: a.__setitem__("probeGuess", np.zeros_like(a["probeGuess"])),
                       "zero everywhere"),
        "outside_object": (lambda a: a["xcoords"].__setitem__(3, 1e4), "outside the"),
        "ycoords_inf": (lambda a: a["ycoords"].__setitem__(0, np.inf), "'ycoords' has 1 NaN/Inf"),
        "metadata_not_json": (lambda a: a.__setitem__("metadata", np.array("{not json")),
                              "not valid JSON"),
        "bad_domain": (lambda a: a.__setitem__("metadata", np.array(json.dumps(
            {"measurement": {"domain": "volts"}}))), "measurement domain must be"),
        "bad_split": (lambda a: a["split"].__setitem__(0, 7), "'split' must be"),
        "pickled": (pickled, "pickled"),
    }
    return table[name]


BAD_CASES = ["missing_diff3d", "diff3d_2d", "diff3d_int", "diff3d_nan", "negative_counts", "empty",
             "positions_mismatch", "probe_size", "probe_zero", "outside_object", "ycoords_inf",
             "metadata_not_json", "bad_domain", "bad_split", "pickled"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gets_a_specific_error(tiny_dataset, tmp_path, case, capsys):
    ds, _ = tiny_dataset
    arrays = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _valid_arrays(ds).items()}
    edit, message = _mutate(case)
    edit(arrays)
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)
    # the CLI turns it into exit status 2 with the same message
    assert main(["inspect", str(path)]) == 2
    assert "error" in capsys.readouterr().err


def test_non_npz_truncated_and_missing_files(tiny_dataset, tmp_path):
    ds, _ = tiny_dataset
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(DatasetError, match="not an NPZ archive"):
        load_dataset(text)
    good = save_dataset(tmp_path / "good.npz", ds)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated|corrupt|not an NPZ"):
        load_dataset(cut)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.npz")
    assert pickle  # refusing pickles is covered by the 'pickled' case above
