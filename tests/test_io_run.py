"""``run --data FILE``: own data needs no scenario and takes N from the data; a simulated scan
written as CXI reconstructs to the same numbers as the NPZ path; without a truth the comparison
block says so and the summary shows the reconstruction, probe, scan and data consistency."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("h5py")

from ptychotrace.cli import main  # noqa: E402
from ptychotrace.data.dataset import Dataset, load_dataset, save_dataset  # noqa: E402
from ptychotrace.io import assign_geometry, load_data, save_data  # noqa: E402

FLAGS = ["--nepochs", "1", "--batch-size", "8", "--group-count", "16", "--group-limit", "8",
         "--stitch-window", "12", "--quiet"]


def _meta(out):
    return json.loads((out / "run_metadata.json").read_text())


@pytest.fixture(scope="module")
def files(tiny_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    ds0, _ = tiny_dataset
    npz = save_dataset(d / "sim.npz", ds0)
    ds = load_dataset(npz)                  # the NPZ's own numbers, written again as CXI
    geom = assign_geometry(ds, 8000.0, 2.0, 75e-6)
    (cxi,) = save_data(d / "sim.cxi", ds, geom, "cxi")
    bare = Dataset(ds.xcoords, ds.ycoords, ds.counts, ds.probe, None, ds.scan_index, ds.split,
                   ds.metadata)
    (cxi_bare,) = save_data(d / "bare.cxi", bare, assign_geometry(bare, 8000.0, 2.0, 75e-6), "cxi")
    return d, npz, cxi, cxi_bare


@pytest.mark.slow
def test_cxi_run_gives_the_npz_numbers(files):
    d, npz, cxi, _ = files
    for name, path in (("npz", npz), ("cxi", cxi)):
        assert main(["run", "--data", str(path), "--output-dir", str(d / name), *FLAGS]) == 0
    a, b = _meta(d / "npz"), _meta(d / "cxi")
    assert a["config"]["simulation"]["N"] == 32 and a["scenario"] == "data"   # N from the data
    assert b["provenance"]["dataset_source"]["type"] == "cxi_file"
    assert a["provenance"]["dataset_source"]["type"] == "npz_file"
    assert b["geometry"]["object_pixel_width_m"] > 0 and a["geometry"]["object_pixel_width_m"] is None
    # positions pass through metres (<= 1e-12 px apart); counts, probe, truth, split identical.
    # Two runs in one process: measured bit-identical here; the margin allows float32 rounding of
    # the 1e-12 px position difference downstream, nothing more.
    checked = 0
    for ch in ("amplitude", "phase"):
        for k in ("pearson_r", "ssim", "mae", "rmse"):
            x, y = a["comparison"][ch][k], b["comparison"][ch][k]
            if x is None:
                assert y is None
                continue
            checked += 1
            assert y == pytest.approx(x, rel=1e-5, abs=1e-7), (ch, k, x, y)
    assert checked >= 6
    assert b["training"]["final_loss"] == pytest.approx(a["training"]["final_loss"], rel=1e-5)


@pytest.mark.slow
def test_run_without_truth_reports_what_it_can(files):
    d, _, _, cxi_bare = files
    out = d / "bare_run"
    assert main(["run", "--data", str(cxi_bare), "--output-dir", str(out), *FLAGS]) == 0
    m = _meta(out)
    from ptychotrace.records.run_metadata import RunMetadata

    RunMetadata.model_validate(m)          # the typed schema accepts a run without a truth
    assert m["comparison"]["available"] is False and "no ground truth" in m["comparison"]["reason"]
    assert m["label_vs_truth_analysis"]["reason"] == "no ground truth"
    text = (out / "data_comparison_summary.md").read_text()
    for section in ("## Reconstruction", "## Probe", "## Scan", "## Data consistency"):
        assert section in text
    assert " nm" in text or " um" in text             # physical lengths where known
    prod = out / "inference_outputs" / "product.h5"
    assert prod.is_file()
    import h5py

    with h5py.File(prod, "r") as f:
        assert f["object"].shape[1:] == tuple(m["inference"]["stitched_shape"])
        assert f.attrs["photon_energy_eV"] == 8000.0


def test_run_needs_scenario_or_data(tmp_path, capsys):
    assert main(["run", "--output-dir", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--scenario NAME (a simulation) or --data FILE" in capsys.readouterr().err


def test_run_data_with_wrong_n_refused(files, capsys):
    d, npz, _, _ = files
    assert main(["run", "--data", str(npz), "--N", "64", "--output-dir", str(d / "wrongN"),
                 "--quiet"]) == 2
    assert "patterns are 32 px" in capsys.readouterr().err
    assert not (d / "wrongN").exists()


def test_loaded_cxi_matches_npz_exactly(files):
    _, npz, cxi, _ = files
    a, b = load_dataset(npz), load_data(cxi)[0]
    np.testing.assert_array_equal(a.counts, b.counts)
    assert np.abs(a.xcoords - b.xcoords).max() < 1e-12
