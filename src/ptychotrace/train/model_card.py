"""The model card: a trained model as a reusable artifact (issue #12, amortised inference).

``ptychotrace train`` (and ``run``) write ``model_card.json`` and ``model_card.md`` next to the
checkpoints, in ``<run>/train_outputs/``: the training data and doses, the physical probe (source,
fingerprint, energy), N, gridsize, epochs, validation numbers, package and schema versions.
``ptychotrace infer`` calls :func:`check_compatible` before it predicts anything: a dataset whose
N, gridsize or probe differ from the model's is refused with one message naming every mismatch.

Probe compatibility: ``d = min_theta ||P_data - exp(i theta) P_model|| / ||P_model||`` (a global
phase of the probe changes no measured intensity, so it is factored out); refused when ``d`` >
:data:`DEFAULT_PROBE_TOLERANCE`. 0.05 = 5%, the project's tolerance on scale ratios (the scale
chain flags train/test dose deviations above 5%): the same probe recorded by another simulation
of the scenario (its dose scale re-derived from another training split) stays well inside it, a
2x dose or a different probe shape does not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from .. import __version__
from ..config import CorpusConfig
from ..data.corpus import CorpusManifest, TrainingDataEntry
from ..data.dataset import Dataset, file_sha256
from ..physics.probe import probe_fingerprint
from ..telemetry.writers import write_text

CARD_SCHEMA_VERSION = "1.0"
CARD_JSON, CARD_MD = "model_card.json", "model_card.md"
DEFAULT_PROBE_TOLERANCE = 0.05


class ModelCompatibilityError(ValueError):
    """The dataset cannot be reconstructed by this model; the message names each mismatch."""


class _Card(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ProbeInfo(_Card):
    """The physical probe the network's physics uses (sqrt(photons) per pixel)."""

    source: str
    fingerprint: str
    shape: tuple[int, int]
    energy_photons: float
    max_amplitude: float
    units: str = "sqrt(photons) per pixel (physical probe = dose scale x normalised probe)"
    compatibility_tolerance: float = DEFAULT_PROBE_TOLERANCE


class DoseInfo(_Card):
    nphotons_target: float | None
    dose_scale: float | None
    dose_mode: str | None
    derived_from: str
    photons_per_pattern_measured: float
    units: str = "photons per pattern; dose scale in sqrt(photons) per unit normalised probe"


class NetworkInfo(_Card):
    N: int
    gridsize: int
    width: int | None
    object_support: str | None
    amp_ref: float | None
    contract: str
    architecture: dict[str, Any]


class TrainingData(_Card):
    source_file: str | None
    source_sha256: str | None
    scenario: str | None
    n_patterns: int
    entries: tuple[TrainingDataEntry, ...]
    corpus: CorpusConfig | None
    corpus_key: str | None


class TrainingInfo(_Card):
    status: str
    epochs_requested: int
    epochs_completed: int
    best_epoch: int | None
    batch_size: int
    lr: float
    seed: int
    group_count: int
    #: how the groups were formed (GroupingConfig.group_method); cards before it: knn
    group_method: str = "knn"
    device: str | None
    train_seconds: float | None
    samples_per_second: float | None


class ValidationInfo(_Card):
    validation_fraction: float
    metric: str
    best_val_loss: float | None
    final_val_loss: float | None
    final_train_loss: float | None
    final_pred_amp_mean: float | None
    final_pred_amp_std: float | None


class CheckpointInfo(_Card):
    best: str | None
    last: str | None
    best_sha256: str | None


class ModelCard(_Card):
    card_type: Literal["ptychotrace-model-card"] = "ptychotrace-model-card"
    schema_version: str = CARD_SCHEMA_VERSION
    package_version: str
    torch_version: str
    created_utc: str
    checkpoint: CheckpointInfo
    network: NetworkInfo
    probe: ProbeInfo
    dose: DoseInfo
    training_data: TrainingData
    training: TrainingInfo
    validation: ValidationInfo
    scales: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Building and writing
