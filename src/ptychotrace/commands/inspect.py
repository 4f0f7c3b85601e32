"""``ptychotrace inspect FILE``: validate a dataset and summarise what matters before training."""

from __future__ import annotations

import argparse
import json

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="validate a dataset NPZ and summarise it",
                       description="Validate a dataset against the NPZ contract and print patterns, "
                                   "splits, units, dose and geometry. Exit status 2 on invalid input.")
    p.add_argument("file", help="dataset .npz")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--measurement-domain", choices=["counts", "amplitude"],
                   help="state the domain of diff3d for files without metadata")
    p.add_argument("--dose-normalised", dest="dose_normalised", action="store_true", default=None,
                   help="diff3d is divided by the dose scale (legacy_v1)")
    p.add_argument("--no-dose-normalised", dest="dose_normalised", action="store_false")
    p.add_argument("--dose-scale", type=float, help="dose scale s for legacy_v1 files")
    p.set_defaults(handler=run)


def _nn_step(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    if len(x) < 2:
        return {"median_nearest_neighbour_px": None}
    d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    return {"median_nearest_neighbour_px": float(np.median(d[:, 1])),
            "min_nearest_neighbour_px": float(d[:, 1].min())}


def summarise(ds) -> dict:
    sums = ds.counts.reshape(ds.n_patterns, -1).sum(axis=1, dtype=np.float64)
    splits = {}
    for name in ("train", "test"):
        idx = ds.indices(name)
        splits[name] = {"patterns": int(len(idx)),
                        "mean_photons_per_pattern": float(sums[idx].mean()) if len(idx) else None}
    meta = ds.metadata
    return {
        "file": meta.get("source_file"), "patterns": ds.n_patterns, "N": ds.patch_size,
        "splits": splits,
        "measurement_domain": (meta.get("measurement") or {}).get("domain", "stated by caller"),
        "converted_from": meta.get("converted_from"),
        "mean_photons_per_pattern": float(sums.mean()),
        "max_count_per_pixel": float(ds.counts.max()),
        "dose_scale": ds.dose_scale, "dose_scale_mode": (meta.get("dose") or {}).get("mode"),
        "nphotons_nominal": meta.get("nphotons"),
        "positions": {"x_min": float(ds.xcoords.min()), "x_max": float(ds.xcoords.max()),
                      "y_min": float(ds.ycoords.min()), "y_max": float(ds.ycoords.max()),
                      **_nn_step(ds.xcoords, ds.ycoords), "units": "object pixels (patch centres)"},
        "probe_energy_photons": float(np.sum(np.abs(ds.probe.astype(np.complex128)) ** 2)),
        "ground_truth": None if ds.obj is None else {"shape": list(ds.obj.shape),
                                                     "amplitude_mean": float(np.abs(ds.obj).mean())},
        "scenario": meta.get("scenario"), "generator": meta.get("generator"),
        "schema_version": meta.get("schema_version"),
    }


def run(args: argparse.Namespace) -> int:
    from ..data.dataset import load_dataset

    ds = load_dataset(args.file, measurement_domain=args.measurement_domain,
                      dose_normalised=args.dose_normalised, dose_scale=args.dose_scale)
    s = summarise(ds)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{args.file}: valid ptychotrace dataset (schema {s['schema_version']}, {s['generator']})")
    print(f"  patterns        {s['patterns']} of {s['N']}x{s['N']} px; train "
          f"{s['splits']['train']['patterns']}, test {s['splits']['test']['patterns']}")
    print(f"  measurement     {s['measurement_domain']} (loaded as photon counts)")
    print(f"  photons/pattern {s['mean_photons_per_pattern']:.4g} measured (nominal "
          f"{s['nphotons_nominal']}); max {s['max_count_per_pixel']:.4g} per pixel")
    print(f"  dose scale      {s['dose_scale']} ({s['dose_scale_mode']})")
    p = s["positions"]
    print(f"  positions       x {p['x_min']:.1f}..{p['x_max']:.1f}, y {p['y_min']:.1f}..{p['y_max']:.1f}"
          f" px; median step {p['median_nearest_neighbour_px']:.2f} px")
    print(f"  probe energy    {s['probe_energy_photons']:.4g} photons (sum |P|^2)")
    gt = s["ground_truth"]
    print("  ground truth    " + (f"yes, {gt['shape'][0]}x{gt['shape'][1]}, mean amplitude "
                                  f"{gt['amplitude_mean']:.4g}" if gt else "no"))
    return 0
