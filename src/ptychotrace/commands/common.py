"""Argument helpers shared by subcommands (config flags are generated: see commands.flags)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def overrides_from(args: argparse.Namespace, mapping: dict[str, str]) -> dict:
    """Dotted-path overrides for the flags the user actually gave."""
    return {path: getattr(args, dest) for dest, path in mapping.items()
            if getattr(args, dest, None) is not None}


@contextmanager
def progress_bar(description: str, enabled: bool = True):
    """A rich progress bar; yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TimeRemainingColumn(),
                  transient=True) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update
