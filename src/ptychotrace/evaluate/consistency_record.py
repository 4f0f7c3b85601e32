"""Write the data-consistency record of one run: ``consistency/consistency.json`` (typed,
:class:`~ptychotrace.evaluate.consistency.ConsistencyRecord`), per-pattern ``.npy`` tables and a
deviance map over the scan positions (``deviance_map.png``). See :mod:`.consistency`.

Inputs are the dataset as the run saw it (counts, probe, positions, optional truth) and the
reconstructions: the final object frame (H, W) with the dataset rows it was scored on, and the
network's own patches (P, N, N) with their rows and positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..telemetry.writers import atomic_path, write_json, write_npy
from .consistency import (
    CONSISTENCY_DIR,
    CONSISTENCY_JSON,
    NORMALISATION,
    PATTERN_COLUMNS,
    ConsistencyRecord,
    DevianceSummary,
    PatternDeviance,
    _q,
    _subset,
    flat_null,
    model_output_check,
    object_deviance,
    object_patches,
    patches_deviance,
    pattern_table,
    photon_check,
    position_check,
    summarise,
)


def _nominal_photons(ds) -> float | None:
    v = (ds.metadata or {}).get("nphotons")
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def record_consistency(run_dir: str | Path, ds, *, final_obj: np.ndarray | None,
                       final_index: np.ndarray | None, network_patches: np.ndarray | None = None,
                       network_index: np.ndarray | None = None,
                       network_x: np.ndarray | None = None, network_y: np.ndarray | None = None,
                       valid: np.ndarray | None = None,
                       activation_bound: float | None = None) -> ConsistencyRecord:
    """Compute and write the consistency record of a run; return it.

    ds: a Dataset (counts (P, N, N) photons, probe (N, N) sqrt(photons), xcoords/ycoords (P,),
    obj (H, W) or None, split (P,)); final_obj (H, W) complex with final_index the dataset rows
    it is scored on; network_patches (Q, N, N) complex with network_index (Q,) rows and their
    positions; valid (N, N) bool: True = measured detector pixel."""
    root = Path(run_dir)
    out = root / CONSISTENCY_DIR
    out.mkdir(parents=True, exist_ok=True)
    counts, probe = ds.counts, ds.probe
    n = counts.shape[-1]
    arts: list[str] = []
    notes: list[str] = []
    devs: dict[str, tuple[PatternDeviance, np.ndarray, np.ndarray, np.ndarray]] = {}

    def keep(name, pd, idx, x, y) -> DevianceSummary:
        rel = f"{CONSISTENCY_DIR}/{name}.npy"
        write_npy(root / rel, pattern_table(pd, idx, x, y))
        arts.append(rel)
        devs[name] = (pd, idx, x, y)
        return summarise(pd, table=rel, null=flat_null(probe, counts[idx], valid))

    final = None
    if final_obj is not None and final_index is not None and len(final_index):
        idx = np.asarray(final_index, dtype=np.int64)
        pd = object_deviance(final_obj, probe, ds.xcoords[idx], ds.ycoords[idx], counts[idx],
                             valid)
        final = keep("final", pd, idx, ds.xcoords[idx], ds.ycoords[idx])
    network = model_out = None
    if network_patches is not None and network_index is not None and len(network_index):
        idx = np.asarray(network_index, dtype=np.int64)
        pd = patches_deviance(network_patches, probe, counts[idx], valid)
        network = keep("network_only", pd, idx, network_x, network_y)
        t_patches = (object_patches(ds.obj, network_x, network_y, n) if ds.obj is not None
                     else None)
        model_out = model_output_check(network_patches, probe, t_patches, activation_bound)
    truth = positions = None
    truth_pd = None
    if ds.obj is not None:
        idx = np.arange(len(counts))
        truth_pd = object_deviance(ds.obj, probe, ds.xcoords, ds.ycoords, counts, valid)
        truth = keep("truth", truth_pd, idx, ds.xcoords, ds.ycoords)
        positions = position_check(ds.obj, probe, ds.xcoords, ds.ycoords, counts, valid)
    else:
        notes.append("no ground truth: the truth and position checks are not made")
    photons = photon_check(counts, probe, ds.split, _nominal_photons(ds), truth_pd, valid)
    if truth_pd is not None and photons.measured_over_predicted:
        c = photons.measured_over_predicted
        sel = _subset(len(counts), 256)
        scaled = object_deviance(ds.obj, probe, ds.xcoords[sel], ds.ycoords[sel], counts[sel],
                                 valid, lam_scale=c)
        photons = photons.model_copy(update={"truth_scale_fit": c,
                                             "truth_scaled_normalised_median":
                                                 _q(scaled.normalised, 0.5)})
    if devs:
        rel = f"{CONSISTENCY_DIR}/deviance_map.png"
        _plot_map(root / rel, devs)
        arts.append(rel)
    record = ConsistencyRecord(
        normalisation=NORMALISATION, final=final, network_only=network, truth=truth,
        photons=photons, positions=positions, model_output=model_out,
        valid_pixels=int(n * n if valid is None else np.asarray(valid, bool).sum()),
        detector_pixels=n * n, notes=notes,
        artifacts=[*arts, f"{CONSISTENCY_DIR}/{CONSISTENCY_JSON}"])
    write_json(out / CONSISTENCY_JSON, record.model_dump(mode="json"))
    return record


class BlockCollector:
    """A stand-in for the run recorder's interface that :func:`record_run_consistency` uses
    (``set_block``, ``add_artifact``), for callers outside a run (``infer``, ``analyze
    --rescore``): it keeps what would have gone into run_metadata.json."""

    def __init__(self):
        self.blocks: dict = {}
        self.artifacts: list[str] = []

    def set_block(self, name: str, value) -> None:
        self.blocks[name] = value

    def add_artifact(self, rel) -> None:
        self.artifacts.append(str(rel))


def record_run_consistency(rec, run_dir: str | Path, ds, pred,
                           activation_bound: float | None = None) -> ConsistencyRecord:
    """The scenario runner's hook: score the prediction (``Prediction.object_full`` and its
    ``patches``) and the truth, write the record and its files, and put a short summary in
    run_metadata (block ``data_consistency``) with the artifacts listed."""
    root = Path(run_dir)
    index = getattr(pred, "pattern_index", None)
    full = getattr(pred, "object_full", None)
    if full is not None:
        # (2, H, W) float32: real and imaginary part (write_npy stores real float32 only)
        write_npy(root / CONSISTENCY_DIR / "final_object.npy", np.stack([full.real, full.imag]))
    record = record_consistency(
        root, ds, final_obj=full, final_index=None if index is None else np.unique(index),
        network_patches=pred.patches if index is not None else None, network_index=index,
        network_x=pred.xcoords, network_y=pred.ycoords,
        valid=getattr(ds, "valid", None), activation_bound=activation_bound)
    block = {k: (None if v is None else {"normalised_median": v.normalised_median,
                                         "fraction_beyond_bound": v.fraction_beyond_bound,
                                         "relative_misfit_median": v.relative_misfit_median})
             for k, v in (("final", record.final), ("network_only", record.network_only),
                          ("truth", record.truth))}
    rec.set_block("data_consistency", {"path": f"{CONSISTENCY_DIR}/{CONSISTENCY_JSON}",
                                       "normalisation": record.normalisation, **block})
    for a in record.artifacts + ([f"{CONSISTENCY_DIR}/final_object.npy"] if full is not None
                                 else []):
        rec.add_artifact(a)
    return record


def load_consistency(run_dir: str | Path) -> ConsistencyRecord | None:
    """The run's consistency record, or None when the run has none (older runs)."""
    path = Path(run_dir) / CONSISTENCY_DIR / CONSISTENCY_JSON
    if not path.is_file():
        return None
    return ConsistencyRecord.model_validate_json(path.read_text(encoding="utf-8"))


def _plot_map(path: Path, devs: dict) -> None:
    """One panel per reconstruction: scan positions coloured by log10 normalised deviance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(devs), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for i, (name, (pd, _, x, y)) in enumerate(devs.items()):
        ax = fig.add_subplot(1, len(devs), i + 1)
        v = np.log10(np.clip(np.where(np.isfinite(pd.normalised), pd.normalised, 1e12),
                             1e-3, 1e12))
        sc = ax.scatter(x, y, c=v, s=10, cmap="magma", vmin=min(0.0, float(v.min())),
                        vmax=max(1.0, float(v.max())))
        ax.set_title(f"{name}: median D/E {_q(pd.normalised, 0.5) or float('nan'):.3g}",
                     fontsize=9)
        ax.set_xlabel("x (object pixels)")
        ax.set_ylabel("y (object pixels)")
        ax.invert_yaxis()
        ax.set_aspect("equal")
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04).set_label("log10 normalised deviance")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


__all__ = ["PATTERN_COLUMNS", "BlockCollector", "load_consistency", "record_consistency",
           "record_run_consistency"]
