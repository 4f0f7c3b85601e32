"""Round trips ptychotrace -> CXI / ptychodus / NPZ -> ptychotrace, exact, with mask and geometry."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("h5py")

from ptychotrace.data.dataset import Dataset  # noqa: E402
from ptychotrace.io import LoadOptions, assign_geometry, detect_format, load_data, save_data  # noqa: E402
from ptychotrace.io.geometry import HC_EV_M  # noqa: E402

ENERGY_EV, DIST_M, PIX_M = 8000.0, 2.0, 75e-6


@pytest.fixture
def masked(tiny_dataset):
    """The tiny simulation with a detector mask (a bad column and one hot pixel)."""
    ds, _ = tiny_dataset
    valid = np.ones((ds.patch_size,) * 2, bool)
    valid[:, 3] = False
    valid[10, 20] = False
    return Dataset(ds.xcoords, ds.ycoords, ds.counts, ds.probe, ds.obj, ds.scan_index, ds.split,
                   ds.metadata, valid)


def _assert_same(a: Dataset, b: Dataset, pos_atol: float = 1e-9, counts_exact: bool = True):
    # positions go through metres and back once: float64 rounding only (~1e-13 px)
    np.testing.assert_allclose(b.xcoords, a.xcoords, rtol=0, atol=pos_atol)
    np.testing.assert_allclose(b.ycoords, a.ycoords, rtol=0, atol=pos_atol)
    if counts_exact:
        np.testing.assert_array_equal(b.counts, a.counts)
    else:  # NPZ stores sqrt(counts) in float32 (the PtychoPINN convention): 1 ulp on squaring back
        np.testing.assert_allclose(b.counts, a.counts, rtol=3e-7, atol=0)
    np.testing.assert_array_equal(b.probe, a.probe)
    np.testing.assert_array_equal(b.obj, a.obj)
    np.testing.assert_array_equal(b.split, a.split)
    np.testing.assert_array_equal(b.scan_index, a.scan_index)
    np.testing.assert_array_equal(b.valid, a.valid)


def test_object_pixel_size_is_wavelength_distance_over_n_pixel(masked):
    g = assign_geometry(masked, ENERGY_EV, DIST_M, PIX_M)
    wl = HC_EV_M / ENERGY_EV
    assert g.wavelength_m == pytest.approx(1.5498e-10, rel=1e-4)   # 8 keV is 1.5498 Angstrom
    assert g.object_pixel_width_m == pytest.approx(wl * DIST_M / (32 * PIX_M), rel=1e-12)


@pytest.mark.parametrize("fmt", ["cxi", "ptychodus"])
def test_round_trip_is_exact(masked, tmp_path, fmt):
    geom = assign_geometry(masked, ENERGY_EV, DIST_M, PIX_M, center_m=(1e-6, -2e-6))
    target = tmp_path / ("d.cxi" if fmt == "cxi" else "ptychodus")
    written = save_data(target, masked, geom, fmt)
    assert detect_format(written[0]) == fmt
    back, g2 = load_data(written[0])
    _assert_same(masked, back)
    assert g2.photon_energy_eV == pytest.approx(ENERGY_EV, rel=1e-12)
    assert g2.detector_distance_m == DIST_M
    assert g2.object_pixel_width_m == pytest.approx(geom.object_pixel_width_m, rel=1e-12)
    assert g2.probe_scaling["stage"] == "probe_taken_as_physical"
    assert back.metadata["geometry"]["object_frame"]["width_px"] == masked.obj.shape[1]
    with pytest.raises(FileExistsError):
        save_data(target, masked, geom, fmt)


def test_cxi_to_npz_to_cxi_keeps_geometry(masked, tmp_path):
    geom = assign_geometry(masked, ENERGY_EV, DIST_M, PIX_M)
    (cxi,) = save_data(tmp_path / "a.cxi", masked, geom, "cxi")
    ds1, g1 = load_data(cxi)
    (npz,) = save_data(tmp_path / "a.npz", ds1, g1, "npz")
    ds2, g2 = load_data(npz)
    _assert_same(ds1, ds2, pos_atol=0, counts_exact=False)
    assert g2.object_frame == g1.object_frame
    (cxi2,) = save_data(tmp_path / "b.cxi", ds2, g2, "cxi")
    ds3, _ = load_data(cxi2)
    _assert_same(ds2, ds3)


def test_npz_without_geometry_says_what_is_unknown(masked, tmp_path):
    (npz,) = save_data(tmp_path / "a.npz", masked, None, "npz")
    ds, g = load_data(npz)
    np.testing.assert_array_equal(ds.valid, masked.valid)
    assert g.object_pixel_width_m is None
    assert any("photon energy" in m and "metadata.geometry" in m for m in g.missing)
    with pytest.raises(ValueError, match="physical geometry"):
        save_data(tmp_path / "a.cxi", ds, g, "cxi")


def test_cxi_translation_sign_flip(masked, tmp_path):
    """translation = -probe position (stage convention) read with sign -1 gives the same scan;
    read with the default +1 it mirrors the scan about the frame centre."""
    from ptychotrace.io.cxi import write_cxi

    geom = assign_geometry(masked, ENERGY_EV, DIST_M, PIX_M)
    path = write_cxi(tmp_path / "stage.cxi", masked, geom, translation_sign=-1)
    back, g = load_data(path, LoadOptions(cxi_translation_sign=-1))
    np.testing.assert_allclose(back.xcoords, masked.xcoords, atol=1e-9)
    assert g.position_convention.startswith("x_probe = -translation")
    w = masked.obj.shape[1]
    mirrored, _ = load_data(path)
    np.testing.assert_allclose(mirrored.xcoords, (w - 1) - masked.xcoords, atol=1e-9)
