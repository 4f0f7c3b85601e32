"""Input faults for the analyzer's fault suite: what a run would see if one input were wrong.

``inject(ds, fault)`` returns a new Dataset (the original is not modified) in which one input is
wrong the way it goes wrong in practice; the counts stay the measured ones unless the fault is in
their units. ``build_case(healthy_pieces(run, ds), case, out)`` writes the run directory of one fault case
derived from a healthy run without training (input faults: the inputs faulted, the consistency
record and the comparison recomputed; model faults: the network's output or the recorded flags
replaced). Used by tests/test_faults.py and benchmarks/analyzer_cases.py (docs/scenarios.md).

Faults (name: what changes):
    counts_units   counts x COUNTS_FACTOR (data stored in other units; the dose metadata kept)
    probe_scale    probe amplitude x 2 (probe stored 2x too strong)
    wrong_probe    the other probe model (ideal disk <-> focused), scaled to the same energy
    swap_xy        x and y of the scan positions exchanged
    jitter         random position errors, normal with JITTER_PX px per axis (seeded)
    offset         a constant position offset OFFSET_PX = (dy, dx) px
    truth_shift    the ground truth shifted by TRUTH_SHIFT_PX = (dy, dx) px (evaluation frame)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..physics.probe import focused_probe, ideal_probe

COUNTS_FACTOR = 3.2e-6       # the reported case: reconstruction at sqrt(3.2e-6) = 0.0018x
JITTER_PX = 2.0
OFFSET_PX = (3.0, -2.0)
TRUTH_SHIFT_PX = (3, 4)
INPUT_FAULTS = ("counts_units", "probe_scale", "wrong_probe", "swap_xy", "jitter", "offset",
                "truth_shift")


def _other_probe(probe: np.ndarray) -> np.ndarray:
    """The other probe model at the same energy sum|P|^2 (photons)."""
    n = probe.shape[0]
    ideal = ideal_probe(n)
    # the ideal disk is real and centro-symmetric; the focused probe is complex
    is_ideal = float(np.abs(np.imag(probe)).max()) < 1e-6 * float(np.abs(probe).max())
    other = focused_probe(n) if is_ideal else ideal
    e_old = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    e_new = float(np.sum(np.abs(other.astype(np.complex128)) ** 2))
    return (other * np.sqrt(e_old / e_new)).astype(np.complex64)


def inject(ds: Dataset, fault: str, seed: int = 0) -> Dataset:
    """A copy of ``ds`` with one input fault (see the module docstring)."""
    if fault == "counts_units":
        return dataclasses.replace(ds, counts=(ds.counts * np.float32(COUNTS_FACTOR)))
    if fault == "probe_scale":
        return dataclasses.replace(ds, probe=(ds.probe * np.float32(2.0)).astype(np.complex64))
    if fault == "wrong_probe":
        return dataclasses.replace(ds, probe=_other_probe(ds.probe))
    if fault == "swap_xy":
        return dataclasses.replace(ds, xcoords=ds.ycoords.copy(), ycoords=ds.xcoords.copy())
    if fault == "jitter":
        rng = np.random.default_rng(seed)
        h, w = ds.obj.shape if ds.obj is not None else (np.inf, np.inf)
        x = np.clip(ds.xcoords + rng.normal(0, JITTER_PX, ds.n_patterns), 0, w - 1)
        y = np.clip(ds.ycoords + rng.normal(0, JITTER_PX, ds.n_patterns), 0, h - 1)
        return dataclasses.replace(ds, xcoords=x, ycoords=y)
    if fault == "offset":
        dy, dx = OFFSET_PX
        return dataclasses.replace(ds, xcoords=ds.xcoords + dx, ycoords=ds.ycoords + dy)
    if fault == "truth_shift":
        if ds.obj is None:
            raise ValueError("truth_shift needs a ground truth")
        return dataclasses.replace(ds, obj=np.roll(ds.obj, TRUTH_SHIFT_PX, axis=(0, 1)))
    raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(INPUT_FAULTS)}")


# --------------------------------------------------------------------------------------------
# Fault cases as run directories, derived from one healthy run without training
# --------------------------------------------------------------------------------------------
MODEL_FAULTS = ("flat_output", "saturated_output", "nan_in_training", "wrong_labels",
                "failed_run")
#: What each case should be called (rules.STAGE_LABELS keys).
EXPECTED_STAGE = {"counts_units": "dose_units", "probe_scale": "probe_scale",
                  "wrong_probe": "probe", "swap_xy": "scan_positions",
                  "jitter": "scan_positions", "offset": "evaluation_frame",
                  "truth_shift": "evaluation_frame", "flat_output": "model_output",
                  "saturated_output": "model_output", "nan_in_training": "nan_in_training",
                  "wrong_labels": "labels", "failed_run": "run_status"}


@dataclasses.dataclass
class HealthyPieces:
    """A healthy run directory and what its variants are built from."""

    run: Path
    ds: Dataset
    config: object             # RunConfig
    pred: object               # Prediction of the network alone (refinement off)
    final: np.ndarray          # (H, W) complex64 final object of the run
    region: np.ndarray         # (H, W) bool evaluation region of the run


def healthy_pieces(run_dir: str | Path, ds: Dataset) -> HealthyPieces:
    """Read a finished healthy run made on ``ds``; re-run its network (no refinement) for the
    network-only patches."""
    import json

    from ..config import RunConfig
    from ..infer.predict import predict
    from ..train.checkpoint import load_model

    run = Path(run_dir)
    md = json.loads((run / "run_metadata.json").read_text(encoding="utf-8"))
    cfg = RunConfig.model_validate(md["config"])
    model = load_model(md["training"].get("best_checkpoint") or md["training"]["last_checkpoint"])
    pred = predict(model, ds, cfg.inference.model_copy(update={"refine_steps": 0}))
    f = np.load(run / "consistency" / "final_object.npy", allow_pickle=False)
    region = np.load(run / "inference_outputs" / "evaluation_region.npy", allow_pickle=False) > 0
    return HealthyPieces(run, ds, cfg, pred, (f[0] + 1j * f[1]).astype(np.complex64), region)


def write_variant(h: HealthyPieces, out: str | Path, ds: Dataset, *,
                  final: np.ndarray | None = None, patches: np.ndarray | None = None,
                  md_update: dict | None = None, pred=None, region=None) -> Path:
    """A copy of the healthy run directory as if the run had seen ``ds`` and produced ``final``
    (object frame) and ``patches`` (network output): the consistency record and the comparison
    are recomputed with the project's own code; ``md_update`` {dotted.path: value} edits
    run_metadata.json."""
    import json
    import shutil

    from ..evaluate.consistency_record import record_consistency
    from ..evaluate.metrics import evaluate_reconstruction
    from ..telemetry.writers import write_json

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new directory for the fault case")
    shutil.copytree(h.run, out)
    pred = h.pred if pred is None else pred
    region = h.region if region is None else region
    final = h.final if final is None else final
    patches = pred.patches if patches is None else patches
    record_consistency(out, ds, final_obj=final, final_index=np.unique(pred.pattern_index),
                       network_patches=patches, network_index=pred.pattern_index,
                       network_x=pred.xcoords, network_y=pred.ycoords,
                       valid=getattr(ds, "valid", None))
    cmp = evaluate_reconstruction(np.where(region, final, 0), ds.obj, region,
                                  evaluation=h.config.evaluation)
    write_json(out / "comparison_metrics.json", cmp)
    md = json.loads((out / "run_metadata.json").read_text(encoding="utf-8"))
    for path, value in (md_update or {}).items():
        node = md
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    write_json(out / "run_metadata.json", md)
    return out


def _roll(obj: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return np.roll(obj, (int(round(dy)), int(round(dx))), axis=(0, 1))


#: The final object a consistent solver returns under each input fault (None: none exists, the
#: healthy run's object is kept and does not explain the faulted data).
_SOLVER = {
    "counts_units": lambda f: f * np.float32(np.sqrt(COUNTS_FACTOR)),
    "probe_scale": lambda f: f * np.float32(0.5),
    "offset": lambda f: _roll(f, *OFFSET_PX),
}


def build_case(h: HealthyPieces, case: str, out: str | Path) -> Path:
    """The run directory of one fault case (INPUT_FAULTS or MODEL_FAULTS) under ``out``."""
    if case in INPUT_FAULTS:
        solver = _SOLVER.get(case)
        return write_variant(h, out, inject(h.ds, case),
                             final=None if solver is None else solver(h.final))
    patches = h.pred.patches
    amp_mean = float(np.nanmean(np.abs(patches)))
    if case == "flat_output":
        return write_variant(h, out, h.ds, patches=np.full_like(patches, amp_mean))
    if case == "saturated_output":   # the amplitude clipped at a ceiling below its mean
        return write_variant(h, out, h.ds, patches=np.minimum(
            np.abs(patches), 0.2 * amp_mean).astype(np.complex64))
    if case == "nan_in_training":
        bad = patches.copy()
        bad[::3] = np.nan
        return write_variant(h, out, h.ds, patches=bad,
                             md_update={"training.nan_detected": True})
    if case == "wrong_labels":
        return write_variant(h, out, h.ds, md_update={
            "label_vs_truth_analysis.amplitude_gap_pct": 100.0,
            "label_vs_truth_analysis.verdict": "inconsistent (labels 2x the truth)"})
    if case == "failed_run":
        return write_variant(h, out, h.ds, md_update={"status": "failed",
                                                      "failed_stage": "infer"})
    raise ValueError(f"unknown case {case!r}; choose from "
                     f"{', '.join(INPUT_FAULTS + MODEL_FAULTS)}")
