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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.bias import analyze_runs, parse_scenario_args

    runs = parse_scenario_args(args.scenarios)
    summary = analyze_runs(runs, args.output_dir, figure=not args.no_figure, force=args.force)
    print(f"wrote {args.output_dir}/bias_summary.md and bias_summary.json "
          f"({summary['scenario_count']} scenario(s))")
    for line in summary["verdict_lines"].values():
        print(f"  {line}")
    return 0
