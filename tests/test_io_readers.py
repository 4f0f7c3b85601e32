"""Each reader on small files written here with h5py/numpy in the formats' own layouts, the
detector preparation rules, and every bad input refused with a message naming the key."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from ptychotrace.data.dataset import DatasetError  # noqa: E402
from ptychotrace.io import LoadOptions, load_data  # noqa: E402
from ptychotrace.io.detector import prepare_detector  # noqa: E402
from ptychotrace.io.geometry import HC_EV_M, J_PER_EV  # noqa: E402

P, D, N = 12, 40, 16          # patterns, raw detector side, prepared side
E_EV, Z_M, PIX = 6200.0, 1.5, 55e-6


def _scan(seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, (P, D, D)).astype(np.uint32)
    counts[:, 18:23, 19:24] += 500          # a bright direct beam around row 20, col 21
    x = np.linspace(-1e-6, 1e-6, P)
    y = np.tile([-5e-7, 0.0, 5e-7], P // 3)
    probe = (rng.normal(size=(2, N, N)) + 1j * rng.normal(size=(2, N, N))).astype(np.complex64)
    return counts, x, y, probe


def write_foreign_cxi(path, *, energy=True, mask_shape=(D, D), distance=True, units=None,
                      positions=None, probe_shape=None):
    counts, x, y, probe = _scan()
    if positions is not None:
        x = positions
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 140
        det = f.create_group("entry_1/instrument_1/detector_1")
        det["data"] = counts
        if distance:
            det["distance"] = Z_M if units is None else Z_M * 1e3
            if units:
                det["distance"].attrs["units"] = units
        det["x_pixel_size"] = PIX
        det["y_pixel_size"] = PIX
        det["basis_vectors"] = np.array([[[0, -PIX, 0], [-PIX, 0, 0]]])
        mask = np.zeros(mask_shape, np.uint32)
        mask[5, 7] = 1               # a bad pixel outside the crop
        mask[20, 15] = 0x4           # inside it (any nonzero bit = bad)
        det["mask"] = mask
        src = f.create_group("entry_1/instrument_1/source_1")
        if energy is True:
            src["energy"] = E_EV * J_PER_EV
        elif energy == "wavelength":
            src["wavelength"] = HC_EV_M / E_EV
        elif energy is not None:
            src["energy"] = energy
        src["illumination"] = probe if probe_shape is None else np.ones(probe_shape, np.complex64)
        t = np.zeros((P, 3))
        t[:, 0], t[:, 1] = x, y
        f["entry_1/sample_1/geometry_1/translation"] = t
        d1 = f.create_group("entry_1/data_1")
        d1["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    return counts, x, y, probe


CROP = LoadOptions(N=N, beam_centre=(20.0, 21.0))


def test_cxi_foreign_layout(tmp_path):
    counts, x, y, probe = write_foreign_cxi(tmp_path / "a.cxi", energy="wavelength")
    ds, g = load_data(tmp_path / "a.cxi", CROP)
    # crop: a 16 px box whose pixel 8 sits on the beam centre (row 20, col 21)
    assert g.detector.crop_box == (12, 28, 13, 29)
    np.testing.assert_array_equal(ds.counts, counts[:, 12:28, 13:29].astype(np.float32))
    assert ds.valid.sum() == N * N - 1 and not ds.valid[20 - 12, 15 - 13]
    assert g.photon_energy_eV == pytest.approx(E_EV, rel=1e-12)
    wl = HC_EV_M / E_EV
    assert g.object_pixel_width_m == pytest.approx(wl * Z_M / (N * PIX), rel=1e-12)
    # positions: x_px = (x_m - centre) / dx + (W - 1) / 2, converted once
    fr = g.object_frame
    np.testing.assert_allclose(ds.xcoords, (x - fr.center_x_m) / fr.pixel_width_m + (fr.width_px - 1) / 2)
    assert g.probe_modes_in_file == 2 and "mode 0 of 2" in " ".join(g.notes)
    assert g.probe_scaling["stage"] == "probe_rescaled_to_measured_counts"
    assert "basis_vectors" in " ".join(g.notes)


def test_probe_rescaled_to_measured_photons_or_taken_as_physical(tmp_path):
    write_foreign_cxi(tmp_path / "a.cxi")
    ds, g = load_data(tmp_path / "a.cxi", CROP)
    far = np.abs(np.fft.fftshift(np.fft.fft2(ds.probe.astype(np.complex128), norm="ortho"))) ** 2
    measured = (ds.counts * ds.valid).sum(axis=(1, 2)).mean()
    assert (far * ds.valid).sum() == pytest.approx(measured, rel=1e-5)
    raw, g2 = load_data(tmp_path / "a.cxi", CROP.model_copy(update={"probe_scaling": "physical"}))
    assert g2.probe_scaling["factor"] == 1.0
    np.testing.assert_allclose(ds.probe, raw.probe * g.probe_scaling["factor"], rtol=1e-6)


def test_binning_sums_counts_and_any_bad_pixel_masks_the_bin():
    rng = np.random.default_rng(1)
    c = rng.poisson(5.0, (3, 8, 8)).astype(np.float32)
    bad = np.zeros((8, 8), bool)
    bad[0, 1] = True
    out, b2, rec = prepare_detector(c, bad, bin_factor=2)
    assert out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out[:, 1, 2], c[:, 2:4, 4:6].sum(axis=(1, 2)))
    assert b2[0, 0] and b2.sum() == 1 and rec.masked_fraction == 1 / 16


def test_saturation_masks_pixel_in_all_patterns():
    c = np.ones((3, 8, 8), np.float32)
    c[1, 4, 4] = 1e6
    _, bad, rec = prepare_detector(c, None, saturation_count=1e5)
    assert bad[4, 4] and bad.sum() == 1 and rec.saturated_pixels == 1


def test_beam_centre_found_from_the_mean_pattern(tmp_path):
    write_foreign_cxi(tmp_path / "a.cxi")
    _, g = load_data(tmp_path / "a.cxi", LoadOptions(N=N))
    r, c = g.detector.beam_centre_px
    assert abs(r - 20) < 0.5 and abs(c - 21) < 0.5   # the 5x5 beam block centred at (20, 21)


def test_cxi_binning_scales_the_pixel(tmp_path):
    write_foreign_cxi(tmp_path / "a.cxi")
    ds, g = load_data(tmp_path / "a.cxi", LoadOptions(N=8, bin_factor=2, beam_centre=(20.0, 21.0)))
    assert ds.patch_size == 8 and g.detector_pixel_width_m == pytest.approx(2 * PIX)
    assert g.object_pixel_width_m == pytest.approx(HC_EV_M / E_EV * Z_M / (8 * 2 * PIX), rel=1e-12)


# ---------------------------------------------------------------------------------- ptychodus
def write_foreign_ptychodus(d, *, npz_product=False, dup=False, photon_energy=E_EV):
    counts, x, y, _ = _scan()
    counts = counts[:, 12:28, 13:29]
    idx = np.arange(100, 100 + P)[::-1].copy()      # indexes not in order
    if dup:
        idx[1] = idx[0]
    d.mkdir(exist_ok=True)
    with h5py.File(d / "diffraction.h5", "w") as f:
        f["indexes"] = idx
        pat = f.create_dataset("patterns", data=counts)
        pat.attrs["detector_pixel_width_m"] = PIX
        pat.attrs["detector_pixel_height_m"] = PIX
        bad = np.zeros((N, N), bool)
        bad[3, 4] = True
        f["bad_pixels"] = bad
    pidx = np.arange(100, 100 + P)                   # product in scan order
    probe = np.ones((1, 2, N, N), np.complex64) * 3.0
    obj = np.ones((1, 60, 70), np.complex64)
    pw = HC_EV_M / E_EV * Z_M / (N * PIX)
    fields = {"photon_energy_eV": photon_energy, "detector_object_distance_m": Z_M,
              "probe_position_indexes": pidx, "probe_position_x_m": x, "probe_position_y_m": y}
    if npz_product:
        np.savez(d / "product.npz", probe=probe, object=obj, object_center_x_m=0.0,
                 object_center_y_m=0.0, object_pixel_width_m=pw, object_pixel_height_m=pw,
                 **{k: np.asarray(v) for k, v in fields.items()})
        return counts, idx, x, y
    with h5py.File(d / "product.h5", "w") as f:
        for k in ("photon_energy_eV", "detector_object_distance_m"):
            f.attrs[k] = fields[k]
        for k in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m"):
            f[k] = fields[k]
        f["probe"] = probe
        o = f.create_dataset("object", data=obj)
        o.attrs.update({"center_x_m": 0.0, "center_y_m": 0.0, "pixel_width_m": pw,
                        "pixel_height_m": pw})
    return counts, idx, x, y


@pytest.mark.parametrize("npz_product", [False, True])
def test_ptychodus_foreign_layout(tmp_path, npz_product):
    counts, idx, x, y = write_foreign_ptychodus(tmp_path / "p", npz_product=npz_product)
    opts = LoadOptions(product=tmp_path / "p" / "product.npz") if npz_product else LoadOptions()
    ds, g = load_data(tmp_path / "p" / "diffraction.h5", opts)
    np.testing.assert_array_equal(ds.counts, counts.astype(np.float32))
    np.testing.assert_array_equal(ds.scan_index, idx)
    order = idx - 100                                 # patterns matched to positions by index
    pw = g.object_pixel_width_m
    np.testing.assert_allclose(ds.xcoords, x[order] / pw + (70 - 1) / 2, atol=1e-9)
    np.testing.assert_allclose(ds.ycoords, y[order] / pw + (60 - 1) / 2, atol=1e-9)
    assert g.object_frame.width_px == 70 and ds.obj is None   # a product's object is not truth
    assert not ds.valid[3, 4] and ds.valid.sum() == N * N - 1
    assert g.probe_modes_in_file == 2


# ---------------------------------------------------------------------------------- PtychoPINN
def test_ptychopinn_npz_variants(tmp_path, tiny_dataset):
    ds0, _ = tiny_dataset
    amp = np.sqrt(ds0.counts)
    probe3 = np.stack([ds0.probe, ds0.probe * 0.1], axis=-1)          # (N, N, modes)
    np.savez(tmp_path / "pinn.npz", diffraction=np.moveaxis(amp, 0, 2), xcoords=ds0.xcoords,
             ycoords=ds0.ycoords, probeGuess=probe3, objectGuess=ds0.obj,
             _metadata=np.array([{"pickled": "dict"}], dtype=object))
    with pytest.raises(DatasetError, match="measurement domain"):
        load_data(tmp_path / "pinn.npz")
    ds, g = load_data(tmp_path / "pinn.npz", LoadOptions(measurement_domain="amplitude",
                                                        dose_normalised=False))
    np.testing.assert_allclose(ds.counts, ds0.counts, rtol=3e-7)
    np.testing.assert_array_equal(ds.probe, ds0.probe)
    notes = " ".join(ds.metadata["npz_variant"])
    assert "(H, W, M)" in notes and "mode 0" in notes and "never unpickled" in notes
    assert "'diffraction' read as 'diff3d'" in notes


# ---------------------------------------------------------------------------------- bad input
BAD_CXI = [
    ({"distance": False}, "detector distance .*detector_1/distance"),
    ({"energy": None}, "photon energy .*source_1/energy or .*wavelength"),
    ({"energy": -1.0}, "source_1/energy must be > 0"),
    ({"mask_shape": (D, D - 1)}, "detector_1/mask has shape"),
    ({"units": "furlong"}, "detector_1/distance has unknown units 'furlong'"),
    ({"positions": np.r_[np.nan, np.zeros(P - 1)]}, "translation has 1 NaN/Inf positions"),
    ({"probe_shape": (N - 2, N - 2)}, "illumination must end in 16x16"),
]


@pytest.mark.parametrize("kwargs,message", BAD_CXI)
def test_bad_cxi_refused_with_the_key(tmp_path, kwargs, message):
    write_foreign_cxi(tmp_path / "bad.cxi", **kwargs)
    with pytest.raises(DatasetError, match=message):
        load_data(tmp_path / "bad.cxi", CROP)


def test_cxi_units_attribute_honoured(tmp_path):
    write_foreign_cxi(tmp_path / "mm.cxi", units="mm")
    _, g = load_data(tmp_path / "mm.cxi", CROP)
    assert g.detector_distance_m == pytest.approx(Z_M)


def test_missing_distance_can_be_stated_but_not_contradicted(tmp_path):
    write_foreign_cxi(tmp_path / "nod.cxi", distance=False)
    _, g = load_data(tmp_path / "nod.cxi", CROP.model_copy(update={"detector_distance_m": Z_M}))
    assert g.detector_distance_m == Z_M
    write_foreign_cxi(tmp_path / "d.cxi")
    with pytest.raises(DatasetError, match="says detector distance"):
        load_data(tmp_path / "d.cxi", CROP.model_copy(update={"detector_distance_m": 3.0}))


def test_bad_ptychodus_refused(tmp_path):
    write_foreign_ptychodus(tmp_path / "dup", dup=True)
    with pytest.raises(DatasetError, match="'indexes' has duplicate indexes"):
        load_data(tmp_path / "dup" / "diffraction.h5")
    write_foreign_ptychodus(tmp_path / "e0", photon_energy=0.0)
    with pytest.raises(DatasetError, match="'photon_energy_eV' .* must be > 0"):
        load_data(tmp_path / "e0" / "diffraction.h5")
    (tmp_path / "alone").mkdir()
    write_foreign_ptychodus(tmp_path / "alone")
    (tmp_path / "alone" / "product.h5").unlink()
    with pytest.raises(DatasetError, match="need a product file"):
        load_data(tmp_path / "alone" / "diffraction.h5")


def test_unknown_format_and_pickles_refused(tmp_path):
    (tmp_path / "x.cxi").write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="neither NPZ nor HDF5"):
        load_data(tmp_path / "x.cxi")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["foo"] = 1
    with pytest.raises(DatasetError, match="no known layout"):
        load_data(tmp_path / "other.h5")
    np.savez(tmp_path / "p.npz", diff3d=np.array([pickle.dumps(1)], dtype=object))
    with pytest.raises(DatasetError, match="pickled"):
        load_data(tmp_path / "p.npz")
