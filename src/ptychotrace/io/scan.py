"""From a file's raw scan (frames, mask, positions in metres, probe, geometry) to a Dataset.

The format readers (cxi.py, ptychodus.py) fill a :class:`RawScan` with what the file holds and
the HDF5 key each quantity came from; :func:`build_dataset` applies the user's statements
(:class:`LoadOptions`), prepares the detector, derives the object pixel size, converts the
positions to object pixels once, scales the probe, and validates the result through the NPZ
contract's own validator (one validation path for every format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.dataset import DatasetError, dataset_from_arrays
from ..physics.scan import split_by_y
from .detector import prepare_detector
from .geometry import (
    Geometry,
    ObjectFrame,
    energy_ev_to_wavelength_m,
    frame_for_positions,
    object_pixel_size_m,
    wavelength_m_to_energy_ev,
)


class LoadOptions(BaseModel):
    """What the user states about a file (CLI flags of ``inspect`` and ``run --data``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["auto", "npz", "cxi", "ptychodus"] = "auto"
    # NPZ files without metadata (see docs/datasets.md)
    measurement_domain: Literal["counts", "amplitude"] | None = None
    dose_normalised: bool | None = None
    dose_scale: float | None = Field(None, gt=0)
    # ptychodus: the product file that goes with diffraction.h5 (default: product.h5 beside it)
    product: Path | None = None
    # CXI: +1 = translation is the probe position on the sample (ptychodus's convention), -1 =
    # translation is the sample stage displacement (probe position = -translation)
    cxi_translation_sign: Literal[1, -1] = 1
    # values the file lacks (never override a value the file has: a conflict is an error)
    photon_energy_eV: float | None = Field(None, gt=0)
    detector_distance_m: float | None = Field(None, gt=0)
    detector_pixel_size_m: float | None = Field(None, gt=0)
    # detector preparation
    N: int | None = Field(None, ge=8)
    beam_centre: tuple[float, float] | None = None
    bin_factor: int = Field(1, ge=1)
    saturation_count: float | None = Field(None, gt=0)
    # probe: 'auto' = physical if the file says its probe is in sqrt(photons), else 'measured'
    probe_scaling: Literal["auto", "measured", "physical"] = "auto"
    test_fraction: float = Field(0.5, gt=0, lt=1, description="files without a split: the "
                                 "upper fraction in y is the test split (as in simulation)")


#: RunConfig.data field -> LoadOptions field, where the names differ (the config's say units).
_CONFIG_NAMES = {"crop_N": "N", "beam_centre_px": "beam_centre"}


def load_options_of(data) -> LoadOptions:
    """The LoadOptions of a ``RunConfig.data`` section (config.DataConfig): the one place where
    the recorded data options become the loader's; ``path`` is provenance, not an option."""
    fields = data.model_dump(exclude={"path"})
    return LoadOptions(**{_CONFIG_NAMES.get(k, k): v for k, v in fields.items()})


@dataclass
class RawScan:
    """What one file holds, in the file's units. ``keys`` names where each quantity came from
    (for messages); ``missing`` collects 'label (key)' for quantities the file lacks."""

    source_format: str
    path: Path
    counts: np.ndarray                          # (P, H, W) photons
    x_m: np.ndarray                             # (P,) probe positions, metres
    y_m: np.ndarray
    keys: dict[str, str]
    bad: np.ndarray | None = None               # (H, W) bool, True = bad
    probe: np.ndarray | None = None             # (..., N, N) complex, modes first
    probe_physical: bool = False                # the file says: probe in sqrt(photons)
    photon_energy_eV: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_width_m: float | None = None
    detector_pixel_height_m: float | None = None
    frame: dict[str, Any] | None = None         # {"shape": (H, W), "center_x_m", "center_y_m"}
    obj: np.ndarray | None = None               # ground truth in that frame, if the file has one
    scan_index: np.ndarray | None = None
    split: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    position_convention: str | None = None


def _stated(file_value: float | None, stated: float | None, label: str, key: str, flag: str,
            path: Path) -> float | None:
    if file_value is not None and stated is not None and not np.isclose(file_value, stated,
                                                                         rtol=1e-9, atol=0):
        raise DatasetError(f"{path}: {key} says {label} {file_value:.6g} but {flag} says "
                           f"{stated:.6g}; remove the flag or fix the file")
    value = file_value if file_value is not None else stated
    if value is not None and not (np.isfinite(value) and value > 0):
        raise DatasetError(f"{path}: {key}: {label} must be a positive number, got {value}")
    return value


def _check_positions(raw: RawScan) -> None:
    p = raw.counts.shape[0]
    for axis, a in (("x", raw.x_m), ("y", raw.y_m)):
        key = raw.keys[f"position_{axis}"]
        if a.shape != (p,):
            raise DatasetError(f"{raw.path}: {key} has {a.shape[0] if a.ndim else 0} positions but "
                               f"{raw.keys['counts']} has {p} patterns")
        bad = ~np.isfinite(a)
        if bad.any():
            raise DatasetError(f"{raw.path}: {key} has {int(bad.sum())} NaN/Inf positions, first at "
                               f"index {int(np.flatnonzero(bad)[0])}")


def _probe_mode0(raw: RawScan, n: int) -> tuple[np.ndarray, int]:
    key = raw.keys.get("probe", "probe")
    if raw.probe is None:
        raise DatasetError(f"{raw.path}: no probe ({key}); ptychotrace needs an initial probe")
    pr = np.asarray(raw.probe)
    if pr.ndim >= 2 and pr.shape[-2] == pr.shape[-1] and pr.shape[-1] > n:
        # binning by b shrinks the real-space field of view by b at the same object pixel
        # size: keep the probe's central N x N (its pixels are the same size)
        c0 = (pr.shape[-1] - n) // 2
        full = float(np.sum(np.abs(pr.reshape(-1, *pr.shape[-2:])[0]) ** 2))
        pr = pr[..., c0:c0 + n, c0:c0 + n]
        kept = float(np.sum(np.abs(pr.reshape(-1, n, n)[0]) ** 2)) / full if full > 0 else 1.0
        raw.notes.append(f"probe cropped to its central {n}x{n} (field of view of the binned "
                         f"patterns); {100 * kept:.3g}% of mode 0's power kept")
    if pr.ndim < 2 or pr.shape[-2:] != (n, n):
        raise DatasetError(f"{raw.path}: {key} must end in {n}x{n} (the prepared patterns), got "
                           f"shape {pr.shape}")
    if pr.dtype.kind not in "fc":
        raise DatasetError(f"{raw.path}: {key} must be complex, got {pr.dtype}")
    modes = int(np.prod(pr.shape[:-2])) if pr.ndim > 2 else 1
    return pr.reshape(-1, n, n)[0].astype(np.complex64), modes


def _scale_probe(probe: np.ndarray, counts: np.ndarray, valid: np.ndarray | None, mode: str,
                 physical_in_file: bool) -> tuple[np.ndarray, dict]:
    """Probe in sqrt(photons). 'measured': s^2 = mean_j sum_valid I_j / sum_valid |F(P)|^2, the
    scale at which a unit-amplitude object reproduces the measured photons on the good pixels."""
    if mode == "physical" or (mode == "auto" and physical_in_file):
        return probe, {"stage": "probe_taken_as_physical", "factor": 1.0,
                       "reason": "stated by the user" if mode == "physical" else
                       "the file records the probe in sqrt(photons)"}
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe.astype(np.complex128), norm="ortho"))) ** 2
    sums = counts.astype(np.float64)
    if valid is not None:
        far, sums = far * valid, sums * valid
    measured = float(sums.sum(axis=(1, 2)).mean())
    model = float(far.sum())
    if not (measured > 0 and model > 0):
        raise DatasetError("cannot scale the probe: no photons (or no probe power) on good pixels")
    s = float(np.sqrt(measured / model))
    return (probe * np.float32(s)).astype(np.complex64), {
        "stage": "probe_rescaled_to_measured_counts", "factor": s,
        "measured_photons_per_pattern_valid_pixels": measured,
        "probe_far_field_sum_valid_pixels_before": model,
        "formula": "s = sqrt(mean_j sum_valid I_j / sum_valid |F(P)|^2) (unit-amplitude object)",
        "reason": "probe at an arbitrary scale in the file"}


