"""CXI files (Coherent X-ray Imaging format, HDF5): reader and writer.

Read (all under ``/entry_1``; soft links such as ``data_1/data`` are followed by h5py):
- ``instrument_1/detector_1/data`` or ``data_1/data``: (P, H, W) counts
- ``instrument_1/detector_1/{distance, x_pixel_size, y_pixel_size}``: metres (a ``units``
  attribute m/mm/um/nm is honoured; any other is refused)
- ``instrument_1/detector_1/mask``: (H, W) integer, 0 = good, nonzero = bad (uint32 as written
  by most tools); ``basis_vectors`` recorded, frames are not reoriented
- ``instrument_1/source_1/energy`` (J) or ``.../wavelength`` (m)
- ``sample_1/geometry_1/translation``: (P, 3) metres, columns x, y, z (``data_1/translation``
  as a fallback). **Sign convention**: by default the translation is taken as the probe position
  on the sample, ``x_probe = +translation_x`` (what ptychodus writes and reads);
  ``cxi_translation_sign=-1`` reads it as the sample stage displacement, ``x_probe = -translation``.
- ``instrument_1/source_1/illumination`` (or ``detector_1/probe``): the probe, (N, N) or
  (modes, N, N); mode 0 is used.
ptychotrace's own extras (split, scan order, ground truth, object frame, probe units) live in
``/entry_1/ptychotrace`` so that its files round-trip exactly; other readers ignore the group.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset, DatasetError
from .geometry import Geometry, wavelength_m_to_energy_ev
from .hdf5 import atomic_h5, h5py_module, open_hdf5, read_energy_ev, read_length_m
from .scan import LoadOptions, RawScan

E = "/entry_1"
DET = f"{E}/instrument_1/detector_1"
SRC = f"{E}/instrument_1/source_1"
TRANSLATION = f"{E}/sample_1/geometry_1/translation"
EXTRAS = f"{E}/ptychotrace"
DATA_KEYS = (f"{DET}/data", f"{E}/data_1/data")
PROBE_KEYS = (f"{SRC}/illumination", f"{DET}/probe")


def looks_like_cxi(f) -> bool:
    return E in f and any(k in f for k in DATA_KEYS)


def _first(f, keys) -> str | None:
    return next((k for k in keys if k in f), None)


def read_raw(path: Path, opts: LoadOptions) -> RawScan:
    with open_hdf5(path) as f:
        data_key = _first(f, DATA_KEYS)
        if data_key is None:
            raise DatasetError(f"{path}: no diffraction data (looked for {', '.join(DATA_KEYS)})")
        counts = f[data_key][()]
        if counts.ndim != 3:
            raise DatasetError(f"{path}: {data_key} must be (P, H, W), got shape {counts.shape}")
        keys = {"counts": data_key, "distance": f"{DET}/distance",
                "pixel_width": f"{DET}/x_pixel_size", "pixel_height": f"{DET}/y_pixel_size",
                "energy": f"{SRC}/energy", "mask": f"{DET}/mask"}
        bad = None
        if f"{DET}/mask" in f:
            m = f[f"{DET}/mask"][()]
            if m.dtype.kind not in "biu":
                raise DatasetError(f"{path}: {DET}/mask must be integer (0 = good), got {m.dtype}")
            bad = m != 0
        energy = read_energy_ev(f, f"{SRC}/energy", path)
        wl = read_length_m(f, f"{SRC}/wavelength", path)
        if energy is None and wl is not None:
            energy = wavelength_m_to_energy_ev(wl)
            keys["energy"] = f"{SRC}/wavelength"
        elif energy is None:
            keys["energy"] = f"{SRC}/energy or {SRC}/wavelength"
        t_key = _first(f, (TRANSLATION, f"{E}/data_1/translation"))
        if t_key is None:
            raise DatasetError(f"{path}: no scan positions (missing {TRANSLATION})")
        t = np.asarray(f[t_key][()], dtype=np.float64)
        if t.ndim != 2 or t.shape[1] not in (2, 3):
            raise DatasetError(f"{path}: {t_key} must be (P, 3) metres, got shape {t.shape}")
        sign = float(opts.cxi_translation_sign)
        keys["position_x"] = keys["position_y"] = t_key
        probe_key = _first(f, PROBE_KEYS)
        keys["probe"] = probe_key or " or ".join(PROBE_KEYS)
        probe = f[probe_key][()] if probe_key else None
        raw = RawScan(
            source_format="cxi", path=path, counts=counts, x_m=sign * t[:, 0], y_m=sign * t[:, 1],
            keys=keys, bad=bad, probe=probe, photon_energy_eV=energy,
            detector_distance_m=read_length_m(f, f"{DET}/distance", path),
            detector_pixel_width_m=read_length_m(f, f"{DET}/x_pixel_size", path),
            detector_pixel_height_m=read_length_m(f, f"{DET}/y_pixel_size", path),
            position_convention=f"x_probe = {'+' if sign > 0 else '-'}translation[:, 0], "
                                f"y_probe = {'+' if sign > 0 else '-'}translation[:, 1] ({t_key})")
        if f"{DET}/basis_vectors" in f:
            raw.notes.append(f"basis_vectors {np.asarray(f[f'{DET}/basis_vectors']).tolist()} "
                             "recorded; frames used as stored (rows = y, columns = x)")
        if EXTRAS in f:
            _read_extras(f[EXTRAS], raw, path)
    return raw


def _read_extras(g, raw: RawScan, path: Path) -> None:
    for name, attr in (("split", "split"), ("scan_index", "scan_index")):
        if name in g:
            setattr(raw, attr, g[name][()])
    if "object_truth" in g:
        raw.obj = g["object_truth"][()]
    if "frame_shape" in g.attrs:
        raw.frame = {"shape": tuple(int(v) for v in g.attrs["frame_shape"]),
                     "center_x_m": float(g.attrs["center_x_m"]),
                     "center_y_m": float(g.attrs["center_y_m"]), "from": "file (ptychotrace extras)"}
    raw.probe_physical = str(g.attrs.get("probe_units", "")) == "sqrt_photons"
    if "metadata" in g.attrs:
        try:
            meta = json.loads(str(g.attrs["metadata"]))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: {EXTRAS} attribute 'metadata' is not JSON: {exc}") from exc
        raw.metadata = {k: v for k, v in meta.items()
                        if k not in ("geometry", "measurement", "source_file", "probe_units")}


def write_cxi(path: str | Path, ds: Dataset, geom: Geometry, force: bool = False,
              translation_sign: int = 1) -> Path:
    """Write ``ds`` as CXI: counts, mask (uint32, 1 = bad), geometry, translation in metres
    (``translation = translation_sign * probe position``), the physical probe as illumination."""
    if geom.object_frame is None or geom.photon_energy_eV is None:
        raise DatasetError("writing CXI needs a complete geometry (energy, distance, pixel sizes)")
    h5py = h5py_module()
    path = Path(path)
    x_m, y_m = geom.object_frame.to_metres(ds.xcoords, ds.ycoords)
    with atomic_h5(path, force) as f:
        f.create_dataset("cxi_version", data=160)
        det = f.create_group(DET)
        det.create_dataset("data", data=ds.counts.astype(np.float32))
        det.create_dataset("distance", data=geom.detector_distance_m)
        det.create_dataset("x_pixel_size", data=geom.detector_pixel_width_m)
        det.create_dataset("y_pixel_size", data=geom.detector_pixel_height_m)
        if ds.valid is not None:
            det.create_dataset("mask", data=(~ds.valid).astype(np.uint32))
        src = f.create_group(SRC)
        src.create_dataset("energy", data=geom.photon_energy_eV * 1.602176634e-19)
        src["energy"].attrs["units"] = "J"
        src.create_dataset("illumination", data=ds.probe.astype(np.complex64))
        t = np.zeros((ds.n_patterns, 3))
        t[:, 0], t[:, 1] = translation_sign * x_m, translation_sign * y_m
        f.create_dataset(TRANSLATION, data=t)
        d1 = f.create_group(f"{E}/data_1")
        d1["data"] = h5py.SoftLink(f"{DET}/data")
        d1["translation"] = h5py.SoftLink(TRANSLATION)
        g = f.create_group(EXTRAS)
        g.create_dataset("split", data=ds.split.astype(np.int8))
        g.create_dataset("scan_index", data=ds.scan_index.astype(np.int64))
        if ds.obj is not None:
            g.create_dataset("object_truth", data=ds.obj.astype(np.complex64))
        fr = geom.object_frame
        g.attrs["frame_shape"] = np.array([fr.height_px, fr.width_px], np.int64)
        g.attrs["center_x_m"], g.attrs["center_y_m"] = fr.center_x_m, fr.center_y_m
        g.attrs["probe_units"] = "sqrt_photons"
        g.attrs["translation_sign"] = int(translation_sign)
        g.attrs["metadata"] = json.dumps({k: v for k, v in ds.metadata.items()
                                          if k not in ("geometry", "source_file")}, sort_keys=True)
    return path
