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


def given_n(args: argparse.Namespace) -> int | None:
    """The --N the user gave (config field simulation.N; None where not given or not a flag)."""
    return getattr(args, "cfg__simulation__N", None)


def check_n(args: argparse.Namespace, n: int) -> None:
    """A given --N that disagrees with the data's pattern size ``n`` (px) is an error."""
    wanted = given_n(args)
    if wanted is not None and wanted != n:
        raise ValueError(f"--N {wanted} but the data's patterns are {n} px (N comes from the "
                         "data; use --crop N to crop a CXI/ptychodus detector)")


def load_data_from_args(args: argparse.Namespace, data: str | None = None):
    """(Dataset, Geometry) of ``--data`` (or ``data``) through ``ptychotrace.io.load_data``, the
    one loading function of every format (NPZ and its PtychoPINN variants, CXI, ptychodus), with
    the data-file flags of :func:`ptychotrace.commands.inspect.add_load_flags` (detector
    preparation, mask, probe scaling, what the file lacks) and the --N check. Raises a ValueError
    (exit status 2) naming the file, key or flag; reads only, writes nothing."""
    from pathlib import Path

    from ..io import load_data
    from .inspect import load_options_from

    path = Path(data if data is not None else args.data)
    if not path.is_file():
        raise FileNotFoundError(f"--data: no such file: {path}")
    ds, geom = load_data(path, load_options_from(args))
    check_n(args, ds.patch_size)
    return ds, geom