# --------------------------------------------------------------------------------------------
def _last(history: dict, key: str) -> float | None:
    col = (history.get("metrics") or {}).get(key) or []
    vals = [v for v in col if v is not None]
    return float(vals[-1]) if vals else None


def build_model_card(config, train_ds: Dataset, result: dict, ckpt: dict, history: dict,
                     run_dir: Path, data_path: str | Path | None = None,
                     manifest: CorpusManifest | None = None) -> ModelCard:
    """The card of a finished training. ``result``: TrainResult.to_dict(); ``ckpt``: the loaded
    best (or last) checkpoint; ``history``: history.json's content; paths stored relative to
    ``run_dir``."""
    import torch

    probe = ckpt["physics"]["probe"].numpy()
    net = dict(ckpt["network"])
    sums = train_ds.counts.reshape(train_ds.n_patterns, -1).sum(axis=1, dtype=np.float64)
    meta = train_ds.metadata or {}
    if manifest is not None:
        entries = manifest.entries
    else:
        entries = (TrainingDataEntry(
            name="dataset_train", kind="scenario_train", family="dataset",
            object_seed=(meta.get("seeds") or {}).get("object_seed"),
            object_shape=tuple(train_ds.obj.shape) if train_ds.obj is not None else (0, 0),
            n_patterns=int(len(train_ds.indices("train"))), first_row=0, offset_px=(0.0, 0.0),
            photons_per_pattern_mean=float(sums[train_ds.split == 0].mean()),
            detail="the dataset's training split"),)

    def rel(p):
        if not p:
            return None
        try:
            return str(Path(p).resolve().relative_to(Path(run_dir).resolve()))
        except ValueError:
            return str(p)

    tr = config.training
    best = result.get("best_checkpoint")
    return ModelCard(
        package_version=__version__, torch_version=str(torch.__version__),
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        checkpoint=CheckpointInfo(best=rel(best), last=rel(result.get("last_checkpoint")),
                                  best_sha256=file_sha256(best) if best else None),
        network=NetworkInfo(N=int(net["N"]), gridsize=int(net["gridsize"]), width=net.get("width"),
                            object_support=net.get("object_support"), amp_ref=net.get("amp_ref"),
                            contract=str(ckpt["physics"]["contract"]),
                            architecture={k: v for k, v in net.items()
                                          if k not in ("N", "gridsize", "width", "object_support",
                                                       "amp_ref")}),
        probe=ProbeInfo(source=str((meta.get("probe") or {}).get("source", "dataset probeGuess")),
                        fingerprint=probe_fingerprint(probe), shape=tuple(probe.shape),
                        energy_photons=float(np.sum(np.abs(probe.astype(np.complex128)) ** 2)),
                        max_amplitude=float(np.abs(probe).max())),
        dose=DoseInfo(nphotons_target=meta.get("nphotons"), dose_scale=train_ds.dose_scale,
                      dose_mode=(meta.get("dose") or {}).get("mode"),
                      derived_from=(manifest.dose_derived_from if manifest else
                                    str((meta.get("dose") or {}).get("derived_from", "dataset"))),
                      photons_per_pattern_measured=float(sums.mean())),
        training_data=TrainingData(
            source_file=None if data_path is None else str(data_path),
            source_sha256=None if data_path is None else file_sha256(data_path),
            scenario=meta.get("scenario"), n_patterns=int(sum(e.n_patterns for e in entries)),
            entries=tuple(entries), corpus=manifest.config if manifest else None,
            corpus_key=manifest.key if manifest else None),
        training=TrainingInfo(
            status=str(result.get("status")), epochs_requested=tr.nepochs,
            epochs_completed=int(result.get("epochs_completed") or 0),
            best_epoch=result.get("best_epoch"), batch_size=tr.batch_size, lr=tr.lr, seed=tr.seed,
            group_count=config.grouping.requested_groups,
            group_method=config.grouping.group_method, device=result.get("device"),
            train_seconds=result.get("train_seconds"),
            samples_per_second=result.get("samples_per_second")),
        validation=ValidationInfo(
            validation_fraction=tr.validation_fraction,
            metric="loss (Poisson NLL on counts, normalised; trainer.py) on the validation groups",
            best_val_loss=result.get("best_val_loss"), final_val_loss=result.get("final_val_loss"),
            final_train_loss=result.get("final_loss"),
            final_pred_amp_mean=_last(history, "pred_amp_mean"),
            final_pred_amp_std=_last(history, "pred_amp_std")),
        scales=dict(ckpt.get("scales") or {}))


