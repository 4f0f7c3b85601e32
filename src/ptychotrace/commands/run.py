"""``ptychotrace run``: one scenario from simulation to comparison, with full scale telemetry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import SIMULATION_FLAGS, add_simulation_flags, overrides_from, positive_float, positive_int
from .train import CORPUS_FLAGS, add_corpus_flags

#: run-only flags (dest) -> dotted config path
RUN_FLAGS = {
    **SIMULATION_FLAGS,
    "group_count": "grouping.group_count",
    "group_multiplier": "grouping.group_multiplier",
    "neighbor_count": "grouping.neighbor_count",
    "nepochs": "training.nepochs",
    "batch_size": "training.batch_size",
    "lr": "training.lr",
    "width": "training.width",
    "seed": "training.seed",
    "device": "training.device",
    "object_support": "training.object_support",
    "group_limit": "inference.group_limit",
    "stitch_window": "inference.stitch_window",
    "prediction_scale_source": "evaluation.prediction_scale_source",
    "amp_vmax": "evaluation.amp_vmax",
    **CORPUS_FLAGS,
}


def add_run_flags(p: argparse.ArgumentParser, scenario_required: bool = True) -> None:
    """Every flag of ``run`` (``sweep`` accepts the same and passes them to each run)."""
    add_simulation_flags(p, scenario_required=scenario_required)
    g = p.add_argument_group("grouping, training, inference, evaluation")
    g.add_argument("--group-count", type=positive_int, help="groups per split")
    g.add_argument("--group-multiplier", type=positive_int, help="factor on --group-count")
    g.add_argument("--neighbor-count", type=positive_int, help="K nearest neighbours per group")
    g.add_argument("--nepochs", type=positive_int, help="training epochs (default 5)")
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--lr", type=positive_float, help="Adam learning rate (default 1e-3)")
    g.add_argument("--width", type=positive_int, help="model width multiplier")
    g.add_argument("--seed", type=int, help="training seed")
    g.add_argument("--device", help="auto (default), cpu, cuda, mps")
    g.add_argument("--probe-big", dest="object_support", action="store_const", const="full",
                   help="reconstruct the full N x N patch (default)")
    g.add_argument("--no-probe-big", dest="object_support", action="store_const", const="central",
                   help="confine the predicted object to the central N/2 region")
    g.add_argument("--group-limit", type=positive_int, help="cap on test groups used at inference")
    g.add_argument("--stitch-window", type=positive_int, help="central M x M kept per patch (20)")
    g.add_argument("--prediction-scale-source", choices=["none", "recorded", "least_squares"],
                   help="amplitude scale applied before comparison (default none)")
    g.add_argument("--amp-vmax", type=positive_float, help="display max of amplitude PNGs")
    add_corpus_flags(p)
    io = p.add_argument_group("inputs")
    io.add_argument("--data", help="run on this data file (NPZ, CXI, ptychodus diffraction.h5) "
                                   "instead of simulating; needs no --scenario, N comes from the "
                                   "data (see 'inspect --help' for the data-file flags)")
    io.add_argument("--config", help="YAML/TOML/JSON file of settings (sections as in "
                                     "run_metadata.json 'config'); flags override it")
    io.add_argument("--quiet", action="store_true", help="no progress display")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a scenario end to end (simulate, train, infer, compare)",
                       description="Simulate (or load --data), group, train the PINN, infer the "
                                   "test split, stitch, compare with the ground truth, and record "
                                   "the scale chain in OUTPUT_DIR (see docs/telemetry.md).")
    add_run_flags(p, scenario_required=False)
    from .inspect import add_load_flags

    add_load_flags(p)
    p.add_argument("--output-dir", required=True, help="run directory (refused if it exists)")
    p.add_argument("--force", action="store_true",
                   help="reuse an existing run directory (its old contents are moved aside)")
    p.set_defaults(handler=run)


def request_from_args(args: argparse.Namespace, output_dir: Path, scenario: str | None = None,
                      extra_overrides: dict | None = None):
    """Resolve the configuration and build a RunRequest from parsed flags."""
    from ..config import load_config_file, resolve_scenario
    from ..scenarios.runner import RunRequest

    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    overrides = {**overrides_from(args, RUN_FLAGS), **(extra_overrides or {})}
    scenario = scenario or getattr(args, "scenario", None)
    data_options: dict = {}
    if getattr(args, "data", None) and getattr(args, "handler", None) is run:
        from ..io import pattern_size
        from .inspect import load_options_from

        opts = load_options_from(args)
        data_options = opts.model_dump(exclude_defaults=True)
        if not Path(args.data).is_file():
            raise FileNotFoundError(f"--data: no such file: {args.data}")
        n = pattern_size(args.data, opts)
        if overrides.get("simulation.N", n) != n:
            raise ValueError(f"--N {overrides['simulation.N']} but the data's patterns are {n} px "
                             "(use --crop N to crop the detector)")
        overrides["simulation.N"] = n
    if scenario is None:
        if not getattr(args, "data", None):
            raise ValueError("give --scenario NAME (a simulation) or --data FILE (own data)")
        # own data: the sim-lines presets do not apply; gs1 grouping/training defaults, no profile
        config, profile, warnings = resolve_scenario("gs1_ideal", overrides, file_values,
                                                     use_profile=False)
        config = config.model_copy(update={"scenario": "data"})
        profile = {**profile, "note": "own data (--data without --scenario): sim-lines "
                                      "defaults apply to simulation only; N from the data"}
    else:
        config, profile, warnings = resolve_scenario(scenario, overrides, file_values)
    cli_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("handler",) and v is not None and not callable(v)}
    data = Path(args.data) if getattr(args, "data", None) else None
    if data is not None and not data.is_file():
        raise FileNotFoundError(f"--data: no such file: {data}")
    return RunRequest(config=config, output_dir=Path(output_dir), profile=profile, cli_args=cli_args,
                      warnings=warnings, data_path=data, data_options=data_options,
                      force=bool(getattr(args, "force", False)),
                      progress=not getattr(args, "quiet", False))


def run(args: argparse.Namespace) -> int:
    from ..scenarios.runner import run_scenario

    req = request_from_args(args, Path(args.output_dir))
    for w in req.warnings:
        print(f"warning: {w}", file=sys.stderr)
    meta = run_scenario(req)
    out = Path(args.output_dir)
    cmp = meta.get("comparison") or {}
    amp = cmp.get("amplitude") or {}
    print(f"\nrun {meta['status']}: {out}")
    if cmp.get("available") is False:
        print(f"  {cmp.get('reason')}; reconstruction, probe, scan and data consistency in the summary")
    else:
        print(f"  amplitude pearson {amp.get('pearson_r')}, ssim {amp.get('ssim')} (covered region)")
    print(f"  look at: {out}/{req.config.scenario}_comparison_summary.md, {out}/intensity_stats.md, "
          f"{out}/run_metadata.json")
    return 0
