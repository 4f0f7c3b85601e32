"""``ptychotrace inspect FILE``: validate a dataset (NPZ, CXI, ptychodus) and summarise what
matters before training: patterns, splits, dose, mask, beam centre, geometry, what is unknown."""

from __future__ import annotations

import argparse
import json

import numpy as np


def add_load_flags(p: argparse.ArgumentParser) -> None:
    """Flags that state what a data file lacks and how to prepare its detector (``inspect`` and
    ``run --data`` share them; they build ``ptychotrace.io.LoadOptions``)."""
    g = p.add_argument_group("data file (NPZ, CXI, ptychodus; see docs/datasets.md)")
    g.add_argument("--format", dest="data_format", choices=["auto", "npz", "cxi", "ptychodus"],
                   help="file format (default: from the content)")
    g.add_argument("--measurement-domain", choices=["counts", "amplitude"],
                   help="state the domain of diff3d for NPZ files without metadata")
    g.add_argument("--dose-normalised", dest="dose_normalised", action="store_true", default=None,
                   help="diff3d is divided by the dose scale (legacy_v1)")
    g.add_argument("--no-dose-normalised", dest="dose_normalised", action="store_false")
    g.add_argument("--dose-scale", type=float, help="dose scale s for legacy_v1 files")
    g.add_argument("--product", help="ptychodus product file (default: product.h5 beside "
                                     "diffraction.h5)")
    g.add_argument("--cxi-translation-sign", type=int, choices=[1, -1],
                   help="+1 (default): CXI translation = probe position on the sample; -1: it is "
                        "the sample stage displacement (probe position = -translation)")
    g.add_argument("--photon-energy-ev", type=float, help="photon energy the file lacks, eV")
    g.add_argument("--detector-distance-m", type=float, help="detector distance the file lacks, m")
    g.add_argument("--detector-pixel-size-m", type=float, help="detector pixel the file lacks, m")
    g.add_argument("--crop", dest="crop_N", type=int, metavar="N",
                   help="crop the detector to N x N (after binning) around the beam centre")
    g.add_argument("--beam-centre", type=float, nargs=2, metavar=("ROW", "COL"),
                   help="beam centre in detector pixels (default: centroid of the mean pattern)")
    g.add_argument("--bin", dest="bin_factor", type=int, help="integer detector binning factor")
    g.add_argument("--saturation-count", type=float,
                   help="pixels above this count in any pattern are added to the mask")
    g.add_argument("--probe-scaling", choices=["auto", "measured", "physical"],
                   help="probe from the file: rescale to the measured photons, or take it as "
                        "physical (auto: physical only if the file says it is in sqrt(photons))")
    g.add_argument("--test-fraction", type=float,
                   help="files without a split: upper fraction in y used as the test split (0.5)")


#: Data-file flag (argparse dest) -> field of config section 'data' (config.DataConfig).
LOAD_FLAGS = {
    "data_format": "format", "measurement_domain": "measurement_domain",
    "dose_normalised": "dose_normalised", "dose_scale": "dose_scale", "product": "product",
    "cxi_translation_sign": "cxi_translation_sign", "photon_energy_ev": "photon_energy_eV",
    "detector_distance_m": "detector_distance_m",
    "detector_pixel_size_m": "detector_pixel_size_m", "crop_N": "crop_N",
    "beam_centre": "beam_centre_px", "bin_factor": "bin_factor",
    "saturation_count": "saturation_count", "probe_scaling": "probe_scaling",
    "test_fraction": "test_fraction",
}


#: The data-file flags whose name is not their dest.
FLAG_NAMES = {"data_format": "--format", "crop_N": "--crop", "bin_factor": "--bin"}


def load_flag_values(args: argparse.Namespace) -> dict:
    """{DataConfig field: value} of the data-file flags given."""
    out = {}
    for dest, name in LOAD_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def data_config_of(values: dict, origin: dict[str, str] | None = None):
    """config.DataConfig from {field: value}; a bad value is a ValueError naming where it came
    from (``origin``: {field: flag or file key}; default the field's flag)."""
    from pydantic import ValidationError

    from ..config import DataConfig

    flags = {name: FLAG_NAMES.get(dest, "--" + dest.replace("_", "-"))
             for dest, name in LOAD_FLAGS.items()}
    try:
        return DataConfig(**values)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "data"
            where = (origin or {}).get(field) or flags.get(field, f"data.{field}")
            parts.append(f"{where}: {e['msg']}")
        raise ValueError("invalid data option: " + "; ".join(parts)) from None


