"""A real client reads what we write: ptychodus's own readers on our diffraction and product files.

Needs the optional ``interop`` extra (ptychodus, no Qt, no torch); skipped only when it is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")
ptychodus_io = pytest.importorskip("ptychodus.api.io", reason="the 'interop' extra (ptychodus) is "
                                   "not installed")

from ptychotrace.data.dataset import Dataset  # noqa: E402
from ptychotrace.io import assign_geometry, save_data  # noqa: E402


def test_ptychodus_reads_our_files(tiny_dataset, tmp_path):
    ds0, _ = tiny_dataset
    valid = np.ones((ds0.patch_size,) * 2, bool)
    valid[4, 5] = False
    ds = Dataset(ds0.xcoords, ds0.ycoords, ds0.counts, ds0.probe, ds0.obj, ds0.scan_index,
                 ds0.split, ds0.metadata, valid)
    geom = assign_geometry(ds, 8000.0, 2.0, 75e-6, center_m=(3e-6, -1e-6))
    diff_path, prod_path = save_data(tmp_path / "pty", ds, geom, "ptychodus")

    diff = ptychodus_io.load_diffraction_data(Path(diff_path))
    np.testing.assert_array_equal(diff.get_patterns(), ds.counts)
    np.testing.assert_array_equal(diff.get_indexes(), ds.scan_index)
    np.testing.assert_array_equal(diff.get_bad_pixels(), ~valid)
    assert diff.get_pixel_geometry().width_m == pytest.approx(75e-6, rel=1e-12)

    prod = ptychodus_io.load_product(Path(prod_path))
    assert prod.metadata.photon_energy_eV == pytest.approx(8000.0, rel=1e-12)
    assert prod.metadata.detector_distance_m == pytest.approx(2.0, rel=1e-12)
    obj = prod.object_
    g = obj.get_geometry()   # ptychodus's own metres -> object pixels mapping
    x_px = g.map_probe_positions_to_object_x_px(prod.probe_positions)
    y_px = g.map_probe_positions_to_object_y_px(prod.probe_positions)
    np.testing.assert_allclose(x_px, ds.xcoords, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, ds.ycoords, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(prod.probes.get_array()[0, 0], ds.probe)
    np.testing.assert_array_equal(obj.get_array()[0], ds.obj)
