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


def config_file_values(args: argparse.Namespace) -> dict:
    """The flat dotted settings of --config (empty where the command has none or none is given)."""
    from ..config import load_config_file

    path = getattr(args, "config", None)
    return load_config_file(path) if path else {}


def check_n(args: argparse.Namespace, n: int) -> None:
    """A --N, or a simulation.N in the --config file, that disagrees with the data's pattern size
    ``n`` (px) is an error: N comes from the data."""
    wanted = given_n(args)
    if wanted is not None and wanted != n:
        raise ValueError(f"--N {wanted} but the data's patterns are {n} px (N comes from the "
                         "data; use --crop N to crop a CXI/ptychodus detector)")
    in_file = config_file_values(args).get("simulation.N")
    if in_file is not None and in_file != n:
        raise ValueError(f"--config {args.config}: simulation.N {in_file} but the data's patterns "
                         f"are {n} px (N comes from the data: remove simulation.N from the file, "
                         "or set data.crop_N / --crop N to crop a CXI/ptychodus detector)")


def data_config_from_args(args: argparse.Namespace, data: str | None = None):
    """config.DataConfig of a load: the --config file's ``data`` section < the data-file flags
    (commands.inspect.add_load_flags), with ``path`` = --data (or ``data``). What ``train`` and
    ``run`` record in their saved config and what :func:`load_data_from_args` applies."""
    from .inspect import data_config_of, load_flag_values

    file_data = {k.removeprefix("data."): v for k, v in config_file_values(args).items()
                 if k.startswith("data.")}
    flags = load_flag_values(args)
    origin = {k: f"--config {args.config}: data.{k}" for k in file_data if k not in flags}
    values = {**file_data, **flags}
    path = data if data is not None else getattr(args, "data", None)
    if path is not None:
        values["path"] = str(path)
    return data_config_of(values, origin)


def data_overrides(args: argparse.Namespace) -> dict:
    """Dotted overrides ``data.<field>`` of the load (empty without --data), so that the resolved
    RunConfig records exactly what :func:`load_data_from_args` applied."""
    if not getattr(args, "data", None):
        return {}
    return {f"data.{k}": v for k, v in data_config_from_args(args).model_dump().items()}


def load_data_from_args(args: argparse.Namespace, data: str | None = None):
    """(Dataset, Geometry) of ``--data`` (or ``data``) through ``ptychotrace.io.load_data``, the
    one loading function of every format (NPZ and its PtychoPINN variants, CXI, ptychodus), with
    the options of :func:`data_config_from_args` (config file section ``data`` < data-file flags:
    detector preparation, mask, probe scaling, what the file lacks) and the N checks
    (:func:`check_n`). Raises a ValueError (exit status 2) naming the file, key, flag or field;
    reads only, writes nothing."""
    from pathlib import Path

    from ..io import load_data, load_options_of

    path = Path(data if data is not None else args.data)
    options = load_options_of(data_config_from_args(args, str(path)))  # checked before reading
    if not path.is_file():
        raise FileNotFoundError(f"--data: no such file: {path}")
    ds, geom = load_data(path, options)
    check_n(args, ds.patch_size)
    return ds, geom
