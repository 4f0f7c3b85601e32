"""``ptychotrace report DIR``: one self-contained HTML page (and a Markdown twin) for a run, sweep
or analyze directory."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report (and a Markdown twin) for a directory",
                       description="Write one self-contained HTML page (inline CSS, embedded "
                                   "images, no scripts) and a Markdown twin for DIR: a run "
                                   "directory (run_metadata.json), a sweep directory "
                                   "(sweep_summary.json) or an analyze directory "
                                   "(bias_summary.json). Missing optional files are reported in "
                                   "the page, not fatal.")
    p.add_argument("directory", metavar="DIR", help="run, sweep or analyze directory")
    p.add_argument("--output", metavar="FILE",
                   help="HTML file to write (default DIR/report.html); the Markdown twin takes "
                        "the same name with .md, generated figures go to <name>_files/")
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    result = build_report(args.directory, args.output, force=args.force)
    print(f"wrote {result.html} and {result.markdown} ({result.kind} report"
          + (f", {len(result.figures)} generated figure(s) in {result.figures[0].parent}"
             if result.figures else "") + ")")
    return 0
