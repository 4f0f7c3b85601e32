"""``ptychotrace analyze``: per run, healthy or the stage at fault (with evidence and the next
thing to check), decided by the rules of analysis/rules.py; the bias summary across runs."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="compare runs; write bias_summary.json/.md and a figure",
                       description="Read run directories (NAME=DIR) and write bias_summary.json, "
                                   "bias_summary.md and bias_summary.png: per run a verdict "
                                   "(healthy, or the stage at fault with its evidence and the "
                                   "next thing to check; the data consistency of the "
                                   "reconstruction and of the truth comes first), amplitude/"
                                   "phase bias, scale chain ratios, split parity, labels vs "
                                   "truth.")
    p.add_argument("--scenario", dest="scenarios", action="append", required=True,
                   metavar="NAME=DIR", help="a run to include (repeat for several)")
    p.add_argument("--output-dir", required=True, help="where the bias summary is written")
    p.add_argument("--no-figure", action="store_true", help="skip bias_summary.png")
    p.add_argument("--force", action="store_true", help="replace an existing bias summary")
    p.add_argument("--rescore", action="store_true",
                   help="first write the data-consistency record (consistency/) of runs made "
                        "before it existed, by re-running their recorded model and inference on "
                        "their recorded data (checked against the run's photons; nothing the "
                        "run wrote is changed)")
    p.add_argument("--rescore-data", action="append", default=[], metavar="NAME=FILE",
                   help="with --rescore: the data file of run NAME (when it moved, or the run "
                        "read data in memory)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.bias import analyze_runs, parse_scenario_args

    runs = parse_scenario_args(args.scenarios)
    if args.rescore_data and not args.rescore:
        raise ValueError("--rescore-data needs --rescore")
    if args.rescore:
        _rescore(runs, args.rescore_data)
    summary = analyze_runs(runs, args.output_dir, figure=not args.no_figure, force=args.force)
    print(f"wrote {args.output_dir}/bias_summary.md and bias_summary.json "
          f"({summary['scenario_count']} scenario(s))")
    for line in summary["verdict_lines"].values():
        print(f"  {line}")
    return 0


def _rescore(runs: dict, data_args: list[str]) -> None:
    """Rescore every run without a consistency record (analysis/rescore.py)."""
    from pathlib import Path

    from ..analysis.rescore import rescore_run
    from ..evaluate.consistency_record import load_consistency

    data = {}
    for item in data_args:
        name, sep, path = item.partition("=")
        if not sep or name not in runs:
            raise ValueError(f"--rescore-data {item!r}: expected NAME=FILE with NAME one of "
                             f"{', '.join(runs)}")
        data[name] = Path(path)
    for name, run_dir in runs.items():
        if load_consistency(run_dir) is not None:
            print(f"  {name}: has a consistency record; not rescored")
            continue
        rec = rescore_run(run_dir, data.get(name), log=lambda m: print(f"  {m}"))
        final = rec.final.normalised_median if rec.final is not None else None
        print(f"  {name}: rescored (final median normalised deviance {final:.4g})"
              if final is not None else f"  {name}: rescored")
