"""Dose sweeps of a scenario: PINN runs (and the iterative baseline on identical data) over
doses and seeds, with resume, parallel workers, a summary and figures. See :mod:`.sweep`."""

from .sweep import (
    METRICS,
    BaselineOptions,
    PointTask,
    SweepPlan,
    SweepPoint,
    baseline_metrics,
    build_summary,
    dataset_fingerprint,
    dose_label,
    parse_nphotons,
    pinn_covered_mask,
    pinn_metrics,
    plan_sweep,
    point_name,
    run_point,
    run_sweep,
)

__all__ = ["METRICS", "BaselineOptions", "PointTask", "SweepPlan", "SweepPoint",
           "baseline_metrics", "build_summary", "dataset_fingerprint", "dose_label",
           "parse_nphotons", "pinn_covered_mask", "pinn_metrics", "plan_sweep", "point_name",
           "run_point", "run_sweep"]