def build_dataset(raw: RawScan, opts: LoadOptions):
    """RawScan + options -> (Dataset, Geometry). Errors name the file and the key."""
    path = raw.path
    counts = _checked_counts(raw)
    _check_positions(raw)
    energy, dist, pw, ph = _stated_geometry(raw, opts)

    counts, bad, prep = prepare_detector(counts, raw.bad, opts.N, opts.beam_centre, opts.bin_factor,
                                         opts.saturation_count, source=str(path))
    n = counts.shape[-1]
    valid = None if bad is None else ~bad
    wl = energy_ev_to_wavelength_m(energy)
    pw, ph = pw * opts.bin_factor, ph * opts.bin_factor
    opw, oph = object_pixel_size_m(wl, dist, n, pw), object_pixel_size_m(wl, dist, n, ph)
    frame, xs, ys = _frame_and_pixels(raw, opw, oph, n)

    probe, modes = _probe_mode0(raw, n)
    probe, scaling = _scale_probe(probe, counts, valid, opts.probe_scaling, raw.probe_physical)
    split = raw.split
    if split is None:
        train, test = split_by_y(ys, opts.test_fraction)
        split = np.zeros(len(ys), np.int8)
        split[test] = 1
    notes = list(raw.notes) + ([f"probe: mode 0 of {modes} used"] if modes > 1 else [])
    geom = Geometry(
        source_format=raw.source_format, source_file=str(path), photon_energy_eV=energy,
        wavelength_m=wl, detector_distance_m=dist, detector_pixel_width_m=pw,
        detector_pixel_height_m=ph, N=n, object_pixel_width_m=opw, object_pixel_height_m=oph,
        object_frame=frame, position_convention=raw.position_convention,
        probe_modes_in_file=modes, probe_mode_used=0, probe_scaling=scaling, detector=prep,
        notes=notes)
    meta = {**raw.metadata, "measurement": {"domain": "counts", "dose_normalised": False,
                                            "units": "photons per pixel"},
            "probe_units": "sqrt_photons", "geometry": geom.to_dict(), "source_file": str(path)}
    arrays = {"diff3d": counts, "xcoords": xs, "ycoords": ys, "probeGuess": probe,
              "scan_index": np.arange(len(xs)) if raw.scan_index is None else raw.scan_index,
              "split": np.asarray(split, np.int8), "metadata": np.array(json.dumps(meta))}
    if raw.obj is not None:
        arrays["objectGuess"] = raw.obj
    if bad is not None:
        arrays["bad_pixels"] = bad
    return dataset_from_arrays(arrays, path), geom