def card_markdown(card: ModelCard) -> str:
    """A human-readable rendering of the card (the JSON is the record)."""
    n, p, d, t, v = card.network, card.probe, card.dose, card.training, card.validation

    def f(x, digits=4):
        return "n/a" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))

    lines = [f"# Model card (ptychotrace {card.package_version}, card schema {card.schema_version})",
             "", f"Created {card.created_utc}. Checkpoint: `{card.checkpoint.best}` "
             f"(sha256 {str(card.checkpoint.best_sha256)[:16]}...).", "",
             "## Network", "",
             f"- N = {n.N} px, gridsize {n.gridsize}, width {n.width}, object support "
             f"{n.object_support}, contract {n.contract}, amp_ref {f(n.amp_ref)}", "",
             "## Probe and dose", "",
             f"- probe: {p.source}, {p.shape[0]}x{p.shape[1]}, energy {f(p.energy_photons)} photons "
             f"(sum |P|^2), fingerprint `{p.fingerprint[:23]}...`",
             f"- compatible data: same N and gridsize, probe within relative L2 distance "
             f"{p.compatibility_tolerance} (global phase factored out)"
             + (", scanned on a raster (groups are raster blocks)"
                if card.training.group_method == "raster_blocks" else ""),
             f"- dose: target {f(d.nphotons_target)} photons/pattern, measured "
             f"{f(d.photons_per_pattern_measured)} on the training data; dose scale "
             f"{f(d.dose_scale)} ({d.dose_mode}), from {d.derived_from}", "",
             "## Training data", "",
             f"- {card.training_data.n_patterns} patterns; source "
             f"{card.training_data.source_file or 'simulated in the run'}; scenario "
             f"{card.training_data.scenario}", "",
             "| block | kind | family | object seed | object px | patterns | photons/pattern |",
             "|---|---|---|---|---|---|---|"]
    for e in card.training_data.entries:
        lines.append(f"| {e.name} | {e.kind} | {e.family} | {e.object_seed} | "
                     f"{e.object_shape[0]}x{e.object_shape[1]} | {e.n_patterns} | "
                     f"{f(e.photons_per_pattern_mean)} |")
    lines += ["", "## Training and validation", "",
              f"- status {t.status}: {t.epochs_completed}/{t.epochs_requested} epochs, best epoch "
              f"{t.best_epoch}; batch {t.batch_size}, lr {t.lr}, seed {t.seed}, "
              f"{t.group_count} groups requested ({t.group_method})",
              f"- {f(t.train_seconds)} s on {t.device}, {f(t.samples_per_second)} samples/s",
              f"- validation ({v.validation_fraction:.0%} of groups): best {f(v.best_val_loss)}, "
              f"final {f(v.final_val_loss)}; final training loss {f(v.final_train_loss)}; "
              f"predicted amplitude mean/std {f(v.final_pred_amp_mean)}/{f(v.final_pred_amp_std)}",
              f"- metric: {v.metric}", ""]
    return "\n".join(lines)


def write_model_card(card: ModelCard, directory: str | Path) -> tuple[Path, Path]:
    """``model_card.json`` (exactly ``card.model_dump_json(indent=2)``) and ``model_card.md``."""
    directory = Path(directory)
    return (write_text(directory / CARD_JSON, card.model_dump_json(indent=2)),
            write_text(directory / CARD_MD, card_markdown(card)))


