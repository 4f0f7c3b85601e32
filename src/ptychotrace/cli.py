"""``ptychotrace`` entry point: one command, one subcommand per pipeline step."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: Subcommand modules under ptychotrace.commands, in the order shown by --help.
COMMANDS = ("simulate", "inspect", "train", "infer", "run", "analyze", "sweep", "baseline", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychotrace",
        description="Physics-informed neural network ptychography with end-to-end scale "
                    "telemetry: simulate -> train -> infer -> stitch -> compare -> analyze.")
    parser.add_argument("--version", action="version", version=f"ptychotrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__package__}.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        # Input errors: one clear line, no traceback (the message names the file/flag/key).
        print(f"ptychotrace {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
