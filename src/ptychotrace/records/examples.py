"""Valid records for tests and examples, built from the models (so a renamed field fails here).

The comparison comes from the real evaluation of a small synthetic pair (no hand-written copy of
the schema); the run metadata holds the blocks a finished run always has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .baseline import BaselineMetadata, BaselineSettings
from .comparison import COMPARISON_FILE, ComparisonRecord
from .run_metadata import (
    RUN_METADATA_FILE,
    Counts,
    DatasetScaleInfo,
    Inference,
    InferenceSeconds,
    RunMetadata,
    Training,
)
from .sweep import SweepSummary

__all__ = ["synthetic_pair", "comparison_record", "run_metadata", "baseline_metadata",
           "write_run_dir", "sweep_summary"]


def synthetic_pair(shape: tuple[int, int] = (40, 40), seed: int = 0, noise: float = 0.05,
                   amp_scale: float = 1.0):
    """(prediction, truth, covered): complex (H, W) objects (amplitude ~1, phase ~ +-0.5 rad)
    and a bool coverage with an uncovered border of 4 px."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[:h, :w]
    amp = 1.0 + 0.3 * np.sin(x / 3.0) * np.cos(y / 4.0)
    phase = 0.5 * np.sin(y / 5.0)
    truth = (amp * np.exp(1j * phase)).astype(np.complex64)
    pa = amp_scale * amp * (1 + noise * rng.standard_normal(shape))
    pp = phase + noise * rng.standard_normal(shape)
    pred = (pa * np.exp(1j * pp)).astype(np.complex64)
    covered = np.zeros(shape, bool)
    covered[4:-4, 4:-4] = True
    return pred, truth, covered


def comparison_record(seed: int = 0, **kwargs: Any) -> ComparisonRecord:
    """A real comparison (stages.evaluate.evaluate) of :func:`synthetic_pair`."""
    from ..stages.evaluate import evaluate

    pair_kw = {k: kwargs.pop(k) for k in ("shape", "noise", "amp_scale") if k in kwargs}
    pred, truth, covered = synthetic_pair(seed=seed, **pair_kw)
    return evaluate(pred, truth, covered, **kwargs)


def run_metadata(comparison: ComparisonRecord | None = None, status: str = "ok",
                 **blocks: Any) -> RunMetadata:
    """A finished run's run_metadata.json with the typed blocks; ``blocks`` replace or add."""
    cmp = comparison or comparison_record()
    fields: dict[str, Any] = {
        "status": status, "scenario": "gs1_ideal", "timestamp": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z", "elapsed_seconds": 60.0,
        "stage_seconds": {"simulate": 1.0, "group": 1.0, "train": 50.0, "infer": 5.0,
                          "compare": 3.0},
        "config": {}, "cli_args": {},
        "counts": Counts(total_images=64, train_count=32, test_count=32, group_count=32,
                         train_groups=32, test_groups=32, group_limit=None, gridsize=1, N=32,
                         nphotons=1e9),
        "dataset_scale_info": DatasetScaleInfo(N=32, nphotons=1e9, batch_mean_sum_intensity=1e5,
                                               dataset_scale=100.0, fallback_scale=1976.0,
                                               used_mode="dataset"),
        "training": Training(epochs_completed=1, status="completed"),
        "inference": Inference(groups_available=32, groups_used=32, group_limit=None,
                               patterns_used=32, stitched_shape=list(cmp.canvas_shape),
                               stitch_window=12, coverage_fraction=cmp.coverage_fraction,
                               patterns_per_second=100.0,
                               seconds=InferenceSeconds(total=0.5, network=0.3)),
        "prediction_scale": cmp.prediction_scale,
        "comparison": cmp.headline(),
        "artifacts": [COMPARISON_FILE],
    }
    fields.update(blocks)
    return RunMetadata(**fields)


def baseline_metadata(comparison: ComparisonRecord | None = None, status: str = "ok",
                      **fields: Any) -> BaselineMetadata:
    from .baseline import ReconstructionSummary

    cmp = comparison or comparison_record()
    base: dict[str, Any] = {
        "status": status, "timestamp": "2026-01-01T00:00:00Z",
        "baseline_settings": BaselineSettings(algorithm="lsqml", iterations=5, split="test"),
        "reconstruction": ReconstructionSummary(
            algorithm="lsqml", likelihood="amplitude", split="test", n_patterns=32, iterations=5,
            best_iteration=5, stop_reason="iterations", total_iterations=5, wall_time_s=2.0,
            patterns_per_second=80.0, seconds_per_pattern=0.0625, coverage_fraction=0.5,
            illuminated_fraction=0.6, covered_illuminated_fraction=0.5),
        "comparison": cmp.headline(),
    }
    base.update(fields)
    return BaselineMetadata(**base)


def write_run_dir(root: str | Path, meta: RunMetadata | None = None,
                  comparison: ComparisonRecord | None = None) -> Path:
    """run_metadata.json and comparison_metrics.json of a finished run under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cmp = comparison or comparison_record()
    (meta or run_metadata(cmp)).write(root / RUN_METADATA_FILE)
    cmp.write(root / COMPARISON_FILE)
    return root


def sweep_summary(points: dict[str, tuple[float, float | None]],
                  scenario: str = "gs1_ideal") -> SweepSummary:
    """A PINN-only sweep_summary.json of one seed per dose: ``points`` {run name: (nphotons,
    amplitude Pearson r, None for a failed point)}."""
    from .sweep import DoseBlock, MethodAggregate, MethodResult, PointMetrics, Seeds, SweepRun

    runs, per_dose = [], []
    for name, (nphotons, pearson) in points.items():
        ok = pearson is not None
        metrics = PointMetrics(amplitude_pearson_r=pearson) if ok else None
        runs.append(SweepRun(name=name, nphotons=nphotons, seed_index=0, sim_seed=42,
                             training_seed=42, run_dir=f"runs/{name}", baseline_dir="",
                             pinn=MethodResult(status="ok" if ok else "failed", metrics=metrics)))
        per_dose.append(DoseBlock(nphotons=nphotons, label=f"{nphotons:g}", pinn=MethodAggregate(
            n_ok=int(ok), n_seeds=1, per_seed=[], mean={"amplitude_pearson_r": pearson},
            std={"amplitude_pearson_r": None}, n={"amplitude_pearson_r": int(ok)})))
    return SweepSummary(status="ok", generated_at="2026-01-01T00:00:00Z", scenario=scenario,
                        output_dir="sweep", doses=[p[0] for p in points.values()],
                        methods=["pinn"], seeds=Seeds(count=1, base_sim_seed=42,
                                                      base_training_seed=42),
                        baseline={}, per_dose=per_dose, runs=runs)
