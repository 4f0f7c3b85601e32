"""The one baseline stage: reconstruct with the iterative baseline, evaluate, write.

``ptychotrace baseline`` and every sweep point call :func:`run_baseline`; it writes
baseline_metadata.json (first as a partial record, then final; a failure is recorded with its
stage and error and re-raised), comparison_metrics.json (with a ground truth), the object's
arrays and images and stats.json. The evaluation is :func:`.evaluate.evaluate` on the
baseline's own ``covered & illuminated`` region, or on a given region (the sweep passes the PINN
run's evaluation region so both methods are scored on the same pixels).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BaselineConfig, EvaluationConfig
from ..records.baseline import (
    BASELINE_METADATA_FILE,
    BaselineMetadata,
    BaselineSettings,
    Coverage,
    DatasetRef,
    ReconstructionSummary,
)
from ..records.comparison import COMPARISON_FILE, ComparisonRecord
from ..records.run_metadata import RunError
from ..telemetry.writers import write_json, write_npy
from .evaluate import evaluate
from .reconstruction import object_pixel_size_m, write_object, write_truth_comparison

#: Files every baseline directory holds (comparison_metrics.json too with a ground truth).
OUTPUT_FILES = ("amplitude.npy", "phase.npy", "coverage.npy", "illumination.npy",
                "evaluation_region.npy", "amplitude.png", "phase.png", "stats.json",
                BASELINE_METADATA_FILE)


@dataclass
class BaselineOutcome:
    result: Any                       # baseline.BaselineResult
    metadata: BaselineMetadata
    comparison: ComparisonRecord | None


def settings_of(cfg: BaselineConfig) -> BaselineSettings:
    """The resume signature (algorithm, resolved iterations, split; smooth only when on)."""
    from ..baseline import DEFAULT_ITERATIONS

    it = cfg.iterations if cfg.iterations is not None else DEFAULT_ITERATIONS[cfg.algorithm]
    return BaselineSettings(algorithm=cfg.algorithm, iterations=int(it), split=cfg.split,
                            smooth=True if cfg.smooth else None)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def coverage_block(region: np.ndarray, result, used: str, source: str) -> Coverage:
    return Coverage(
        used=used, source=source, fraction_used=float(region.mean()),
        baseline_fraction=float(result.covered.mean()),
        pinn_fraction=float(region.mean()) if used == "pinn" else None,
        identical_to_baseline_mask=bool(np.array_equal(region, result.covered)),
        used_outside_illuminated_px=int((region & ~result.illuminated).sum()),
        rule="a given evaluation region (the sweep: the PINN run's covered & illuminated) when "
             "there is one, else the baseline's own stitch coverage & illuminated (same rules)")


def run_baseline(ds, out_dir: Path, cfg: BaselineConfig, *, stitch_window: int = 20,
                 seed: int = 0, evaluation: EvaluationConfig | None = None,
                 region: np.ndarray | None = None, region_source: str | None = None,
                 dataset: DatasetRef | None = None, scenario: str | None = None,
                 point: dict | None = None, progress=None, force: bool = False,
                 amp_vmax: float | None = None) -> BaselineOutcome:
    """Reconstruct ``ds`` per ``cfg`` into ``out_dir`` (moved aside first when it has content
    and ``force``; refused otherwise) and evaluate against ``ds.obj`` when present.
    ``seed``: used when ``cfg.seed`` is None (callers pass the training seed)."""
    from ..baseline import reconstruct
    from ..telemetry.recorder import prepare_run_dir

    out = Path(out_dir)
    backup = prepare_run_dir(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta = BaselineMetadata(status="failed", partial=True, scenario=scenario, timestamp=_now(),
                            point=point, dataset=dataset or DatasetRef(),
                            baseline_settings=settings_of(cfg),
                            previous_contents_moved_to=str(backup) if backup else None,
                            config=cfg.model_dump(mode="json"))
    meta.write(out / BASELINE_METADATA_FILE)
    stage, result, cmp = "reconstruct", None, None
    try:
        result = reconstruct(ds, split=cfg.split, iterations=meta.baseline_settings.iterations,
                             algorithm=cfg.algorithm, group_limit=cfg.group_limit,
                             seed=cfg.seed if cfg.seed is not None else seed, progress=progress,
                             likelihood=cfg.likelihood, holdout=cfg.holdout,
                             patience=cfg.patience, window=stitch_window, smooth=cfg.smooth,
                             damping=cfg.damping, damping_photons=cfg.damping_photons)
        meta.reconstruction = ReconstructionSummary.model_validate(result.summary())
        stage = "compare"
        used = "pinn" if region is not None else "baseline"
        mask = result.covered_illuminated if region is None else np.asarray(region, bool)
        if ds.obj is not None:
            cmp = evaluate(result.obj, ds.obj, result.covered if region is None else mask,
                           result.illuminated if region is None else None,
                           evaluation=evaluation, recorded_scale=1.0, mask_source=region_source)
            meta.coverage = coverage_block(mask, result, used, region_source or
                                           "the baseline's own coverage & illuminated")
            cmp_dump = cmp.dump()
            cmp_dump["coverage"] = meta.coverage.dump()
            write_json(out / COMPARISON_FILE, cmp_dump)
            meta.comparison = cmp.headline()
        stage = "artifacts"
        meta.artifacts = _write_outputs(out, ds, result, mask, cmp, amp_vmax)
        meta.status, meta.partial = "ok", False
        return BaselineOutcome(result, meta, cmp)
    except Exception as exc:
        meta.status, meta.partial, meta.failed_stage = "failed", False, stage
        meta.error = RunError(type=type(exc).__name__, message=str(exc),
                              traceback="".join(traceback.format_exception(exc)))
        raise
    finally:
        import torch

        meta.elapsed_seconds = time.perf_counter() - t0
        meta.finished_at = _now()
        meta.environment = {"torch_threads": torch.get_num_threads(),
                            "python": sys.version.split()[0]}
        meta.write(out / BASELINE_METADATA_FILE)


def _write_outputs(out: Path, ds, result, region: np.ndarray, cmp: ComparisonRecord | None,
                   amp_vmax: float | None) -> list[str]:
    amp = np.abs(result.obj).astype(np.float32)
    phase = np.angle(result.obj).astype(np.float32)
    shown = region if region.any() else result.illuminated
    vals = amp[shown]
    limits = (float(vals.min()), float(vals.max())) if vals.size else None
    label = f"baseline {result.algorithm} (iterate {result.best_iteration})"
    px_m = object_pixel_size_m(ds)   # scale bars where the geometry is known (issue #13)
    names = write_object(out, amp, phase, result.illuminated, label, amp_limits=limits,
                         pixel_size_m=px_m)
    write_npy(out / "coverage.npy", result.covered.astype(np.float32))
    write_npy(out / "illumination.npy", result.illumination)
    write_npy(out / "evaluation_region.npy", region.astype(np.float32))
    names += ["coverage.npy", "illumination.npy", "evaluation_region.npy"]
    if cmp is not None:
        names += write_truth_comparison(out, amp, phase, ds.obj, region, cmp, "baseline",
                                        amp_vmax=amp_vmax, pixel_size_m=px_m)
        names.append(COMPARISON_FILE)
    a_cov = amp[result.covered]
    stats = {
        "method": "iterative baseline (known probe and positions)",
        "reconstruction": result.summary(),
        "amplitude_covered": {"mean": float(a_cov.mean()) if a_cov.size else None,
                              "std": float(a_cov.std()) if a_cov.size else None,
                              "min": float(a_cov.min()) if a_cov.size else None,
                              "max": float(a_cov.max()) if a_cov.size else None},
        "comparison": None if cmp is None else cmp.headline().dump(),
        "files": {"amplitude.npy": "|object|, float32, object frame (H, W), 0 where not illuminated",
                  "phase.npy": "angle(object), float32, radians",
                  "coverage.npy": "1 on the covered region (PINN-consistent), float32",
                  "illumination.npy": "summed probe intensity scatter(|P|^2), photons, float32",
                  "evaluation_region.npy": "1 on the evaluated pixels, float32"},
    }
    write_json(out / "stats.json", stats)
    return names + ["stats.json", BASELINE_METADATA_FILE]
