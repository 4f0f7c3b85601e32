"""Real data in and out: one loading function for every format, and the writers.

    ds, geometry = load_data("scan.cxi")                      # format from the content
    ds, geometry = load_data("run/diffraction.h5", LoadOptions(N=128, bin_factor=2))

Formats (docs/datasets.md has a section per format with units and sign conventions):
``npz`` (ptychotrace and PtychoPINN layouts), ``cxi``, ``ptychodus`` (diffraction.h5 + product
file). The Dataset comes back in canonical units (photon counts, physical probe, positions in
object pixels converted once, here) with its detector mask; the Geometry record is also stored in
``ds.metadata['geometry']``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..data.dataset import Dataset, DatasetError
from .geometry import Geometry, ObjectFrame
from .scan import LoadOptions, build_dataset, load_options_of

__all__ = ["Geometry", "LoadOptions", "ObjectFrame", "assign_geometry", "detect_format", "load_data",
           "load_options_of", "pattern_size", "save_data"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_format(path: str | Path) -> str:
    """'npz' | 'cxi' | 'ptychodus', from the file's content (the extension only breaks ties)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if zipfile.is_zipfile(path):
        from .ptychopinn import npz_keys

        keys = npz_keys(path)
        if "probe_position_x_m" in keys and "diff3d" not in keys:
            raise DatasetError(f"{path}: a ptychodus product NPZ holds no patterns; load its "
                               "diffraction.h5 and give this file with --product")
        return "npz"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head != _HDF5_MAGIC:
        raise DatasetError(f"{path}: neither NPZ nor HDF5 (CXI, ptychodus); cannot tell the format")
    from . import cxi, ptychodus
    from .hdf5 import h5py_module

    with h5py_module().File(path, "r") as f:
        if cxi.looks_like_cxi(f):
            return "cxi"
        if ptychodus.looks_like_diffraction(f):
            return "ptychodus"
        if "probe_position_x_m" in f:
            raise DatasetError(f"{path}: a ptychodus product file holds no patterns; load its "
                               "diffraction.h5 and give this file with --product")
    raise DatasetError(f"{path}: HDF5 file in no known layout (CXI needs /entry_1 with "
                       "instrument_1/detector_1/data; ptychodus needs 'patterns' and 'indexes')")


def pattern_size(path: str | Path, options: LoadOptions | None = None) -> int:
    """N of the patterns ``load_data`` would return (reads shapes only, or ``options.N``)."""
    opts = options or LoadOptions()
    if opts.N is not None:
        return int(opts.N)
    path = Path(path)
    fmt = detect_format(path) if opts.format == "auto" else opts.format
    if fmt == "npz":
        ds, _ = load_data(path, opts)
        return ds.patch_size
    from . import cxi
    from .hdf5 import h5py_module

    with h5py_module().File(path, "r") as f:
        key = "patterns" if fmt == "ptychodus" else next((k for k in cxi.DATA_KEYS if k in f), None)
        if key is None or key not in f:
            raise DatasetError(f"{path}: no diffraction data found for format {fmt}")
        h, w = f[key].shape[-2:]
    if h != w or h % opts.bin_factor:
        raise DatasetError(f"{path}: patterns are {h}x{w}; give --crop N for a square frame")
    return int(h // opts.bin_factor)


def load_data(path: str | Path, options: LoadOptions | None = None) -> tuple[Dataset, Geometry]:
    """Load any supported file -> (Dataset, Geometry). Raises DatasetError naming the key."""
    path = Path(path)
    opts = options or LoadOptions()
    fmt = detect_format(path) if opts.format == "auto" else opts.format
    if fmt == "npz":
        from .ptychopinn import load_npz

        return load_npz(path, opts)
    if fmt == "cxi":
        from .cxi import read_raw
    elif fmt == "ptychodus":
        from .ptychodus import read_raw
    else:  # pragma: no cover - LoadOptions validates the choice
        raise DatasetError(f"unknown format {fmt!r}")
    return build_dataset(read_raw(path, opts), opts)


def assign_geometry(ds: Dataset, photon_energy_eV: float, detector_distance_m: float,
                    detector_pixel_size_m: float, center_m: tuple[float, float] = (0.0, 0.0)
                    ) -> Geometry:
    """A geometry for a dataset that has none (a simulation): object pixel = wavelength * distance
    / (N * pixel); the frame is the truth's shape (else the scan extent + N) centred at
    ``center_m`` (x, y) metres."""
    import math

    from .geometry import energy_ev_to_wavelength_m, object_pixel_size_m

    for label, v in (("photon energy", photon_energy_eV), ("detector distance", detector_distance_m),
                     ("detector pixel size", detector_pixel_size_m)):
        if not (v is not None and math.isfinite(v) and v > 0):
            raise DatasetError(f"{label} must be > 0, got {v}")
    n = ds.patch_size
    wl = energy_ev_to_wavelength_m(photon_energy_eV)
    px = object_pixel_size_m(wl, detector_distance_m, n, detector_pixel_size_m)
    if ds.obj is not None:
        h, w = ds.obj.shape
    else:
        h = int(math.ceil(ds.ycoords.max())) + n // 2 + 1
        w = int(math.ceil(ds.xcoords.max())) + n // 2 + 1
    frame = ObjectFrame(height_px=int(h), width_px=int(w), center_x_m=center_m[0],
                        center_y_m=center_m[1], pixel_width_m=px, pixel_height_m=px,
                        chosen_from="assigned (ground-truth shape)" if ds.obj is not None else
                        "assigned (scan extent)")
    return Geometry(source_format="assigned", photon_energy_eV=photon_energy_eV, wavelength_m=wl,
                    detector_distance_m=detector_distance_m, detector_pixel_width_m=detector_pixel_size_m,
                    detector_pixel_height_m=detector_pixel_size_m, N=n, object_pixel_width_m=px,
                    object_pixel_height_m=px, object_frame=frame, probe_modes_in_file=1,
                    probe_mode_used=0, position_convention="ptychodus centred-pixel convention")


def save_data(path: str | Path, ds: Dataset, geometry: Geometry | None, fmt: str,
              force: bool = False) -> list[Path]:
    """Write ``ds`` as 'npz', 'cxi' or 'ptychodus' (``path`` is then a directory)."""
    if fmt == "npz":
        from ..data.dataset import save_dataset

        return [save_dataset(path, ds, force=force)]
    if geometry is None or geometry.object_frame is None:
        raise DatasetError(f"writing {fmt} needs the physical geometry (photon energy, detector "
                           "distance and pixel size)")
    if fmt == "cxi":
        from .cxi import write_cxi

        return [write_cxi(path, ds, geometry, force=force)]
    if fmt == "ptychodus":
        from .ptychodus import write_ptychodus_dataset

        return list(write_ptychodus_dataset(path, ds, geometry, force=force))
    raise DatasetError(f"unknown output format {fmt!r} (npz, cxi, ptychodus)")
