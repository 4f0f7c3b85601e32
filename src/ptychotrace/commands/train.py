"""``ptychotrace train``: train the PINN on the training split of a data file (every format
``ptychotrace.io.load_data`` reads)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import positive_float, positive_int

#: CLI flag (dest) -> dotted config path.
TRAIN_FLAGS = {
    "nepochs": "training.nepochs", "batch_size": "training.batch_size", "lr": "training.lr",
    "width": "training.width", "seed": "training.seed", "device": "training.device",
    "gridsize": "simulation.gridsize", "group_count": "grouping.group_count",
    "contract": "training.contract", "validation_fraction": "training.validation_fraction",
    "early_stopping_patience": "training.early_stopping_patience",
    "object_support": "training.object_support",
    "time_limit": "training.time_limit_s",   # changes the result: recorded in the saved config
}

#: Training-corpus flags (dest) -> dotted config path (shared with ``run``).
CORPUS_FLAGS = {
    "corpus_families": "corpus.families", "corpus_count": "corpus.count",
    "corpus_patterns": "corpus.patterns_per_object", "corpus_seed": "corpus.seed",
    "corpus_object_size": "corpus.object_size", "train_dense_step": "corpus.train_dense_step",
    "train_extra_positions": "corpus.train_extra_positions",
}


def _families(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    allowed = ("lines", "grf", "siemens", "texture")
    bad = [x for x in names if x not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"families must be a comma list of {', '.join(allowed)}; "
                                         f"got {text!r}")
    return names


def add_corpus_flags(p) -> None:
    """Flags that add training data beyond the dataset's training split (data/corpus.py)."""
    g = p.add_argument_group("training data beyond the training split (data/corpus.py)")
    g.add_argument("--corpus-families", type=_families,
                   help="comma list of object families: lines,grf,siemens,texture")
    g.add_argument("--corpus-count", type=int, help="number of corpus objects (cycled families)")
    g.add_argument("--corpus-patterns", type=positive_int, help="scan positions per corpus object")
    g.add_argument("--corpus-seed", type=int, help="corpus seed (objects, positions, noise)")
    g.add_argument("--corpus-object-size", type=positive_int, help="corpus object side, pixels")
    g.add_argument("--train-dense-step", type=positive_float, help="extra raster scan of the "
                   "training object's training region at this step (pixels)")
    g.add_argument("--train-extra-positions", type=int, help="extra random positions on the "
                   "training object's training region")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the PINN on a dataset's training split",
                       description="Train the physics-informed network (Poisson NLL on counts with "
                                   "the dataset's physical probe). Writes train_outputs/ (history, "
                                   "history_summary, checkpoints/best.pt and last.pt) under "
                                   "--output-dir. Runs unchanged under torchrun (DDP).")
    p.add_argument("--data", required=True, help="data file: NPZ (ptychotrace or PtychoPINN), CXI, "
                                                 "ptychodus diffraction.h5 (see the data-file "
                                                 "flags); N comes from the data")
    p.add_argument("--output-dir", required=True, help="run directory")
    p.add_argument("--config", help="YAML/TOML/JSON file of settings (sections as in run_metadata)")
    p.add_argument("--nepochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="groups per step (per process under DDP)")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--width", type=positive_int, help="filter multiplier (1 = 32/64/128)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--gridsize", type=positive_int, help="default: the dataset's simulation value")
    p.add_argument("--group-count", type=positive_int)
    p.add_argument("--validation-fraction", type=float)
    p.add_argument("--early-stopping-patience", type=positive_int)
    p.add_argument("--object-support", choices=["auto", "full", "central"])
    p.add_argument("--contract", choices=["counts", "legacy_v1"],
                   help="measurement contract (default counts)")
    p.add_argument("--time-limit", type=positive_float, help="stop after the epoch crossing this "
                                                              "many seconds")
    p.add_argument("--resume", help="run dir or checkpoint to continue from (its last.pt)")
    p.add_argument("--no-progress", action="store_true")
    add_corpus_flags(p)
    from ..config import SimulationConfig
    from .flags import add_config_flags

    add_config_flags(p, {"simulation": ""}, title="data",    # --N: checked against the data
                     exclude={f"simulation.{f}" for f in SimulationConfig.model_fields} - {"simulation.N"})
    from .inspect import add_load_flags

    add_load_flags(p)
    p.set_defaults(handler=run)


#: Where ``train`` and ``run`` keep the memory-mapped corpus counts (under the run directory).
CORPUS_CACHE = "corpus_cache"


def config_for_dataset(ds, overrides: dict, file_values: dict | None = None):
    """RunConfig for training on ``ds``: the dataset's recorded simulation/scenario settings,
    then a config file, then CLI overrides."""
    from ..config import RunConfig, SimulationConfig, _nest

    meta = ds.metadata or {}
    sim = dict(meta.get("simulation") or {})
    sim = {k: v for k, v in sim.items() if k in SimulationConfig.model_fields}
    sim["N"] = ds.patch_size
    flat = {f"simulation.{k}": v for k, v in sim.items()}
    scenario = meta.get("scenario")
    if scenario:
        from ..config import _SHARED, PROFILES, SCENARIOS

        if scenario in SCENARIOS:
            base = {**_SHARED, **SCENARIOS[scenario], **PROFILES.get(scenario, {})}
            flat = {**{k: v for k, v in base.items() if not k.startswith("simulation.")}, **flat}
    flat.update(file_values or {})
    flat.update(overrides)
    flat["scenario"] = scenario or "custom"
    return RunConfig.model_validate(_nest(flat))


def run(args: argparse.Namespace) -> int:
    from ..config import load_config_file
    from ..telemetry.writers import write_json
    from ..train.model_card import write_card_for_training
    from ..train.trainer import TRAIN_OUTPUTS, train
    from .common import load_data_from_args, overrides_from

    ds, _ = load_data_from_args(args)
    file_values = load_config_file(args.config) if args.config else {}
    config = config_for_dataset(ds, overrides_from(args, {**TRAIN_FLAGS, **CORPUS_FLAGS}),
                                file_values)
    out = Path(args.output_dir)
    if not args.resume and (out / TRAIN_OUTPUTS / "checkpoints").exists():
        raise FileExistsError(f"{out} already holds a trained model; use --resume {out} or "
                              "another --output-dir")
    train_ds, manifest = ds, None
    if config.corpus.enabled:
        from ..data.corpus import build_training_dataset

        train_ds, manifest = build_training_dataset(config, ds, out / CORPUS_CACHE)
    write_json(out / TRAIN_OUTPUTS / "config.json", config.to_dict())
    result = train(config, train_ds, out, resume=args.resume, progress=not args.no_progress,
                   time_limit_s=args.time_limit)
    card = write_card_for_training(config, train_ds, result.to_dict(), out, args.data, manifest)
    if card:
        print(f"model card: {card} (and {card.with_suffix('.md').name})")
    print(json.dumps({k: result.to_dict()[k] for k in (
        "status", "epochs_completed", "final_loss", "final_val_loss", "best_epoch",
        "samples_per_second", "best_checkpoint", "history_path")}, indent=2))
    if result.nan_detected and result.status == "nan":
        print(f"error: {result.nan_message}")
        return 3
    return 0
