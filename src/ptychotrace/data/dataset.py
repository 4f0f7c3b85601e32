"""The dataset contract: one NPZ file, a superset of the PtychoPINN raw-data layout.

Arrays (all keys lower-case as in PtychoPINN):
- ``xcoords``, ``ycoords``  (P,) float64  patch centres, object pixels (x = column, y = row)
- ``diff3d``                (P, N, N) float32  measured patterns, domain stated in ``metadata``
- ``probeGuess``            (N, N) complex64  probe, units stated in ``metadata``
- ``objectGuess``           (H, W) complex64  ground-truth object (optional)
- ``scan_index``            (P,) int64  acquisition order
- ``split``                 (P,) int8  0 = train, 1 = test (optional; absent = all train)
- ``bad_pixels``            (N, N) bool  detector mask, True = bad (optional; absent = all valid)
- ``metadata``              0-d unicode string holding JSON (schema_version, units, dose, seeds...)

Measurement domain (``metadata.measurement.domain``): ``counts`` (photons) or ``amplitude``
(sqrt of counts). ``metadata.measurement.dose_normalised`` true marks the legacy_v1 convention
``X = sqrt(I)/s`` (needs ``metadata.dose.scale``). ptychotrace writes ``amplitude``,
``dose_normalised: false`` and a physical probe (``probe_units: sqrt_photons``), so that
``counts = |fft2_ortho(probeGuess * O_j)|^2`` holds without any hidden factor.
Loading never unpickles; files whose units cannot be determined are refused unless stated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATASET_SCHEMA_VERSION = "1.0"
TRAIN, TEST = 0, 1
_DOMAINS = ("counts", "amplitude")
_PROBE_UNITS = ("sqrt_photons", "normalised")


class DatasetError(ValueError):
    """The file breaks the dataset contract; the message names the key and the problem."""


@dataclass(frozen=True)
class Dataset:
    """A validated dataset in canonical units.

    counts: (P, N, N) float32 measured photons per pixel (converted from the file's domain);
    probe: (N, N) complex64 physical probe in sqrt(photons) (``counts ~ |F(probe*O_j)|^2``);
    obj: (H, W) complex64 ground truth or None; split: (P,) int8 0 train / 1 test;
    valid: (N, N) bool detector mask, True = measured pixel (None = every pixel valid). Masked
    pixels are excluded from every likelihood; their counts are kept as read, never used.
    """

    xcoords: np.ndarray
    ycoords: np.ndarray
    counts: np.ndarray
    probe: np.ndarray
    obj: np.ndarray | None
    scan_index: np.ndarray
    split: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    valid: np.ndarray | None = None

    @property
    def n_patterns(self) -> int:
        return self.counts.shape[0]

    @property
    def patch_size(self) -> int:
        return self.counts.shape[-1]

    def indices(self, which: str) -> np.ndarray:
        code = {"train": TRAIN, "test": TEST}[which]
        return np.flatnonzero(self.split == code)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.xcoords[index], self.ycoords[index], self.counts[index], self.probe,
                       self.obj, self.scan_index[index], self.split[index], self.metadata,
                       self.valid)

    @property
    def masked_fraction(self) -> float:
        """Fraction of detector pixels masked (0 without a mask)."""
        return 0.0 if self.valid is None else float(1.0 - self.valid.mean())

    @property
    def dose_scale(self) -> float | None:
        return (self.metadata.get("dose") or {}).get("scale")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def save_dataset(path: str | Path, ds: Dataset, force: bool = False) -> Path:
    """Write ``ds`` atomically in the canonical layout (amplitude domain, physical probe).

    Refuses to replace an existing file unless ``force``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: dataset files must end in .npz")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    meta = dict(ds.metadata)
    meta["schema_version"] = DATASET_SCHEMA_VERSION
    meta["measurement"] = {"domain": "amplitude", "amplitude_of": "counts",
                           "dose_normalised": False, "units": "sqrt(photons) per pixel"}
    meta["probe_units"] = "sqrt_photons"
    meta["position_units"] = "object pixels, patch centre, x=column y=row"
    arrays = {
        "xcoords": ds.xcoords.astype(np.float64),
        "ycoords": ds.ycoords.astype(np.float64),
        "diff3d": np.sqrt(ds.counts, dtype=np.float32),
        "probeGuess": ds.probe.astype(np.complex64),
        "scan_index": ds.scan_index.astype(np.int64),
        "split": ds.split.astype(np.int8),
        "metadata": np.array(json.dumps(meta, sort_keys=True)),
    }
    if ds.obj is not None:
        arrays["objectGuess"] = ds.obj.astype(np.complex64)
    if ds.valid is not None:
        arrays["bad_pixels"] = ~np.asarray(ds.valid, dtype=bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz.tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_arrays(path: Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All arrays of an NPZ without unpickling; keys in ``skip`` are never read."""
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not an NPZ archive (truncated or a different format)")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                if key in skip:
                    continue
                try:
                    out[key] = z[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc) or "pickled" in str(exc):
                        raise DatasetError(f"{path}: key '{key}' holds pickled Python objects, "
                                           "which ptychotrace refuses to load") from exc
                    raise DatasetError(f"{path}: key '{key}' cannot be read: {exc}") from exc
    except DatasetError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated NPZ: {exc}") from exc
    return out


def _require(arrays: dict, key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise DatasetError(f"{path}: missing required key '{key}' (keys present: {sorted(arrays)})")
    return arrays[key]


def _check_finite(a: np.ndarray, key: str, path: Path) -> None:
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise DatasetError(f"{path}: '{key}' has {bad} NaN/Inf values")


def _parse_metadata(arrays: dict, path: Path) -> dict[str, Any]:
    if "metadata" not in arrays:
        return {}
    raw = arrays["metadata"]
    if raw.dtype.kind not in "US" or raw.ndim != 0:
        raise DatasetError(f"{path}: 'metadata' must be a 0-d string holding JSON, got "
                           f"dtype {raw.dtype} shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: 'metadata' is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: 'metadata' JSON must be an object")
    return meta


def load_dataset(path: str | Path, measurement_domain: str | None = None,
                 dose_normalised: bool | None = None, dose_scale: float | None = None) -> Dataset:
    """Load and validate a dataset; return it in canonical units (counts, physical probe).

    The measurement domain comes from the file's metadata, or from ``measurement_domain``
    (``'counts'`` | ``'amplitude'``) for files without it; a file whose units are unknown and
    not stated is refused. ``dose_normalised`` marks legacy_v1 files (then ``dose_scale``, or
    ``metadata.dose.scale``, is required to undo ``X = sqrt(I)/s``)."""
    path = Path(path)
    return dataset_from_arrays(_read_arrays(path), path, measurement_domain, dose_normalised,
                               dose_scale)


def _bad_pixels(arrays: dict, n: int, path: Path) -> np.ndarray | None:
    """``bad_pixels`` (N, N), True/nonzero = bad -> the valid mask (True = measured) or None."""
    bad = arrays.get("bad_pixels")
    if bad is None:
        return None
    if bad.shape != (n, n):
        raise DatasetError(f"{path}: 'bad_pixels' must be {n}x{n} to match the patterns, got "
                           f"{bad.shape}")
    if bad.dtype.kind not in "biu":
        raise DatasetError(f"{path}: 'bad_pixels' must be boolean or integer, got {bad.dtype}")
    valid = ~(bad != 0)
    if not valid.any():
        raise DatasetError(f"{path}: 'bad_pixels' masks every detector pixel")
    return valid


def dataset_from_arrays(arrays: dict[str, np.ndarray], path: str | Path,
                        measurement_domain: str | None = None, dose_normalised: bool | None = None,
                        dose_scale: float | None = None) -> Dataset:
    """Validate arrays in the NPZ layout (see module docstring) into a Dataset; ``path`` names
    the source in error messages. Used by :func:`load_dataset` and by ``ptychotrace.io``."""
    path = Path(path)
    meta = _parse_metadata(arrays, path)
    diff = _checked_patterns(arrays, path)
    n_pat, n = diff.shape[0], diff.shape[1]
    xs, ys = _checked_positions(arrays, n_pat, path)
    probe = _checked_probe(arrays, n, path)
    obj = _checked_object(arrays, xs, ys, path)
    scan_index, split = _checked_index_and_split(arrays, n_pat, path)
    domain, legacy = _measurement_convention(meta, measurement_domain, dose_normalised, path)

    values = diff.astype(np.float32)
    counts = values if domain == "counts" else np.square(values, dtype=np.float32)
    probe = probe.astype(np.complex64)
    if legacy:
        s = dose_scale if dose_scale is not None else (meta.get("dose") or {}).get("scale")
        if s is None or not np.isfinite(s) or s <= 0:
            raise DatasetError(f"{path}: legacy dose-normalised data needs a positive dose scale "
                               "(metadata dose.scale or --dose-scale)")
        counts = counts * np.float32(s) ** 2
        if meta.get("probe_units", "normalised") == "normalised":
            probe = (probe * np.float32(s)).astype(np.complex64)
        meta = {**meta, "converted_from": {"convention": "legacy_v1", "dose_scale": float(s)}}
    meta.setdefault("source_file", str(path))

    return Dataset(xcoords=xs.astype(np.float64), ycoords=ys.astype(np.float64),
                   counts=counts, probe=probe,
                   obj=None if obj is None else obj.astype(np.complex64),
                   scan_index=scan_index.astype(np.int64), split=split.astype(np.int8),
                   metadata=meta, valid=_bad_pixels(arrays, n, path))


def _checked_patterns(arrays, path: Path) -> np.ndarray:
    """``diff3d``: (P, N, N), non-empty, floating point, finite, >= 0."""
    diff = _require(arrays, "diff3d", path)
    if diff.ndim != 3 or diff.shape[1] != diff.shape[2]:
        raise DatasetError(f"{path}: 'diff3d' must have shape (P, N, N), got {diff.shape}")
    if diff.shape[0] == 0:
        raise DatasetError(f"{path}: 'diff3d' is empty (0 patterns)")
    if diff.dtype.kind != "f":
        raise DatasetError(f"{path}: 'diff3d' must be floating point, got {diff.dtype}")
    _check_finite(diff, "diff3d", path)
    if (diff < 0).any():
        raise DatasetError(f"{path}: 'diff3d' has {int((diff < 0).sum())} negative values "
                           "(counts and amplitudes must be >= 0)")
    return diff


def _checked_positions(arrays, n_pat: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``xcoords``, ``ycoords``: 1-D numeric, one per pattern, finite (object pixels)."""
    xs = _require(arrays, "xcoords", path)
    ys = _require(arrays, "ycoords", path)
    for key, a in (("xcoords", xs), ("ycoords", ys)):
        if a.ndim != 1 or a.dtype.kind not in "fiu":
            raise DatasetError(f"{path}: '{key}' must be a 1-D numeric array, got "
                               f"dtype {a.dtype} shape {a.shape}")
        if a.shape[0] != n_pat:
            raise DatasetError(f"{path}: '{key}' has {a.shape[0]} positions but 'diff3d' has "
                               f"{n_pat} patterns")
        _check_finite(a, key, path)
    return xs, ys


def _checked_probe(arrays, n: int, path: Path) -> np.ndarray:
    """``probeGuess``: (N, N) complex (or real), finite, not zero everywhere."""
    probe = _require(arrays, "probeGuess", path)
    if probe.ndim != 2 or probe.shape != (n, n):
        raise DatasetError(f"{path}: 'probeGuess' must be {n}x{n} to match the patterns, got "
                           f"{probe.shape}")
    if probe.dtype.kind not in "fc":
        raise DatasetError(f"{path}: 'probeGuess' must be complex, got {probe.dtype}")
    _check_finite(probe, "probeGuess", path)
    if not np.any(np.abs(probe) > 0):
        raise DatasetError(f"{path}: 'probeGuess' is zero everywhere")
    return probe


def _checked_object(arrays, xs, ys, path: Path) -> np.ndarray | None:
    """Optional ``objectGuess``: 2-D complex, finite, every position inside it."""
    obj = arrays.get("objectGuess")
    if obj is None:
        return None
    if obj.ndim != 2 or obj.dtype.kind not in "fc":
        raise DatasetError(f"{path}: 'objectGuess' must be a 2-D complex array, got "
                           f"dtype {obj.dtype} shape {obj.shape}")
    _check_finite(obj, "objectGuess", path)
    h, w = obj.shape
    outside = (xs < 0) | (xs > w - 1) | (ys < 0) | (ys > h - 1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DatasetError(f"{path}: {int(outside.sum())} positions lie outside the {h}x{w} "
                           f"object, first at index {i}: x={xs[i]:.2f}, y={ys[i]:.2f}")
    return obj


def _checked_index_and_split(arrays, n_pat: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``scan_index`` (unique, default 0..P-1) and ``split`` (0 train / 1 test, default train)."""
    scan_index = arrays.get("scan_index", np.arange(n_pat))
    if scan_index.shape != (n_pat,):
        raise DatasetError(f"{path}: 'scan_index' must have shape ({n_pat},), got {scan_index.shape}")
    uniq, seen = np.unique(scan_index, return_counts=True)
    if (seen > 1).any():
        raise DatasetError(f"{path}: 'scan_index' has duplicate indexes, first {uniq[seen > 1][0]}")
    split = arrays.get("split", np.zeros(n_pat, dtype=np.int8))
    if split.shape != (n_pat,) or not np.isin(split, (TRAIN, TEST)).all():
        raise DatasetError(f"{path}: 'split' must be ({n_pat},) with values 0 (train) or 1 (test)")
    return scan_index, split


def _measurement_convention(meta, measurement_domain, dose_normalised, path: Path
                            ) -> tuple[str, bool]:
    """(domain 'counts' | 'amplitude', legacy dose-normalised?) from the file or the user; the
    file wins, a contradiction or an unknown is an error."""
    measurement = meta.get("measurement") or {}
    domain = measurement.get("domain") or measurement_domain
    if measurement.get("domain") and measurement_domain and measurement_domain != measurement["domain"]:
        raise DatasetError(f"{path}: file says measurement domain '{measurement['domain']}' but "
                           f"'{measurement_domain}' was stated")
    if domain is None:
        raise DatasetError(f"{path}: the measurement domain of 'diff3d' is unknown (no metadata); "
                           "state it with --measurement-domain counts|amplitude")
    if domain not in _DOMAINS:
        raise DatasetError(f"{path}: measurement domain must be one of {_DOMAINS}, got {domain!r}")
    legacy = measurement.get("dose_normalised", dose_normalised)
    if legacy is None:
        legacy = False if measurement.get("domain") else None
    if legacy is None:
        raise DatasetError(f"{path}: unknown whether 'diff3d' is divided by the dose scale; state "
                           "it (--dose-normalised / --no-dose-normalised)")
    return domain, legacy