def load_options_from(args: argparse.Namespace, fmt: str | None = None):
    """The io.LoadOptions of the data-file flags given (``fmt`` overrides --format)."""
    from ..io import load_options_of

    values = load_flag_values(args)
    if fmt:
        values["format"] = fmt
    return load_options_of(data_config_of(values))


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="validate a data file (NPZ, CXI, ptychodus) and summarise it",
                       description="Validate a dataset and print patterns, splits, units, dose, "
                                   "detector mask, beam centre, physical geometry and what is "
                                   "unknown. Exit status 2 on invalid input; nothing is written.")
    p.add_argument("file", help="dataset .npz, .cxi, or ptychodus diffraction.h5")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_load_flags(p)
    p.set_defaults(handler=run)


def _nn_step(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    if len(x) < 2:
        return {"median_nearest_neighbour_px": None}
    d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    return {"median_nearest_neighbour_px": float(np.median(d[:, 1])),
            "min_nearest_neighbour_px": float(d[:, 1].min())}


def summarise(ds, geometry=None) -> dict:
    from ..io.detector import beam_centre

    valid = ds.valid
    flat = ds.counts.reshape(ds.n_patterns, -1)
    sums = (flat if valid is None else flat * valid.reshape(1, -1)).sum(axis=1, dtype=np.float64)
    splits = {}
    for name in ("train", "test"):
        idx = ds.indices(name)
        splits[name] = {"patterns": int(len(idx)),
                        "mean_photons_per_pattern": float(sums[idx].mean()) if len(idx) else None}
    meta = ds.metadata
    g = geometry.to_dict() if geometry is not None else meta.get("geometry")
    try:
        bc = beam_centre(ds.counts, None if valid is None else ~valid)
    except ValueError:
        bc = None
    n = ds.patch_size
    return {
        "file": meta.get("source_file"), "format": (g or {}).get("source_format", "npz"),
        "patterns": ds.n_patterns, "N": n, "splits": splits,
        "measurement_domain": (meta.get("measurement") or {}).get("domain", "stated by caller"),
        "converted_from": meta.get("converted_from"), "npz_variant": meta.get("npz_variant"),
        "mean_photons_per_pattern": float(sums.mean()),
        "photons_counted_on": "valid pixels" if valid is not None else "all pixels",
        "max_count_per_pixel": float(ds.counts.max() if valid is None else ds.counts[:, valid].max()),
        "mask": {"masked_pixels": 0 if valid is None else int((~valid).sum()),
                 "masked_fraction": ds.masked_fraction, "present": valid is not None},
        "beam_centre_px": None if bc is None else {
            "row": bc[0], "col": bc[1], "offset_from_dc_row": bc[0] - n // 2,
            "offset_from_dc_col": bc[1] - n // 2,
            "note": "intensity centroid of the mean pattern (prepared frame; DC pixel at N//2)"},
        "dose_scale": ds.dose_scale, "dose_scale_mode": (meta.get("dose") or {}).get("mode"),
        "nphotons_nominal": meta.get("nphotons"),
        "positions": {"x_min": float(ds.xcoords.min()), "x_max": float(ds.xcoords.max()),
                      "y_min": float(ds.ycoords.min()), "y_max": float(ds.ycoords.max()),
                      **_nn_step(ds.xcoords, ds.ycoords), "units": "object pixels (patch centres)"},
        "probe_energy_photons": float(np.sum(np.abs(ds.probe.astype(np.complex128)) ** 2)),
        "ground_truth": None if ds.obj is None else {"shape": list(ds.obj.shape),
                                                     "amplitude_mean": float(np.abs(ds.obj).mean())},
        "geometry": g, "unknown": list((g or {}).get("missing") or []),
        "scenario": meta.get("scenario"), "generator": meta.get("generator"),
        "schema_version": meta.get("schema_version"),
    }


def _length(m: float | None) -> str:
    if m is None:
        return "unknown"
    for unit, f in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9)):
        if abs(m) >= f:
            return f"{m / f:.4g} {unit}"
    return f"{m * 1e12:.4g} pm"


