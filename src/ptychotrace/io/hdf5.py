"""Small h5py helpers shared by the CXI and ptychodus readers: scalars with units, and
atomic writes (a file is written under a temporary name and renamed, never left half-written)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..data.dataset import DatasetError

#: accepted ``units`` attributes -> factor to SI (metres, joules) or eV for energies.
LENGTH_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6,
                "micron": 1e-6, "nm": 1e-9}
ENERGY_J_UNITS = {"j": 1.0, "joule": 1.0}
ENERGY_EV_UNITS = {"ev": 1.0, "kev": 1e3}


def h5py_module():
    try:
        import h5py
    except ModuleNotFoundError as exc:  # the hdf5 extra
        raise DatasetError("reading HDF5 files needs h5py: pip install 'ptychotrace[hdf5]'") from exc
    return h5py


def open_hdf5(path: Path):
    """``path`` opened read-only (use as a context manager); a file that is not HDF5 gets a
    DatasetError naming it, at the boundary where it enters."""
    h5py = h5py_module()
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file: {exc}") from exc


def units_of(ds) -> str | None:
    u = ds.attrs.get("units")
    if u is None:
        return None
    return (u.decode() if isinstance(u, bytes) else str(u)).strip()


def read_length_m(f, key: str, path: Path) -> float | None:
    """A scalar length in metres, honouring a ``units`` attribute; None if absent."""
    if key not in f:
        return None
    ds = f[key]
    value = _scalar(ds, key, path)
    u = units_of(ds)
    if u is None:
        return value
    if u.lower() not in {k.lower() for k in LENGTH_UNITS}:
        raise DatasetError(f"{path}: {key} has unknown units {u!r} (expected one of "
                           f"{sorted(LENGTH_UNITS)})")
    return value * {k.lower(): v for k, v in LENGTH_UNITS.items()}[u.lower()]


def read_energy_ev(f, key: str, path: Path, default_units: str = "J") -> float | None:
    """A photon energy in eV from a dataset in J (CXI's unit) or eV/keV per its ``units``."""
    if key not in f:
        return None
    ds = f[key]
    value = _scalar(ds, key, path)
    u = (units_of(ds) or default_units).lower()
    if u in ENERGY_J_UNITS:
        return value / 1.602176634e-19
    if u in ENERGY_EV_UNITS:
        return value * ENERGY_EV_UNITS[u]
    raise DatasetError(f"{path}: {key} has unknown units {u!r} (expected J, eV or keV)")


def _scalar(ds, key: str, path: Path) -> float:
    a = np.asarray(ds[()])
    if a.size != 1 or a.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: {key} must be one number, got dtype {a.dtype} shape {a.shape}")
    v = float(a.reshape(()))
    if not np.isfinite(v) or v <= 0:
        raise DatasetError(f"{path}: {key} must be > 0, got {v}")
    return v


def positive_attr(obj, name: str, where: str, path: Path, required: bool = True) -> float | None:
    if name not in obj.attrs:
        if required:
            raise DatasetError(f"{path}: missing attribute '{name}' on {where}")
        return None
    a = np.asarray(obj.attrs[name])
    if a.size != 1 or a.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: attribute '{name}' on {where} must be one number, got {a!r}")
    v = float(a.reshape(()))
    if not np.isfinite(v) or v <= 0:
        raise DatasetError(f"{path}: attribute '{name}' on {where} must be > 0, got {v}")
    return v


@contextmanager
def atomic_h5(path: Path, force: bool):
    """Open a temporary HDF5 file beside ``path``; rename it over ``path`` on success only."""
    h5py = h5py_module()
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