def _checked_counts(raw: RawScan) -> np.ndarray:
    """The detector frames (P, H, W), numeric and non-empty (integers as float32), with a mask
    of the frames' shape."""
    path = raw.path
    counts = np.asarray(raw.counts)
    key_c = raw.keys["counts"]
    if counts.ndim != 3 or min(counts.shape) == 0:
        raise DatasetError(f"{path}: {key_c} must be a non-empty (P, H, W) stack, got {counts.shape}")
    if counts.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: {key_c} must be numeric, got {counts.dtype}")
    counts = counts.astype(np.float32) if counts.dtype.kind in "iu" else counts
    if raw.bad is not None and raw.bad.shape != counts.shape[1:]:
        raise DatasetError(f"{path}: {raw.keys.get('mask', 'mask')} has shape {raw.bad.shape} but "
                           f"the detector frames are {counts.shape[1]}x{counts.shape[2]}")
    return counts


def _stated_geometry(raw: RawScan, opts: LoadOptions) -> tuple[float, float, float, float]:
    """(photon energy eV, detector distance m, detector pixel width m, height m): the file's or
    the user's; any missing one is an error naming the key and the flag."""
    path = raw.path
    missing = []
    energy = _stated(raw.photon_energy_eV, opts.photon_energy_eV, "photon energy (eV)",
                     raw.keys.get("energy", "energy"), "--photon-energy-ev", path)
    dist = _stated(raw.detector_distance_m, opts.detector_distance_m, "detector distance (m)",
                   raw.keys.get("distance", "distance"), "--detector-distance-m", path)
    pw = _stated(raw.detector_pixel_width_m, opts.detector_pixel_size_m, "detector pixel width (m)",
                 raw.keys.get("pixel_width", "pixel width"), "--detector-pixel-size-m", path)
    ph = _stated(raw.detector_pixel_height_m, opts.detector_pixel_size_m,
                 "detector pixel height (m)", raw.keys.get("pixel_height", "pixel height"),
                 "--detector-pixel-size-m", path)
    for label, value, key, flag in (
            ("photon energy", energy, "energy", "--photon-energy-ev"),
            ("detector distance", dist, "distance", "--detector-distance-m"),
            ("detector pixel width", pw, "pixel_width", "--detector-pixel-size-m"),
            ("detector pixel height", ph, "pixel_height", "--detector-pixel-size-m")):
        if value is None:
            missing.append(f"{label} (the file has no {raw.keys.get(key, key)}; state it with {flag})")
    if missing:
        raise DatasetError(f"{path}: positions are in metres but the object pixel size cannot be "
                           "derived; missing " + "; ".join(missing))
    return energy, dist, pw, ph


