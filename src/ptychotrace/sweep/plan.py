"""Sweep plan: dose parsing, point naming, the points of a sweep and the baseline options."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0"
RUNS = "runs"
BASELINE = "baseline"
DATASETS = "datasets"
SUMMARY_JSON = "sweep_summary.json"
SUMMARY_MD = "sweep_summary.md"
BASELINE_METADATA = "baseline_metadata.json"
COMPARISON = "comparison_metrics.json"
METHODS = ("pinn", "baseline")

#: Per-run metrics gathered into the summary: key -> description (units).
METRICS: dict[str, str] = {
    "amplitude_ssim": "amplitude SSIM on the covered region",
    "amplitude_pearson_r": "amplitude Pearson r on the covered region",
    "amplitude_frc_half_bit_px": "amplitude FRC 1/2-bit resolution (pixels; lower is better; 2.0, "
                                 "the Nyquist limit, when the curve never falls below the "
                                 "threshold; null when the FRC is undefined)",
    "phase_ssim": "phase SSIM (null when the truth phase is constant)",
    "phase_pearson_r": "phase Pearson r (null when the truth phase is constant)",
    "amplitude_bias_mean": "mean of (prediction - truth) amplitude on the covered region, after "
                           "the applied prediction scale",
    "phase_bias_mean": "mean of the wrapped phase difference (rad) after offset removal",
    "least_squares_scale": "least-squares amplitude scale sum(p t)/sum(p p) (diagnostic, always "
                           "computed)",
    "prediction_scale_applied": "amplitude scale value applied before the metrics (null: none)",
    "coverage_fraction": "fraction of the object frame evaluated",
    "train_seconds": "PINN: wall time of the train stage (s)",
    "inference_seconds": "PINN: inference wall time (s)",
    "inference_patterns_per_second": "PINN: inference throughput (patterns/s)",
    "baseline_seconds": "baseline: reconstruction wall time, all iterations (s)",
    "baseline_iterations": "baseline: iterations run",
    "seconds_per_pattern": "time per reconstructed pattern (s): PINN inference only, or baseline "
                           "wall time / patterns",
    "total_seconds_per_pattern": "PINN: (train + inference) / inferred patterns (s); baseline: as "
                                 "seconds_per_pattern",
    "network_seconds_per_pattern": "PINN: network forward pass alone / inferred patterns (s), "
                                   "without the twin fix and the refinement",
    "patterns": "patterns reconstructed (PINN: inferred test patterns; baseline: test split)",
}


# --------------------------------------------------------------------------------------------
# Parsing and naming
# --------------------------------------------------------------------------------------------
def dose_label(nphotons: float) -> str:
    """Compact, path-safe dose label: 1000 -> '1e3', 2.5e4 -> '2.5e4', 5 -> '5e0'."""
    mantissa, exponent = f"{float(nphotons):.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def parse_nphotons(text: str) -> list[float]:
    """Parse a comma-separated list of doses (photons per pattern), e.g. ``1e3,1e4,1e5``.

    Every item must be a finite number > 0; duplicates (same :func:`dose_label`) are refused.
    Returns the doses in the order given. Raises ValueError with a message naming the bad item.
    """
    example = "expected a comma-separated list of positive photon counts, e.g. 1e3,1e4,1e5"
    if text is None or not str(text).strip():
        raise ValueError(f"empty dose list; {example}")
    doses: list[float] = []
    seen: dict[str, str] = {}
    for pos, raw in enumerate(str(text).split(","), start=1):
        item = raw.strip()
        if not item:
            raise ValueError(f"item {pos} is empty in {text!r}; {example}")
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"item {pos} {item!r} is not a number; {example}") from None
        if not math.isfinite(value):
            raise ValueError(f"item {pos} {item!r} is not finite; {example}")
        if value <= 0:
            raise ValueError(f"item {pos} {item!r} must be > 0 photons per pattern; {example}")
        label = dose_label(value)
        if label in seen:
            raise ValueError(f"item {pos} {item!r} repeats dose {seen[label]!r}; give each dose once")
        seen[label] = item
        doses.append(value)
    return doses


def point_name(scenario: str, nphotons: float, sim_seed: int) -> str:
    return f"{scenario}_n{dose_label(nphotons)}_s{sim_seed}"


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
@dataclass
class BaselineOptions:
    """Whether and how the baseline runs at every point (a BaselineConfig; see
    :func:`ptychotrace.stages.baseline.run_baseline`)."""

    enabled: bool = False
    iterations: int | None = None        # None: DEFAULT_ITERATIONS[algorithm]
    algorithm: str = "lsqml"
    split: str = "test"
    smooth: bool = False                 # the hold-out-chosen low-pass (baseline --smooth)

    config_fields: dict = field(default_factory=dict)   # the other BaselineConfig fields

    @classmethod
    def from_config(cls, cfg, enabled: bool) -> BaselineOptions:
        """From a RunConfig's ``baseline`` section (the sweep's --baseline-* flags)."""
        d = cfg.model_dump()
        return cls(enabled=enabled, iterations=d.pop("iterations"), algorithm=d.pop("algorithm"),
                   split=d.pop("split"), smooth=d.pop("smooth"), config_fields=d)

    def config(self):
        from ..config import BaselineConfig

        return BaselineConfig(**{**self.config_fields, "algorithm": self.algorithm,
                                 "iterations": self.iterations, "split": self.split,
                                 "smooth": self.smooth})

    def signature(self) -> dict:
        from ..stages.baseline import settings_of

        return settings_of(self.config()).model_dump(mode="json", exclude_none=True)


@dataclass
class SweepPoint:
    name: str
    nphotons: float
    seed_index: int
    sim_seed: int
    training_seed: int
    request: Any                          # RunRequest without a dataset
    run_dir: Path
    baseline_dir: Path
    dataset_record: Path

    def describe(self) -> dict:
        return {"name": self.name, "nphotons": self.nphotons, "seed_index": self.seed_index,
                "sim_seed": self.sim_seed, "training_seed": self.training_seed,
                "run_dir": str(self.run_dir), "baseline_dir": str(self.baseline_dir)}


@dataclass
class SweepPlan:
    scenario: str
    output_dir: Path
    doses: list[float]
    seeds: int
    base_sim_seed: int
    base_training_seed: int
    points: list[SweepPoint]
    baseline: BaselineOptions = field(default_factory=BaselineOptions)
    jobs: int = 1
    force: bool = False
    progress: bool = True
    cli_args: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def plan_sweep(scenario: str, doses: list[float], seeds: int, output_dir: Path,
               make_request: Callable[[Path, dict], Any], baseline: BaselineOptions | None = None,
               jobs: int = 1, force: bool = False, progress: bool = True,
               cli_args: dict | None = None) -> SweepPlan:
    """Build the points of a sweep.

    make_request(run_dir, overrides) -> RunRequest resolves the configuration with the given
    dotted overrides on top of the user's flags (e.g. ``commands.run.request_from_args``).
    The base seeds are read from a request resolved at the first dose, so they include the
    scenario defaults, a config file and the --sim-seed/--seed flags.
    """
    if not doses:
        raise ValueError("a sweep needs at least one dose")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    output_dir = Path(output_dir)
    probe = make_request(output_dir / RUNS / "_probe", {"simulation.nphotons": float(doses[0])})
    base_sim = int(probe.config.simulation.sim_seed)
    base_train = int(probe.config.training.seed)
    points = []
    for dose in doses:
        for k in range(seeds):
            sim_seed, train_seed = base_sim + k, base_train + k
            name = point_name(scenario, dose, sim_seed)
            run_dir = output_dir / RUNS / name
            req = make_request(run_dir, {"simulation.nphotons": float(dose),
                                         "simulation.sim_seed": sim_seed,
                                         "training.seed": train_seed})
            req.data_path = None
            req.cli_args = {**req.cli_args, "nphotons": float(dose), "sweep": {
                "point": name, "seed_index": k, "sim_seed": sim_seed, "training_seed": train_seed,
                "sweep_dir": str(output_dir)}}
            points.append(SweepPoint(name, float(dose), k, sim_seed, train_seed, req, run_dir,
                                     output_dir / BASELINE / name,
                                     output_dir / DATASETS / f"{name}.json"))
    return SweepPlan(scenario=scenario, output_dir=output_dir, doses=[float(d) for d in doses],
                     seeds=seeds, base_sim_seed=base_sim, base_training_seed=base_train,
                     points=points, baseline=baseline or BaselineOptions(), jobs=jobs, force=force,
                     progress=progress, cli_args=dict(cli_args or {}),
                     warnings=list(probe.warnings))