def read_model_card(path: str | Path) -> ModelCard:
    """Load and validate a card (a file, or a directory holding model_card.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {path}")
    return ModelCard.model_validate_json(path.read_text(encoding="utf-8"))


def write_card_for_training(config, train_ds: Dataset, result: dict, run_dir: str | Path,
                            data_path=None, manifest: CorpusManifest | None = None):
    """Build and write the card of a training that wrote ``run_dir/train_outputs``; returns the
    JSON path (None when no checkpoint exists, e.g. a training that failed in epoch 1)."""
    import json

    from .checkpoint import load_checkpoint

    ckpt_path = result.get("best_checkpoint") or result.get("last_checkpoint")
    if not ckpt_path:
        return None
    ckpt = load_checkpoint(ckpt_path)
    hist_path = result.get("history_path")
    history = json.loads(Path(hist_path).read_text()) if hist_path and Path(hist_path).is_file() \
        else {}
    card = build_model_card(config, train_ds, result, ckpt, history, Path(run_dir), data_path,
                            manifest)
    return write_model_card(card, Path(ckpt_path).parent.parent)[0]


# --------------------------------------------------------------------------------------------
# Compatibility
# --------------------------------------------------------------------------------------------
def probe_distance(data_probe: np.ndarray, model_probe: np.ndarray) -> float:
    """``min_theta ||P_d - e^{i theta} P_m|| / ||P_m||`` (float64; the best global phase)."""
    a = np.asarray(data_probe, dtype=np.complex128).ravel()
    b = np.asarray(model_probe, dtype=np.complex128).ravel()
    nb = float(np.vdot(b, b).real)
    if nb <= 0:
        raise ValueError("the model's probe is zero")
    d2 = float(np.vdot(a, a).real) + nb - 2.0 * abs(np.vdot(b, a))
    return float(np.sqrt(max(d2, 0.0) / nb))


def check_compatible(ckpt: dict, ds: Dataset, data_label: str = "the dataset",
                     tolerance: float = DEFAULT_PROBE_TOLERANCE) -> dict:
    """Refuse a dataset the model cannot reconstruct: N, gridsize (when the data record one) and
    the physical probe (distance above ``tolerance``). Raises :class:`ModelCompatibilityError`
    naming every mismatch; returns what was checked otherwise."""
    net = ckpt["network"]
    model_n, model_g = int(net["N"]), int(net["gridsize"])
    model_probe = ckpt["physics"]["probe"]
    model_probe = model_probe.numpy() if hasattr(model_probe, "numpy") else np.asarray(model_probe)
    data_g = (ds.metadata.get("simulation") or {}).get("gridsize")
    problems, checked = [], {"N": ds.patch_size, "gridsize": data_g, "probe_distance": None,
                             "tolerance": tolerance}
    if ds.patch_size != model_n:
        problems.append(f"N: the model takes {model_n}x{model_n} patterns, the data are "
                        f"{ds.patch_size}x{ds.patch_size}")
    if data_g is not None and int(data_g) != model_g:
        problems.append(f"gridsize: the model was trained at gridsize {model_g}, the data were "
                        f"recorded at gridsize {data_g} (metadata.simulation.gridsize)")
    if ds.probe.shape != model_probe.shape:
        problems.append(f"probe: shape {ds.probe.shape} vs the model's {model_probe.shape}")
    else:
        dist = probe_distance(ds.probe, model_probe)
        checked["probe_distance"] = dist
        if not dist <= tolerance:
            energy = float(np.sum(np.abs(ds.probe.astype(np.complex128)) ** 2)
                           / np.sum(np.abs(model_probe.astype(np.complex128)) ** 2))
            problems.append(f"probe: relative L2 distance {dist:.4g} from the model's probe "
                            f"(global phase factored out) exceeds the tolerance {tolerance:g}; "
                            f"probe energy ratio data/model {energy:.4g}; fingerprints data "
                            f"{probe_fingerprint(ds.probe)[:19]} vs model "
                            f"{probe_fingerprint(model_probe)[:19]}")
    if problems:
        raise ModelCompatibilityError(
            f"model {ckpt.get('path', '')} cannot reconstruct {data_label}: " + "; ".join(problems)
            + ". Nothing was written. Train a model on data of this kind (ptychotrace train).")
    return checked
