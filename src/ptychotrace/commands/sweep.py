"""``ptychotrace sweep``: one scenario over several doses and seeds (PINN, optionally the iterative
baseline on identical data), resumable and parallel; see :mod:`ptychotrace.sweep.sweep`."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from .common import positive_int


def nphotons_list(text: str) -> list[float]:
    """argparse type for ``--nphotons 1e3,1e4,...``."""
    from ..sweep.sweep import parse_nphotons

    try:
        return parse_nphotons(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
    from .run import add_run_flags

    p = sub.add_parser(
        "sweep", conflict_handler="resolve",
        help="run a scenario over several doses and seeds (optionally with the iterative baseline)",
        description="Run SCENARIO at every dose of --nphotons and every seed, each point a normal "
                    "run directory under OUTPUT_DIR/runs/; with --with-baseline the iterative "
                    "baseline reconstructs the identical simulated data (OUTPUT_DIR/baseline/). "
                    "Finished points are skipped on a rerun (resume); failed ones are redone. "
                    "Writes sweep_summary.json/.md and quality/bias/time-vs-dose figures. Every "
                    "'run' flag is accepted and applies to every point.")
    add_run_flags(p, with_baseline=True)   # --baseline-<field> for every BaselineConfig field
    g = p.add_argument_group("sweep")
    g.add_argument("--nphotons", type=nphotons_list, required=True, metavar="LIST",
                   help="comma-separated doses in photons per pattern, e.g. 1e3,1e4,1e5,1e6,1e7,1e9")
    g.add_argument("--seeds", type=positive_int, default=1,
                   help="seeds per dose (seed k: sim_seed = base + k and training seed = base + k; "
                        "bases from --sim-seed/--seed or the scenario)")
    g.add_argument("--jobs", type=positive_int, default=1,
                   help="points run in parallel (separate processes; each gets cores // jobs "
                        "torch threads)")
    g.add_argument("--with-baseline", action="store_true",
                   help="also run the iterative baseline on each point's data (settings: the "
                        "--baseline-* flags; its seed defaults to each point's training seed)")
    p.add_argument("--output-dir", required=True, help="sweep directory (reused: resume)")
    p.add_argument("--force", action="store_true",
                   help="redo every point, also finished ones (old directories are moved aside)")
    p.set_defaults(handler=run)


def plan_from_args(args: argparse.Namespace):
    """The sweep plan for parsed flags (raises ValueError on inconsistent flags)."""
    from ..sweep.sweep import BaselineOptions, plan_sweep
    from .run import cli_record, request_from_args

    if getattr(args, "data", None):
        raise ValueError("--data cannot be swept: the sweep simulates each dose (drop --data)")
    given = [d for d in vars(args) if d.startswith("cfg__baseline__")
             and getattr(args, d) is not None]
    if given and not args.with_baseline:
        flags = ", ".join("--baseline-" + d.removeprefix("cfg__baseline__").replace("_", "-")
                          for d in given)
        raise ValueError(f"{flags} needs --with-baseline")
    doses = args.nphotons
    if isinstance(doses, str):  # programmatic callers may pass the raw text
        doses = nphotons_list(doses)
    base = copy.copy(args)
    base.nphotons = None
    base.force = False  # each point decides (resume); the sweep's --force is handled by the plan
    cli = cli_record(args)

    def make_request(run_dir: Path, overrides: dict):
        return request_from_args(base, run_dir, extra_overrides=overrides)

    plan = plan_sweep(args.scenario, doses, args.seeds, Path(args.output_dir), make_request,
                      jobs=args.jobs, force=bool(args.force), progress=not args.quiet,
                      cli_args=cli)
    plan.baseline = BaselineOptions.from_config(plan.points[0].request.config.baseline,
                                                enabled=bool(args.with_baseline))
    return plan


def run(args: argparse.Namespace) -> int:
    from ..sweep.sweep import SUMMARY_JSON, SUMMARY_MD, run_sweep

    plan = plan_from_args(args)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    summary = run_sweep(plan)
    out = plan.output_dir
    print(f"\nsweep {summary['status']}: {len(plan.points)} points, "
          f"{len(summary['skipped'])} parts skipped (finished), {len(summary['failed'])} failed")
    for f in summary["failed"]:
        print(f"  failed: {f['name']} ({f['method']}, stage {f.get('stage')}): {f.get('error')}",
              file=sys.stderr)
    print(f"  look at: {out / SUMMARY_MD}, {out / SUMMARY_JSON}, {out}/quality_vs_dose.png")
    return 0 if summary["status"] == "ok" else 1