def _frame_and_pixels(raw: RawScan, opw: float, oph: float, n: int):
    """(ObjectFrame, x px, y px): the file's object frame where its pixels agree with the
    geometry, else one fitted to the scan; every position must fall inside it."""
    path = raw.path
    frame_px = (raw.frame or {}).get("pixel_m")
    if frame_px is not None and not np.allclose(frame_px, (opw, oph), rtol=1e-6, atol=0):
        raw.notes.append(f"the file's object pixels ({frame_px[0]:.6g} x {frame_px[1]:.6g} m) differ "
                         f"from wavelength*distance/(N*pixel) = {opw:.6g} x {oph:.6g} m: its object "
                         "array is not used and the frame is taken from the scan extent")
        raw.frame, raw.obj = None, None
    if raw.frame is not None:
        h, w = raw.frame["shape"]
        frame = ObjectFrame(height_px=int(h), width_px=int(w), center_x_m=raw.frame["center_x_m"],
                            center_y_m=raw.frame["center_y_m"], pixel_width_m=opw,
                            pixel_height_m=oph, chosen_from=raw.frame.get("from", "file"))
    else:
        frame = frame_for_positions(raw.x_m, raw.y_m, opw, oph, n)
    xs, ys = frame.to_pixels(raw.x_m, raw.y_m)
    out = (xs < 0) | (xs > frame.width_px - 1) | (ys < 0) | (ys > frame.height_px - 1)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise DatasetError(f"{path}: {int(out.sum())} positions fall outside the {frame.height_px}x"
                           f"{frame.width_px} px object frame, first index {i} at x={xs[i]:.1f}, "
                           f"y={ys[i]:.1f} px (check the units and the sign of the positions)")
    return frame, xs, ys


def wavelength_to_energy(wavelength_m: float) -> float:
    return wavelength_m_to_energy_ev(wavelength_m)
