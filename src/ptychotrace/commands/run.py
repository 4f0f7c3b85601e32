"""``ptychotrace run``: one scenario from simulation to comparison, with full scale telemetry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import add_config_flags, overrides_from_flags

#: Config sections with a flag per field in ``run`` (and ``sweep``), {section: flag prefix}.
RUN_SECTIONS = {"simulation": "", "grouping": "", "training": "", "inference": "",
                "evaluation": ""}
#: The simulation fields ``train`` has flags for (the rest describe how data are simulated).
TRAIN_SIMULATION_FIELDS = ("N", "gridsize")


def add_aliases(p: argparse.ArgumentParser) -> None:
    """Historical names of config flags (``run``, ``sweep`` and ``train``)."""
    from .common import positive_float

    alias = p.add_argument_group("aliases")
    alias.add_argument("--probe-big", dest="cfg__training__object_support", action="store_const",
                       const="full", help="= --object-support full (the full N x N patch)")
    alias.add_argument("--no-probe-big", dest="cfg__training__object_support",
                       action="store_const", const="central",
                       help="= --object-support central (the central N/2 region)")
    alias.add_argument("--time-limit", dest="cfg__training__time_limit_s", type=positive_float,
                       metavar="SECONDS", help="= --time-limit-s (recorded in the saved config)")


def add_corpus_config_flags(p: argparse.ArgumentParser) -> None:
    """Config section 'corpus': train's named flags (commands/train.py), the other fields
    generated."""
    from .train import CORPUS_FLAGS, add_corpus_flags

    add_corpus_flags(p)
    add_config_flags(p, {"corpus": "corpus-"}, exclude=set(CORPUS_FLAGS.values()),
                     title="corpus (more fields of config section 'corpus')")


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """``train``'s config flags: every field that changes a training result (sections grouping,
    training, corpus; of simulation N, checked against the data, and gridsize), generated as in
    ``run``, so both accept the same training and corpus flags under the same names."""
    from ..config import SimulationConfig

    add_aliases(p)
    keep = {f"simulation.{f}" for f in TRAIN_SIMULATION_FIELDS}
    add_config_flags(p, {"simulation": ""}, title="data (config section 'simulation')",
                     exclude={f"simulation.{f}" for f in SimulationConfig.model_fields} - keep)
    add_config_flags(p, {"grouping": "", "training": ""})
    add_corpus_config_flags(p)


def add_run_flags(p: argparse.ArgumentParser, with_baseline: bool = False,
                  scenario_required: bool = True) -> None:
    """Every flag of ``run`` (``sweep`` accepts the same and passes them to each run): one per
    config field (commands.flags), plus the scenario, the inputs and the historical aliases."""
    from ..config import SCENARIOS

    p.add_argument("--scenario", required=scenario_required, choices=sorted(SCENARIOS),
                   help="named sim-lines scenario (physics.md section 5)")
    io = p.add_argument_group("inputs")
    io.add_argument("--data", help="run on this data file (NPZ, CXI, ptychodus diffraction.h5) "
                                   "instead of simulating; needs no --scenario, N comes from the "
                                   "data (see 'inspect --help' for the data-file flags)")
    io.add_argument("--config", help="YAML/TOML/JSON file of settings (sections as in "
                                     "run_metadata.json 'config'); flags override it")
    io.add_argument("--quiet", action="store_true", help="no progress display")
    add_aliases(p)
    sections = dict(RUN_SECTIONS)
    if with_baseline:
        sections["baseline"] = "baseline-"
    add_config_flags(p, sections)
    add_corpus_config_flags(p)


def flag_overrides(args: argparse.Namespace) -> dict:
    """Dotted config overrides of the config flags given (generated and named corpus flags, and
    with --data the ``data`` section of the load)."""
    from .common import data_overrides, overrides_from
    from .train import CORPUS_FLAGS

    # the data section: what load_data_from_args applies (config file < data-file flags), so the
    # saved config records the load (empty without --data)
    return {**overrides_from_flags(args), **overrides_from(args, CORPUS_FLAGS),
            **data_overrides(args)}


def resolve_for_data(ds, overrides: dict, file_values: dict | None = None):
    """(RunConfig, profile record, warnings) of a run on the data file ``ds`` without a scenario
    (``run --data`` and ``train --data``): config.dataset_base (field defaults, the file's
    recorded simulation settings, N from the data) < config file < flags, by the one resolve
    function, config.resolve_config."""
    from ..config import dataset_base, resolve_config

    n = ds.patch_size
    config, profile, warnings = resolve_config(dataset_base(ds.metadata, n),
                                               file_values=file_values,
                                               overrides={**overrides, "simulation.N": n})
    profile = {**profile, "note": "own data (--data without --scenario): sim-lines defaults "
                                  "apply to simulation only; N from the data"}
    return config, profile, warnings


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


def _without_data_section(file_values: dict, config_file: str | None) -> dict:
    """A config file's settings for a run without --data: a ``data`` section that prepares
    something is refused (nothing would apply it); one at its defaults (every saved config has
    one; ``path`` is provenance) is dropped, so the run records no data load."""
    from ..config import DataConfig

    section = {k.removeprefix("data."): v for k, v in file_values.items() if k.startswith("data.")}
    prepared = sorted(f"data.{k}" for k, v in section.items()
                      if k != "path" and (k not in DataConfig.model_fields
                                          or v != DataConfig.model_fields[k].default))
    if prepared:
        raise ValueError(f"--config {config_file}: {', '.join(prepared)} say how a data file is "
                         "loaded, but no --data was given (give --data FILE, or drop them for a "
                         "simulation)")
    return {k: v for k, v in file_values.items() if not k.startswith("data.")}


def request_from_args(args: argparse.Namespace, output_dir: Path, scenario: str | None = None,
                      extra_overrides: dict | None = None):
    """Resolve the configuration and build a RunRequest from parsed flags."""
    from ..config import load_config_file, resolve_scenario
    from ..scenarios.runner import RunRequest

    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    overrides = {**flag_overrides(args), **(extra_overrides or {})}
    scenario = scenario or getattr(args, "scenario", None)
    dataset, data_options = None, {}
    if getattr(args, "data", None):
        # the one loading path of train/infer/baseline/run (commands.common): every format, the
        # data-file flags, the --N check; refused here, before the run directory is made
        from ..io import load_options_of
        from .common import data_config_from_args, load_data_from_args

        dataset, _ = load_data_from_args(args)
        data_options = load_options_of(data_config_from_args(args)).model_dump(
            exclude_defaults=True)
    else:
        file_values = _without_data_section(file_values, getattr(args, "config", None))
    if scenario is None:
        if dataset is None:
            raise ValueError("give --scenario NAME (a simulation) or --data FILE (own data)")
        config, profile, warnings = resolve_for_data(dataset, overrides, file_values)
    else:
        if dataset is not None:
            overrides["simulation.N"] = dataset.patch_size
        config, profile, warnings = resolve_scenario(scenario, overrides, file_values)
    cli_args = cli_record(args)
    data = Path(args.data) if getattr(args, "data", None) else None
    return RunRequest(config=config, output_dir=Path(output_dir), profile=profile, cli_args=cli_args,
                      warnings=warnings, data_path=data, data_options=data_options, dataset=dataset,
                      force=bool(getattr(args, "force", False)),
                      progress=not getattr(args, "quiet", False))


def cli_record(args: argparse.Namespace) -> dict:
    """The flags given (run_metadata ``cli_args``): config flags under their field name (as
    before the flags were generated; a baseline field as ``baseline_<field>``), others as given."""
    out = {}
    for k, v in vars(args).items():
        if k in ("handler", "_config_flags") or v is None or callable(v):
            continue
        if k.startswith("cfg__"):
            section, *rest = k.removeprefix("cfg__").split("__")
            k = "_".join(rest) if section != "baseline" else "baseline_" + "_".join(rest)
        out[k] = str(v) if isinstance(v, Path) else v
    return out


def run(args: argparse.Namespace) -> int:
    from ..scenarios.runner import run_scenario

    req = request_from_args(args, Path(args.output_dir))
    for w in req.warnings:
        print(f"warning: {w}", file=sys.stderr)
    meta = run_scenario(req)
    out = Path(args.output_dir)
    cmp = meta.get("comparison") or {}
    amp = cmp.get("amplitude")
    print(f"\nrun {meta['status']}: {out}")
    if cmp.get("available") is False:
        print(f"  {cmp.get('reason')}; reconstruction, probe, scan and data consistency in the summary")
    elif amp:
        from ..format import format_value

        print(f"  amplitude pearson {format_value(amp['pearson_r'])}, ssim "
              f"{format_value(amp['ssim'])} (evaluated region)")
    images = ("inference_outputs/amplitude.png" if cmp.get("available") is False
              else "comparison.png")     # no truth: no comparison figure (scenarios/no_truth.py)
    print(f"  look at: {out}/{req.config.scenario}_comparison_summary.md, {out}/{images}, "
          f"{out}/intensity_stats.md, {out}/run_metadata.json")
    return 0
