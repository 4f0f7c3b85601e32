"""NPZ files: ptychotrace's own layout (docs/datasets.md) and the PtychoPINN variants.

Variants accepted (each recorded in ``metadata.npz_variant``):
- ``diffraction`` as an alias of ``diff3d`` (both present: refused);
- patterns in (H, W, M) order (detected when the first axis does not match the number of
  positions and the last does) -> transposed to (M, H, W);
- a 3-D ``probeGuess`` (modes, N, N) or (N, N, modes): mode 0 is used, and said so;
- ``_metadata`` (a pickled dict in PtychoPINN files) is skipped, never unpickled; any other key
  outside the contract is not read either.
Whether ``diff3d`` holds counts or amplitudes comes from ``metadata`` or is stated by the user
(``measurement_domain``); a file that says neither is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset, DatasetError, _read_arrays, dataset_from_arrays
from .geometry import Geometry
from .scan import LoadOptions

KNOWN = ("xcoords", "ycoords", "diff3d", "diffraction", "probeGuess", "objectGuess", "scan_index",
         "split", "metadata", "bad_pixels")


def npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path}: not an NPZ archive (truncated or a different format)") from exc


def _normalise(arrays: dict, path: Path) -> tuple[dict, list[str]]:
    notes = []
    if "diffraction" in arrays:
        if "diff3d" in arrays:
            raise DatasetError(f"{path}: both 'diff3d' and its alias 'diffraction' are present")
        arrays["diff3d"] = arrays.pop("diffraction")
        notes.append("'diffraction' read as 'diff3d'")
    diff = arrays.get("diff3d")
    n_pos = len(arrays["xcoords"]) if "xcoords" in arrays and arrays["xcoords"].ndim == 1 else None
    if (diff is not None and diff.ndim == 3 and n_pos is not None and diff.shape[0] != n_pos
            and diff.shape[2] == n_pos and diff.shape[0] == diff.shape[1]):
        arrays["diff3d"] = np.ascontiguousarray(np.moveaxis(diff, 2, 0))
        notes.append("patterns stored (H, W, M): transposed to (M, H, W)")
    probe = arrays.get("probeGuess")
    if probe is not None and probe.ndim == 3 and diff is not None:
        n = arrays["diff3d"].shape[-1]
        if probe.shape[1:] == (n, n):
            arrays["probeGuess"], k = probe[0], probe.shape[0]
        elif probe.shape[:2] == (n, n):
            arrays["probeGuess"], k = probe[..., 0], probe.shape[2]
        else:
            raise DatasetError(f"{path}: 3-D 'probeGuess' {probe.shape} has no {n}x{n} mode")
        notes.append(f"probeGuess has {k} modes: mode 0 used")
    return arrays, notes


def load_npz(path: Path, opts: LoadOptions) -> tuple[Dataset, Geometry]:
    if opts.N is not None or opts.bin_factor != 1 or opts.beam_centre is not None:
        raise DatasetError(f"{path}: NPZ positions are in object pixels, which fixes the detector "
                           "sampling; cropping (--crop, --beam-centre) and binning apply to CXI and "
                           "ptychodus files only")
    keys = npz_keys(path)
    skipped = [k for k in keys if k not in KNOWN]
    arrays, notes = _normalise(_read_arrays(path, skip=tuple(skipped)), path)
    if "_metadata" in skipped:
        notes.append("'_metadata' skipped (pickled in PtychoPINN files; never unpickled)")
    ds = dataset_from_arrays(arrays, path, opts.measurement_domain, opts.dose_normalised,
                             opts.dose_scale)
    meta = dict(ds.metadata)
    if notes:
        meta["npz_variant"] = notes
    if opts.saturation_count is not None:
        sat = (ds.counts > opts.saturation_count).any(axis=0)
        valid = ~sat if ds.valid is None else (ds.valid & ~sat)
        meta["saturation"] = {"count": opts.saturation_count, "pixels_masked": int(sat.sum())}
        ds = Dataset(ds.xcoords, ds.ycoords, ds.counts, ds.probe, ds.obj, ds.scan_index, ds.split,
                     meta, valid)
    geom = geometry_of_npz(meta, path, notes)
    meta["geometry"] = geom.to_dict()
    return Dataset(ds.xcoords, ds.ycoords, ds.counts, ds.probe, ds.obj, ds.scan_index, ds.split,
                   meta, ds.valid), geom


def geometry_of_npz(meta: dict, path: Path, notes: list[str]) -> Geometry:
    """The geometry an NPZ records (``metadata.geometry``, written when a CXI/ptychodus scan is
    saved as NPZ), else a record that says what is unknown."""
    if isinstance(meta.get("geometry"), dict):
        g = dict(meta["geometry"])
        g["source_file"] = str(path)
        g["notes"] = list(g.get("notes") or []) + notes
        return Geometry.model_validate(g)
    missing = [f"{label} (the NPZ has no metadata.geometry.{key})" for label, key in (
        ("photon energy", "photon_energy_eV"), ("detector distance", "detector_distance_m"),
        ("detector pixel size", "detector_pixel_width_m"),
        ("object pixel size", "object_pixel_width_m"))]
    return Geometry(source_format="npz", source_file=str(path), N=None, missing=missing,
                    notes=notes, probe_modes_in_file=None, probe_mode_used=0,
                    position_convention="object pixels, patch centre, x = column, y = row")
