"""One sweep point in a worker: simulate once, the PINN run and the baseline on the same data."""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..physics.stitching import COVERAGE_MIN_WEIGHT
from ..telemetry.writers import write_json
from .plan import BASELINE_METADATA, SCHEMA_VERSION, BaselineOptions, SweepPoint
from .resume import _read_json


# --------------------------------------------------------------------------------------------
# Worker
# --------------------------------------------------------------------------------------------
@dataclass
class PointTask:
    point: SweepPoint
    do_pinn: bool
    do_baseline: bool
    baseline: BaselineOptions
    threads: int
    progress: bool = False


def dataset_fingerprint(ds) -> str:
    """SHA-256 over the arrays that define a dataset (counts, positions, split, probe, object)."""
    h = hashlib.sha256()
    for arr in (ds.counts, ds.xcoords, ds.ycoords, ds.split, ds.probe, ds.obj):
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _error_block(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def _simulate_point(point: SweepPoint):
    from ..simulate import simulate

    cfg = point.request.config
    ds, record = simulate(cfg.simulation, scenario=cfg.scenario)
    fp = dataset_fingerprint(ds)
    sums = ds.counts.reshape(ds.n_patterns, -1).sum(axis=1, dtype=np.float64)
    test = ds.indices("test")
    info = {
        "schema_version": SCHEMA_VERSION, "name": point.name, "written_at": _now(),
        "sha256": fp, "fingerprint_of": "counts, xcoords, ycoords, split, probe, object",
        "nphotons": point.nphotons, "sim_seed": point.sim_seed,
        "object_seed": cfg.simulation.object_seed, "training_seed": point.training_seed,
        "n_patterns": int(ds.n_patterns), "test_patterns": int(len(test)), "N": int(ds.patch_size),
        "measured_photons_per_pattern": {"all": float(sums.mean()),
                                         "test": float(sums[test].mean()) if len(test) else None},
        "simulation": cfg.simulation.model_dump(mode="json"),
        "simulation_record": {k: record.get(k) for k in ("probe", "dataset_scale_info",
                                                         "split_intensity_stats")},
        "note": "the PINN run received this dataset in memory (its provenance says in_memory); "
                "the probe pre/post-normalisation record of the simulation is kept here",
    }
    return ds, info


def pinn_covered_mask(run_dir: Path, meta=None) -> tuple[np.ndarray | None, str]:
    """The PINN's evaluation region from a finished run directory, or (None, why not).
    ``meta``: its RunMetadata (read when None)."""
    from ..records.run_metadata import RunMetadata

    inf = Path(run_dir) / "inference_outputs"
    try:
        meta = meta if meta is not None else RunMetadata.read(Path(run_dir) / "run_metadata.json")
    except ValueError as exc:
        return None, f"cannot read the PINN's run metadata: {exc}"
    frac = meta.inference.coverage_fraction if meta.inference else None
    try:
        weight = np.load(inf / "coverage_weight.npy", allow_pickle=False)
        region = np.load(inf / "evaluation_region.npy", allow_pickle=False) > 0.5
    except (OSError, ValueError) as exc:
        return None, f"cannot read the PINN's coverage and evaluation region: {exc}"
    covered = weight >= COVERAGE_MIN_WEIGHT
    if frac is not None and abs(float(covered.mean()) - float(frac)) > 1e-9:
        return None, (f"mask from coverage_weight.npy covers {covered.mean():.6f} of the frame but "
                      f"the run recorded {frac:.6f}")
    return region, ("inference_outputs/evaluation_region.npy: the PINN's evaluation region "
                    "(stitch coverage & illuminated), checked against coverage_weight.npy")


def _run_baseline(point: SweepPoint, ds, info: dict, options: BaselineOptions,
                  progress: bool) -> dict:
    """The baseline stage on the point's data, scored on the PINN run's evaluation region when
    that run succeeded (else on its own). Never raises: the failure is in its metadata."""
    from ..records.baseline import DatasetRef
    from ..records.run_metadata import RunMetadata
    from ..stages.baseline import run_baseline

    cfg = point.request.config
    region, source = None, "PINN run of this point did not finish"
    try:
        run_ok = RunMetadata.read(point.run_dir / "run_metadata.json").status == "ok"
    except ValueError:
        run_ok = False
    if run_ok:
        region, source = pinn_covered_mask(point.run_dir)
    if region is not None and region.shape != tuple(ds.obj.shape):
        region, source = None, f"PINN mask shape {region.shape} != {tuple(ds.obj.shape)}"
    if region is None:
        source = f"baseline's own stitch-window coverage ({source})"
    dataset = DatasetRef(sha256=info["sha256"], record=str(point.dataset_record),
                         source="simulated once in the sweep worker, shared in memory with the "
                                "PINN run")
    try:
        outcome = run_baseline(ds, point.baseline_dir, options.config(),
                               stitch_window=cfg.inference.stitch_window,
                               seed=point.training_seed, evaluation=cfg.evaluation, region=region,
                               region_source=source, dataset=dataset, scenario=cfg.scenario,
                               point=point.describe(), force=True,
                               amp_vmax=cfg.evaluation.amp_vmax)
        status = {"status": "ok"}
        seconds = outcome.metadata.elapsed_seconds
    except Exception as exc:  # recorded in baseline_metadata.json, reported by the sweep
        from ..records.baseline import BaselineMetadata

        try:
            failed = BaselineMetadata.read(point.baseline_dir / BASELINE_METADATA)
            stage, seconds = failed.failed_stage, failed.elapsed_seconds
        except ValueError:   # failed before its metadata could be written
            stage, seconds = "prepare", None
        status = {"status": "failed", "stage": stage, "error": f"{type(exc).__name__}: {exc}"}
    if progress:
        print(f"[{point.name}] baseline {status['status']} in {seconds or 0:.1f} s", flush=True)
    return status


def _run_pinn(point: SweepPoint, ds, progress: bool, record: dict | None = None) -> dict:
    from ..records.base import RecordError
    from ..records.run_metadata import RunMetadata
    from ..scenarios.runner import run_scenario

    req = replace(point.request, dataset=ds, dataset_record=record, force=True, progress=progress)
    try:
        run_scenario(req)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        meta = RunMetadata.read(point.run_dir / "run_metadata.json")
    except RecordError as exc:
        return {"status": "failed", "stage": None, "error": error or str(exc)}
    if error is None and meta.status == "ok":
        return {"status": "ok"}
    return {"status": "failed", "stage": meta.failed_stage,
            "error": error or (meta.error.message if meta.error else "status not ok")}


def run_point(task: PointTask) -> dict:
    """Do the unfinished parts of one point (in a worker process or in-process). Never raises for
    a failure of the point itself: returns {name, pinn, baseline, dataset_sha256, seconds}."""
    import torch

    t0 = time.perf_counter()
    point = task.point
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(task.threads)))
    result: dict[str, Any] = {"name": point.name, "pinn": None, "baseline": None}
    try:
        try:
            ds, info = _simulate_point(point)
        except Exception as exc:
            err = {"status": "failed", "stage": "simulate", "error": f"{type(exc).__name__}: {exc}"}
            result["pinn"] = err if task.do_pinn else None
            result["baseline"] = dict(err) if task.do_baseline else None
            return result
        result["dataset_sha256"] = info["sha256"]
        do_pinn = task.do_pinn
        old = _read_json(point.dataset_record)
        if not do_pinn and old and old.get("sha256") not in (None, info["sha256"]):
            # The finished run saw other data (e.g. the simulator changed): redo it so that the
            # baseline and the PINN see identical photons.
            do_pinn = True
            result["pinn_redone_reason"] = "dataset fingerprint differs from the finished run's"
        if do_pinn or old is None:
            write_json(point.dataset_record, info)
        if do_pinn:
            result["pinn"] = _run_pinn(point, ds, task.progress, info.get("simulation_record"))
        if task.do_baseline or (do_pinn and not task.do_pinn and task.baseline.enabled):
            result["baseline"] = _run_baseline(point, ds, info, task.baseline, task.progress)
        return result
    finally:
        result["seconds"] = time.perf_counter() - t0
        torch.set_num_threads(previous_threads)
