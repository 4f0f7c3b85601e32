"""``ptychotrace train``: train the PINN on the training split of a data file (every format
``ptychotrace.io.load_data`` reads)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import positive_float, positive_int

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
    p.add_argument("--config", help="YAML/TOML/JSON file of settings (sections as in "
                                     "run_metadata.json 'config'); flags override it")
    p.add_argument("--resume", help="run dir or checkpoint to continue from (its last.pt)")
    p.add_argument("--no-progress", action="store_true")
    from .inspect import add_load_flags
    from .run import add_training_flags

    add_training_flags(p)   # the training/corpus flags of 'run', generated from the config
    add_load_flags(p)
    p.set_defaults(handler=run)


#: Where ``train`` and ``run`` keep the memory-mapped corpus counts (under the run directory).
CORPUS_CACHE = "corpus_cache"


def config_from_args(args: argparse.Namespace, ds):
    """The RunConfig ``train`` uses on ``ds``: exactly what ``run --data`` resolves for the same
    flags (commands.run.resolve_for_data: dataset base < config file < flags)."""
    from ..config import load_config_file
    from .run import flag_overrides, resolve_for_data

    file_values = load_config_file(args.config) if args.config else {}
    return resolve_for_data(ds, flag_overrides(args), file_values)[0]


def run(args: argparse.Namespace) -> int:
    from ..telemetry.writers import write_json
    from ..train.model_card import write_card_for_training
    from ..train.trainer import TRAIN_OUTPUTS, train
    from .common import load_data_from_args

    ds, _ = load_data_from_args(args)
    config = config_from_args(args, ds)
    out = Path(args.output_dir)
    if not args.resume and (out / TRAIN_OUTPUTS / "checkpoints").exists():
        raise FileExistsError(f"{out} already holds a trained model; use --resume {out} or "
                              "another --output-dir")
    train_ds, manifest = ds, None
    if config.corpus.enabled:
        from ..data.corpus import build_training_dataset

        train_ds, manifest = build_training_dataset(config, ds, out / CORPUS_CACHE)
    write_json(out / TRAIN_OUTPUTS / "config.json", config.to_dict())
    result = train(config, train_ds, out, resume=args.resume, progress=not args.no_progress)
    # (the time limit is config.training.time_limit_s, saved above: it changes the result)
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