def run(args: argparse.Namespace) -> int:
    from ..io import load_data

    ds, geom = load_data(args.file, load_options_from(args))
    s = summarise(ds, geom)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    g = s["geometry"] or {}
    origin = f"schema {s['schema_version']}, {s['generator']}" if s["format"] == "npz" and \
        s["schema_version"] else s["format"]
    print(f"{args.file}: valid {s['format']} dataset ({origin})")
    print(f"  patterns        {s['patterns']} of {s['N']}x{s['N']} px; train "
          f"{s['splits']['train']['patterns']}, test {s['splits']['test']['patterns']}")
    print(f"  measurement     {s['measurement_domain']} (loaded as photon counts)")
    if s["npz_variant"]:
        print(f"  npz variant     {'; '.join(s['npz_variant'])}")
    print(f"  photons/pattern {s['mean_photons_per_pattern']:.4g} measured on {s['photons_counted_on']}"
          f" (nominal {s['nphotons_nominal'] or 'unknown'}); max {s['max_count_per_pixel']:.4g} per pixel")
    m = s["mask"]
    print("  detector mask   " + (f"{m['masked_pixels']} pixels masked ({100 * m['masked_fraction']:.3g}%)"
                                   if m["present"] else "none (every pixel used)"))
    bc = s["beam_centre_px"]
    if bc:
        print(f"  beam centre     row {bc['row']:.2f}, col {bc['col']:.2f} (DC pixel {s['N'] // 2}; "
              f"offset {bc['offset_from_dc_row']:+.2f}, {bc['offset_from_dc_col']:+.2f} px)")
    det = g.get("detector") or {}
    if det.get("crop_box") or det.get("bin_factor", 1) > 1 or det.get("saturation_count"):
        print(f"  detector prep   from {det['original_shape']}: crop {det.get('crop_box')} around "
              f"{det.get('beam_centre_px')} ({det.get('beam_centre_from')}), bin {det.get('bin_factor')},"
              f" saturation {det.get('saturation_count')} ({det.get('saturated_pixels')} px)")
    print(f"  dose scale      {s['dose_scale']} ({s['dose_scale_mode']})")
    p = s["positions"]
    step = p["median_nearest_neighbour_px"]
    print(f"  positions       x {p['x_min']:.1f}..{p['x_max']:.1f}, y {p['y_min']:.1f}..{p['y_max']:.1f}"
          f" px; median step " + ("n/a" if step is None else f"{step:.2f} px"))
    if g.get("photon_energy_eV"):
        print(f"  photon energy   {g['photon_energy_eV']:.6g} eV (wavelength {_length(g['wavelength_m'])})")
        print(f"  detector        distance {_length(g['detector_distance_m'])}, pixel "
              f"{_length(g['detector_pixel_width_m'])} x {_length(g['detector_pixel_height_m'])}")
        print(f"  object pixel    {_length(g['object_pixel_width_m'])} x "
              f"{_length(g['object_pixel_height_m'])} (wavelength x distance / (N x pixel)); "
              f"field of view {_length(g['object_pixel_width_m'] * s['N'])}")
        fr = g.get("object_frame") or {}
        if fr:
            print(f"  object frame    {fr['height_px']}x{fr['width_px']} px centred at "
                  f"({_length(fr['center_x_m'])}, {_length(fr['center_y_m'])}) [{fr['chosen_from']}]")
    if g.get("position_convention"):
        print(f"  positions from  {g['position_convention']}")
    ps = g.get("probe_scaling") or {}
    print(f"  probe energy    {s['probe_energy_photons']:.4g} photons (sum |P|^2)"
          + (f"; {ps['stage']} (x{ps['factor']:.4g})" if ps else ""))
    if g.get("probe_modes_in_file", 1) and (g.get("probe_modes_in_file") or 1) > 1:
        print(f"  probe modes     {g['probe_modes_in_file']} in the file; mode 0 used")
    gt = s["ground_truth"]
    print("  ground truth    " + (f"yes, {gt['shape'][0]}x{gt['shape'][1]}, mean amplitude "
                                  f"{gt['amplitude_mean']:.4g}" if gt else "no"))
    for note in g.get("notes") or []:
        print(f"  note            {note}")
    for u in s["unknown"]:
        print(f"  unknown: {u}")
    return 0
