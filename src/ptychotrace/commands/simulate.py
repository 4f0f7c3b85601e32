"""``ptychotrace simulate``: write a sim-lines dataset (both splits in one NPZ)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import progress_bar
from .flags import add_config_flags, overrides_from_flags


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a sim-lines scenario into a dataset NPZ",
                       description="Simulate a sim-lines dataset: lines object, probe, random scan, "
                                   "Poisson counts at the requested dose. Both splits go into one "
                                   "NPZ with a per-pattern 'split' label (0 train, 1 test).")
    from ..config import SCENARIOS

    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS),
                   help="named sim-lines scenario (physics.md section 5)")
    add_config_flags(p, {"simulation": ""},
                     title="simulation overrides (default: the scenario's value)")
    p.add_argument("--output", required=True, help="output .npz path")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import resolve_scenario
    from ..data.dataset import save_dataset
    from ..simulate import simulate

    out = Path(args.output)
    if out.suffix != ".npz":
        raise ValueError(f"--output must end in .npz, got {out}")
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    config, profile, warnings = resolve_scenario(args.scenario, overrides_from_flags(args))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    with progress_bar("simulating", enabled=not args.no_progress and not args.json) as update:
        ds, record = simulate(config.simulation, progress=update, scenario=args.scenario)
    save_dataset(out, ds, force=args.force)
    summary = {
        "output": str(out), "scenario": args.scenario, **record["counts"],
        "measured_photons_per_pattern": record["measured_photons_per_pattern"],
        "dose_scale": record["dataset_scale_info"]["dataset_scale"],
        "dose_scale_mode": record["dataset_scale_info"]["used_mode"],
        "probe_energy_normalised": record["probe"]["energy"],
        "probe_energy_photons": record["probe"]["physical_energy_photons"],
        "train_vs_test_deviation_pct": record["split_intensity_stats"]["train_vs_test_deviation_pct"],
        "profile_applied": profile["applied"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    m = record["measured_photons_per_pattern"]
    print(f"wrote {out}")
    print(f"  scenario {args.scenario}: {summary['total_images']} patterns of "
          f"{summary['N']}x{summary['N']} (train {summary['train_count']}, test "
          f"{summary['test_count']}), gridsize {summary['gridsize']}")
    print(f"  measured photons/pattern: train {m['train']:.4g}, test {m['test']:.4g}, all "
          f"{m['all']:.4g} (target nphotons {config.simulation.nphotons:.4g}, set on train)")
    print(f"  dose scale s = {summary['dose_scale']:.6g} sqrt(photons) ({summary['dose_scale_mode']}"
          f" mode); physical probe energy {summary['probe_energy_photons']:.4g} photons")
    return 0
