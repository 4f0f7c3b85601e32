"""Rescore a run directory made before the data-consistency record existed.

``rescore_run(run_dir)`` re-makes what the runner records in ``consistency/`` (the Poisson
deviance of the final and the network-only reconstruction, and of the truth, against the measured
counts; evaluate/consistency_record.py) for a run that lacks it, so that ``analyze`` can apply its
whole decision procedure to old runs. Nothing the run wrote is changed: only the missing
``consistency/`` files are added, and a run that already has a record is refused.

How: the run's own recorded configuration (run_metadata.json ``config``) gives back its data (the
recorded data file and load options, or the simulation, deterministic under its seeds) and its
inference; the recorded best checkpoint is re-run on that data. The re-made data are checked
against the photons the run recorded per split (relative 1e-6) before anything is written, so a
moved, edited or differently simulated dataset is refused rather than silently scored. The
reconstruction is the re-run one: on another machine or library version it can differ from the
original by floating-point rounding (the record says that it was rescored).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..evaluate.consistency_record import CONSISTENCY_DIR, CONSISTENCY_JSON, load_consistency

#: Relative agreement required between the re-made data's photons per pattern and the run's record.
PHOTON_MATCH_RTOL = 1e-6


class RescoreError(ValueError):
    """The run cannot be rescored (names the run directory and what is missing or differs)."""


def _recorded_dataset(root: Path, md: dict, cfg, data_path: str | Path | None):
    """The dataset the run saw: ``data_path``, else the recorded data file, else re-simulated."""
    path = data_path if data_path is not None else cfg.data.path
    if path is not None:
        from ..io import load_data
        from ..io.scan import load_options_of

        if not Path(path).is_file():
            raise RescoreError(f"{root}: the run's data file {path} does not exist; pass the file "
                               "with --data")
        return load_data(Path(path), load_options_of(cfg.data))[0]
    source = ((md.get("provenance") or {}).get("dataset_source") or {}).get("type")
    if source not in ("simulated", None):
        raise RescoreError(f"{root}: the run read data of type {source!r} with no recorded path; "
                           "pass the file with --rescore-data NAME=FILE")
    from ..simulate import simulate

    return simulate(cfg.simulation, scenario=md.get("scenario"))[0]


def _check_photons(root: Path, md: dict, ds) -> None:
    recorded = md.get("measured_photons_per_pattern") or {}
    for split, code in (("train", 0), ("test", 1)):
        want = recorded.get(split)
        rows = ds.counts[ds.split == code]
        if want is None or not len(rows):
            continue
        got = float(rows.reshape(len(rows), -1).sum(axis=1, dtype=np.float64).mean())
        if abs(got - float(want)) > PHOTON_MATCH_RTOL * abs(float(want)):
            raise RescoreError(f"{root}: the re-made data do not match the run: {split} split "
                               f"{got:.7g} photons per pattern, the run recorded {float(want):.7g}"
                               " (measured_photons_per_pattern); pass the run's data with --rescore-data NAME=FILE")


def rescore_run(run_dir: str | Path, data_path: str | Path | None = None, log=print):
    """Write ``consistency/`` for a run that lacks it; return its ConsistencyRecord."""
    from ..config import RunConfig
    from ..evaluate.consistency_record import BlockCollector, record_run_consistency
    from ..infer.predict import predict
    from ..stages.evaluate import activation_bound
    from ..telemetry.writers import write_json
    from ..train.checkpoint import load_model

    root = Path(run_dir)
    md_path = root / "run_metadata.json"
    if not md_path.is_file():
        raise RescoreError(f"{root}: no run_metadata.json (not a run directory)")
    if (root / CONSISTENCY_DIR / CONSISTENCY_JSON).exists():
        raise RescoreError(f"{root}: already has {CONSISTENCY_DIR}/{CONSISTENCY_JSON}; nothing "
                           "to rescore")
    md = json.loads(md_path.read_text(encoding="utf-8"))
    if md.get("status") != "ok":
        raise RescoreError(f"{root}: the run did not finish (status {md.get('status')!r}); "
                           "there is no reconstruction to score")
    cfg = RunConfig.model_validate(md["config"])
    training = md.get("training") or {}
    ckpt = training.get("best_checkpoint") or training.get("last_checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        raise RescoreError(f"{root}: the run's checkpoint {ckpt!r} does not exist")
    ds = _recorded_dataset(root, md, cfg, data_path)
    _check_photons(root, md, ds)             # before anything is written
    log(f"{root}: re-running the recorded inference ({cfg.inference.refine_steps} refinement "
        f"steps) on {ds.n_patterns} patterns")
    model = load_model(ckpt)
    pred = predict(model, ds, cfg.inference)

    # run_metadata.json is left as the run wrote it: the collected block is not written back
    record = record_run_consistency(BlockCollector(), root, ds, pred, activation_bound(model))
    record = record.model_copy(update={"notes": [*record.notes, (
        "rescored by 'ptychotrace analyze --rescore': the recorded model and inference re-run on "
        "the re-made data (photons per split matched the run's record); run_metadata.json is "
        "unchanged")]})
    write_json(root / CONSISTENCY_DIR / CONSISTENCY_JSON, record.model_dump(mode="json"))
    return load_consistency(root)
