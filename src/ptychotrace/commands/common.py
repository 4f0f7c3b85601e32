"""Argument helpers shared by subcommands: scenario/simulation flags and their mapping to config."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from ..config import SCENARIOS

#: CLI flag (dest) -> dotted config path, for every simulation/grouping flag.
SIMULATION_FLAGS = {
    "nphotons": "simulation.nphotons",
    "gridsize": "simulation.gridsize",
    "probe_mode": "simulation.probe_mode",
    "probe_file": "simulation.probe_file",
    "probe_scale": "simulation.probe_scale",
    "probe_mask": "simulation.probe_mask",
    "object_seed": "simulation.object_seed",
    "object_phase": "simulation.object_phase",
    "sim_seed": "simulation.sim_seed",
    "buffer": "simulation.buffer",
    "base_total_images": "simulation.base_total_images",
    "image_multiplier": "simulation.image_multiplier",
    "split_fraction": "simulation.split_fraction",
    "object_size": "simulation.object_size",
    "N": "simulation.N",
}


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


def add_simulation_flags(p: argparse.ArgumentParser, scenario_required: bool = True) -> None:
    """Flags that select and override a sim-lines scenario (defaults come from the scenario)."""
    p.add_argument("--scenario", required=scenario_required, choices=sorted(SCENARIOS),
                   help="named sim-lines scenario (physics.md section 5)")
    g = p.add_argument_group("simulation overrides (default: the scenario's value)")
    g.add_argument("--nphotons", type=positive_float, help="mean expected photons per pattern")
    g.add_argument("--gridsize", type=positive_int, help="patterns per group side (C = g^2)")
    g.add_argument("--probe-mode", choices=["ideal", "custom"])
    g.add_argument("--probe-file", help="NPZ with probeGuess (N x N complex) to use as the probe")
    g.add_argument("--probe-scale", type=positive_float, help="probe normalisation divisor")
    g.add_argument("--probe-mask", dest="probe_mask", action="store_true", default=None,
                   help="normalise the probe over the N//4 disk mask (default)")
    g.add_argument("--no-probe-mask", dest="probe_mask", action="store_false",
                   help="normalise the probe over all N x N pixels")
    g.add_argument("--object-seed", type=int)
    g.add_argument("--object-phase", choices=["zero", "tanh"])
    g.add_argument("--sim-seed", type=int)
    g.add_argument("--buffer", type=float, help="scan margin from the object edge, pixels")
    g.add_argument("--base-total-images", type=positive_int)
    g.add_argument("--image-multiplier", type=positive_int)
    g.add_argument("--split-fraction", type=float, help="fraction of patterns in the test split")
    g.add_argument("--object-size", type=positive_int, help="object side, pixels")
    g.add_argument("--N", dest="N", type=positive_int, help="patch = detector size, pixels")


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
