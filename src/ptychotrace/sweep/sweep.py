"""Dose sweeps: one scenario at several photon doses and seeds, PINN and (optionally) the iterative
baseline on identical data, with resume, parallel workers, a summary and figures.

Layout of a sweep directory ``DIR``::

    runs/<scenario>_n<dose>_s<sim_seed>/      a normal run directory (telemetry.md) per point
    baseline/<same name>/                     the baseline of that point (--with-baseline):
        baseline_metadata.json, comparison_metrics.json, amplitude.npy, phase.npy (object
        frame, 0 outside the evaluated region), reconstruction.png
    datasets/<same name>.json                 the simulated data of the point: fingerprint, seeds,
                                              probe and dose blocks of the simulation record
    sweep_summary.json, sweep_summary.md      per dose, per seed and mean/std across seeds
    quality_vs_dose.png, bias_vs_dose.png, time_vs_dose.png

A *point* is one (dose, seed index k). Seed k uses ``simulation.sim_seed = base_sim + k`` and
``training.seed = base_train + k`` (the bases are the resolved scenario/CLI values); the baseline
uses ``seed = training.seed`` for its photon hold-out. The dataset is simulated once per point
inside the worker and handed in memory both to :func:`run_scenario` (``RunRequest.dataset``) and to
the baseline, so both reconstruct the same photons; its SHA-256 fingerprint is recorded in
``datasets/<name>.json`` and in the baseline's metadata.

Identical evaluation: the baseline is compared with :func:`evaluate_reconstruction` using the run's
own evaluation settings (sub-pixel registration, phase ramp, amplitude scale mode; a "recorded"
scale is 1 for the baseline, whose object is in object units by construction) on the PINN's
covered region. The baseline reconstructs the *whole* test split (no ``group_limit``), so its own
coverage can be larger than the PINN's when ``--group-limit`` is used; the PINN's mask is used
whenever the PINN run of the point succeeded (the stitching weights in
``inference_outputs/coverage_weight.npy`` thresholded as the stitcher does, checked against the
recorded ``inference.coverage_fraction``). Otherwise the baseline's own mask (same stitch-window
rule) is used and ``coverage.source`` says so.

Resume: a point's PINN run is *finished* when ``run_metadata.json`` has ``status: ok`` (not
partial) and was made with the same resolved configuration; its baseline is finished when
``baseline_metadata.json`` has ``status: ok``, ``comparison_metrics.json`` exists and the baseline
settings match. Finished parts are skipped (listed under ``skipped``); anything else is redone, the
old directory being moved aside to ``<dir>.bak-<timestamp>`` (never deleted). A finished run made
with a *different* configuration is a conflict: reported as failed unless ``force`` is given
(``force`` redoes every point).

Parallelism: up to ``jobs`` points at once in a ``ProcessPoolExecutor`` (spawn context); each
worker sets ``torch.set_num_threads(max(1, cores // jobs))`` (cores // workers when fewer points
than jobs are left to run). With a single worker the points run in the calling process, one after
the other (same code path, no pool). ``sweep_summary.json`` is rewritten after every point (status
``running``) and at the end with the figures; a sweep with any failed point ends with status
``failed`` (the command exits 1), the failures listed with their stage and error.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..physics.stitching import COVERAGE_MIN_WEIGHT
from ..telemetry.stats import dig as _get
from ..telemetry.writers import write_json, write_text

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
    "amplitude_frc_half_bit_px": "amplitude FRC 1/2-bit resolution (pixels; lower is better; null "
                                 "when the curve never crosses)",
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
    """How the baseline runs (see :func:`ptychotrace.baseline.reconstruct`)."""

    enabled: bool = False
    iterations: int | None = None        # None: DEFAULT_ITERATIONS[algorithm]
    algorithm: str = "lsqml"
    split: str = "test"
    smooth: bool = False                 # the hold-out-chosen low-pass (baseline --smooth)

    def signature(self) -> dict:
        from ..baseline import DEFAULT_ITERATIONS

        it = self.iterations if self.iterations is not None else DEFAULT_ITERATIONS[self.algorithm]
        sig = {"algorithm": self.algorithm, "iterations": int(it), "split": self.split}
        if self.smooth:        # only when on, so that earlier sweeps resume unchanged
            sig["smooth"] = True
        return sig


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


# --------------------------------------------------------------------------------------------
# Resume state
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def pinn_state(point: SweepPoint) -> tuple[str, str]:
    """('finished' | 'conflict' | 'redo' | 'new', reason) for the PINN run of a point."""
    meta_path = point.run_dir / "run_metadata.json"
    if not point.run_dir.exists():
        return "new", "no run directory"
    meta = _read_json(meta_path)
    if meta is None:
        return "redo", "run_metadata.json missing or unreadable"
    if meta.get("status") != "ok" or meta.get("partial"):
        err = (meta.get("error") or {}).get("message")
        return "redo", f"previous run status {meta.get('status')!r}" + (f": {err}" if err else "")
    diff = _diff_keys(meta.get("config"), point.request.config.to_dict())
    if diff:
        return "conflict", ("finished run was made with a different configuration (differs in "
                            f"{', '.join(diff[:6])}{'...' if len(diff) > 6 else ''})")
    return "finished", "run_metadata.json status ok"


def baseline_state(point: SweepPoint, options: BaselineOptions) -> tuple[str, str]:
    """Same as :func:`pinn_state` for the baseline of a point."""
    if not point.baseline_dir.exists():
        return "new", "no baseline directory"
    meta = _read_json(point.baseline_dir / BASELINE_METADATA)
    if meta is None:
        return "redo", f"{BASELINE_METADATA} missing or unreadable"
    if meta.get("status") != "ok":
        err = (meta.get("error") or {}).get("message")
        return "redo", f"previous baseline status {meta.get('status')!r}" + (f": {err}" if err else "")
    if not (point.baseline_dir / COMPARISON).is_file():
        return "redo", f"{COMPARISON} missing"
    diff = _diff_keys(meta.get("baseline_settings"), options.signature())
    if diff:
        return "conflict", f"finished baseline used different settings ({', '.join(diff)})"
    return "finished", f"{BASELINE_METADATA} status ok and {COMPARISON} present"


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


def pinn_covered_mask(run_dir: Path, meta: dict | None = None) -> tuple[np.ndarray | None, str]:
    """The PINN's covered region from a finished run directory, or (None, why not)."""
    inf = Path(run_dir) / "inference_outputs"
    meta = meta if meta is not None else (_read_json(Path(run_dir) / "run_metadata.json") or {})
    frac = (meta.get("inference") or {}).get("coverage_fraction")
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
    from ..baseline import reconstruct
    from ..evaluate.metrics import evaluate_reconstruction
    from ..telemetry.recorder import prepare_run_dir
    from ..telemetry.writers import write_npy
    from .plots import plot_reconstruction

    out = point.baseline_dir
    backup = prepare_run_dir(out, force=True)
    cfg = point.request.config
    t0 = time.perf_counter()
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "status": "failed", "partial": True,
        "scenario": cfg.scenario, "timestamp": _now(), "point": point.describe(),
        "dataset": {"sha256": info["sha256"], "record": str(point.dataset_record),
                    "source": "simulated once in the sweep worker, shared in memory with the "
                              "PINN run"},
        "baseline_settings": options.signature(),
        "previous_contents_moved_to": str(backup) if backup else None,
    }
    write_json(out / BASELINE_METADATA, meta)
    stage = "reconstruct"
    try:
        sig = options.signature()
        res = reconstruct(ds, split=options.split, iterations=sig["iterations"],
                          algorithm=options.algorithm, seed=point.training_seed,
                          window=cfg.inference.stitch_window, smooth=options.smooth)
        meta["reconstruction"] = res.summary()
        stage = "compare"
        covered, source = None, "PINN run of this point did not finish"
        run_meta = _read_json(point.run_dir / "run_metadata.json")
        if run_meta and run_meta.get("status") == "ok":
            covered, source = pinn_covered_mask(point.run_dir, run_meta)
        used = "pinn"
        if covered is None or covered.shape != res.covered.shape:
            if covered is not None:
                source = f"PINN mask shape {covered.shape} != {res.covered.shape}"
            covered, used = res.covered, "baseline"
        mode = cfg.evaluation.prediction_scale_source.value
        cmp = evaluate_reconstruction(res.obj, ds.obj, covered, None if used == "pinn" else
                                      res.illuminated, evaluation=cfg.evaluation,
                                      recorded_scale=1.0 if mode == "recorded" else None)
        cov_block = {
            "used": used, "source": source if used == "pinn" else
            f"baseline's own stitch-window coverage ({source})",
            "fraction_used": float(covered.mean()),
            "baseline_fraction": float(res.covered.mean()),
            "pinn_fraction": float(covered.mean()) if used == "pinn" else None,
            "identical_to_baseline_mask": bool(np.array_equal(covered, res.covered)),
            "used_outside_illuminated_px": int((covered & ~res.illuminated).sum()),
            "rule": "the PINN's covered mask when its run succeeded, else the baseline's own "
                    "(same stitch-window rule, whole test split)",
        }
        cmp["coverage"] = cov_block
        cmp["evaluation"] = {"recipe": "compare_reconstruction, same settings as the PINN run",
                             "register": cfg.evaluation.register_subpixel,
                             "phase_ramp": cfg.evaluation.phase_ramp,
                             "amplitude_scale_mode": mode,
                             "recorded_scale": 1.0 if mode == "recorded" else None}
        write_json(out / COMPARISON, cmp)
        stage = "artifacts"
        vmax = cfg.evaluation.amp_vmax or float(np.abs(ds.obj).max())
        amp = np.where(covered, np.abs(res.obj), 0).astype(np.float32)
        phase = np.where(covered, np.angle(res.obj), 0).astype(np.float32)
        write_npy(out / "amplitude.npy", amp)
        write_npy(out / "phase.npy", phase)
        plot_reconstruction(amp, phase, out / "reconstruction.png",
                            f"baseline {res.algorithm}, {point.name} (evaluated region)",
                            amp_vmax=vmax)
        arts = [COMPARISON, BASELINE_METADATA, "amplitude.npy", "phase.npy", "reconstruction.png"]
        meta.update(status="ok", partial=False, coverage=cov_block, artifacts=arts,
                    comparison={"metrics_path": COMPARISON,
                                "amplitude": _headline(cmp.get("amplitude")),
                                "phase": _headline(cmp.get("phase"))})
        return_status = {"status": "ok"}
    except Exception as exc:  # recorded, reported by the sweep
        meta.update(status="failed", partial=False, failed_stage=stage, error=_error_block(exc))
        return_status = {"status": "failed", "stage": stage, "error": f"{type(exc).__name__}: {exc}"}
    meta["elapsed_seconds"] = time.perf_counter() - t0
    meta["finished_at"] = _now()
    import torch

    meta["environment"] = {"torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    write_json(out / BASELINE_METADATA, meta)
    if progress:
        print(f"[{point.name}] baseline {return_status['status']} in {meta['elapsed_seconds']:.1f} s",
              flush=True)
    return return_status


def _headline(ch: dict | None) -> dict | None:
    if not ch:
        return None
    return {"pearson_r": ch.get("pearson_r"), "ssim": ch.get("ssim"), "mae": ch.get("mae"),
            "bias_mean": (ch.get("bias_summary") or {}).get("mean"),
            "frc_half_bit_resolution": (ch.get("frc") or {}).get("half_bit_resolution")}


def _run_pinn(point: SweepPoint, ds, progress: bool, record: dict | None = None) -> dict:
    from ..scenarios.runner import run_scenario

    req = replace(point.request, dataset=ds, dataset_record=record, force=True, progress=progress)
    try:
        meta = run_scenario(req)
    except Exception as exc:
        meta = _read_json(point.run_dir / "run_metadata.json") or {}
        return {"status": "failed", "stage": meta.get("failed_stage"),
                "error": f"{type(exc).__name__}: {exc}"}
    if meta.get("status") != "ok":
        return {"status": "failed", "stage": meta.get("failed_stage"),
                "error": (meta.get("error") or {}).get("message", "status not ok")}
    return {"status": "ok"}


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


# --------------------------------------------------------------------------------------------
# Metrics from disk
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _quality(cmp: dict) -> dict:
    scale = cmp.get("prediction_scale") or {}
    return {
        "amplitude_ssim": _num(_get(cmp, "amplitude", "ssim")),
        "amplitude_pearson_r": _num(_get(cmp, "amplitude", "pearson_r")),
        "amplitude_frc_half_bit_px": _num(_get(cmp, "amplitude", "frc", "half_bit_resolution")),
        "phase_ssim": _num(_get(cmp, "phase", "ssim")),
        "phase_pearson_r": _num(_get(cmp, "phase", "pearson_r")),
        "amplitude_bias_mean": _num(_get(cmp, "amplitude", "bias_summary", "mean")),
        "phase_bias_mean": _num(_get(cmp, "phase", "bias_summary", "mean")),
        "least_squares_scale": _num(_get(scale, "least_squares", "value")),
        "prediction_scale_applied": _num(scale.get("value")) if scale.get("applied") else None,
        "coverage_fraction": _num(cmp.get("coverage_fraction")),
    }


def pinn_metrics(run_dir: Path) -> dict | None:
    """Summary metrics of a finished PINN run (None if it did not finish)."""
    meta = _read_json(Path(run_dir) / "run_metadata.json")
    cmp = _read_json(Path(run_dir) / COMPARISON)
    if not meta or meta.get("status") != "ok" or cmp is None:
        return None
    inf = meta.get("inference") or {}
    secs = inf.get("seconds")
    infer_s = _num(secs.get("total")) if isinstance(secs, dict) else _num(secs)
    if infer_s is None:
        infer_s = _num(_get(meta, "stage_seconds", "infer"))
    pats = _num(inf.get("patterns_used")) or _num(_get(meta, "counts", "test_count"))
    pps = _num(inf.get("patterns_per_second"))
    net_s = _num(secs.get("network")) if isinstance(secs, dict) else None
    train_s = _num(_get(meta, "stage_seconds", "train"))
    if infer_s is not None and pats:
        per = infer_s / pats
    else:
        per = 1.0 / pps if pps else None
    out = _quality(cmp)
    out.update({
        "train_seconds": train_s, "inference_seconds": infer_s,
        "inference_patterns_per_second": pps, "baseline_seconds": None, "baseline_iterations": None,
        "seconds_per_pattern": per,
        "total_seconds_per_pattern": ((train_s or 0.0) + infer_s) / pats
        if (infer_s is not None and pats and train_s is not None) else None,
        "network_seconds_per_pattern": net_s / pats if (net_s is not None and pats) else None,
        "patterns": int(pats) if pats else None,
    })
    return out


def speedup_vs_baseline(block: dict) -> dict | None:
    """Baseline seconds per pattern over the PINN's (means across seeds), for the whole default
    inference and for the network alone; None without both methods."""
    if "pinn" not in block or "baseline" not in block:
        return None
    base = block["baseline"]["mean"].get("seconds_per_pattern")
    pinn = block["pinn"]["mean"]

    def ratio(key: str) -> float | None:
        v = pinn.get(key)
        return base / v if (base and v) else None

    return {"inference": ratio("seconds_per_pattern"),
            "network_only": ratio("network_seconds_per_pattern"),
            "definition": "baseline seconds per reconstructed pattern / PINN seconds per pattern "
                          "(> 1: the PINN is faster); PINN training time excluded"}


#: The quality metric of the issue's goal (PINN at or above the baseline at low dose).
VERDICT_METRIC = "amplitude_ssim"


def quality_vs_baseline(block: dict, metric: str = VERDICT_METRIC) -> dict | None:
    """PINN minus baseline on ``metric``, from the seed means and seed by seed (seeds where both
    methods have a result); None without both methods or without a pair."""
    if "pinn" not in block or "baseline" not in block:
        return None
    pinn = {s["seed_index"]: (s["metrics"] or {}).get(metric) for s in block["pinn"]["per_seed"]}
    base = {s["seed_index"]: (s["metrics"] or {}).get(metric)
            for s in block["baseline"]["per_seed"]}
    pairs = [(pinn[k], base[k]) for k in sorted(pinn)
             if pinn.get(k) is not None and base.get(k) is not None]
    if not pairs:
        return None
    mean_p = sum(p for p, _ in pairs) / len(pairs)
    mean_b = sum(b for _, b in pairs) / len(pairs)
    return {"metric": metric, "pinn_mean": mean_p, "baseline_mean": mean_b,
            "difference": mean_p - mean_b, "pinn_at_or_above": mean_p >= mean_b,
            "seeds_compared": len(pairs), "seeds_pinn_at_or_above": sum(p >= b for p, b in pairs),
            "definition": "means over the seeds where both methods have a result; difference = "
                          "PINN - baseline"}


def baseline_metrics(baseline_dir: Path) -> dict | None:
    meta = _read_json(Path(baseline_dir) / BASELINE_METADATA)
    cmp = _read_json(Path(baseline_dir) / COMPARISON)
    if not meta or meta.get("status") != "ok" or cmp is None:
        return None
    rec = meta.get("reconstruction") or {}
    out = _quality(cmp)
    per = _num(rec.get("seconds_per_pattern"))
    out.update({
        "train_seconds": None, "inference_seconds": None, "inference_patterns_per_second": None,
        "baseline_seconds": _num(rec.get("wall_time_s")),
        "baseline_iterations": _num(rec.get("iterations")),
        "seconds_per_pattern": per, "total_seconds_per_pattern": per,
        "network_seconds_per_pattern": None,
        "patterns": rec.get("n_patterns"),
    })
    return out


def aggregate(values: list[float | None]) -> dict:
    """mean and sample std (ddof 1; null with fewer than 2 values) over the non-null values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else None,
            "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()) if v.size else None, "max": float(v.max()) if v.size else None}


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
def _log(plan: SweepPlan, msg: str) -> None:
    if plan.progress:
        print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_sweep(plan: SweepPlan, runner: Callable[[PointTask], dict] | None = None) -> dict:
    """Run every unfinished part of the plan; write the summary and figures; return the summary.

    ``runner`` replaces :func:`run_point` (tests); it is only used in-process (jobs == 1).
    """
    out = plan.output_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    skipped, failed, tasks = [], [], []
    states: dict[str, dict] = {}
    for p in plan.points:
        ps, preason = pinn_state(p)
        bs, breason = baseline_state(p, plan.baseline) if plan.baseline.enabled else (None, None)
        if plan.force:
            ps = "redo" if ps != "new" else ps
            bs = ("redo" if bs != "new" else bs) if bs else None
            preason = breason = "--force"
        states[p.name] = {"pinn": [ps, preason], "baseline": [bs, breason]}
        if ps == "conflict":
            failed.append({"name": p.name, "method": "pinn", "stage": "resume", "error": preason +
                           "; use another --output-dir, or --force to redo it (the old directory "
                           "is moved aside)"})
            continue
        if bs == "conflict":
            failed.append({"name": p.name, "method": "baseline", "stage": "resume",
                           "error": breason + "; use another --output-dir, or --force"})
        do_pinn = ps != "finished"
        do_base = bs in ("new", "redo") or (bs is not None and do_pinn and bs != "conflict")
        if ps == "finished":
            skipped.append({"name": p.name, "method": "pinn", "reason": preason,
                            "run_dir": str(p.run_dir)})
        if bs == "finished" and not do_base:
            skipped.append({"name": p.name, "method": "baseline", "reason": breason,
                            "baseline_dir": str(p.baseline_dir)})
        if do_pinn or do_base:
            tasks.append(PointTask(p, do_pinn, do_base, plan.baseline, threads=1))

    workers = max(1, min(plan.jobs, len(tasks)))
    threads = max(1, available_cores() // max(1, plan.jobs))
    if workers < plan.jobs:
        threads = max(1, available_cores() // workers)
    tasks = [replace(t, threads=threads, progress=plan.progress and workers == 1) for t in tasks]
    _log(plan, f"{len(plan.points)} points, {len(tasks)} to run, {len(skipped)} parts already "
               f"finished; {workers} worker(s) x {threads} torch thread(s)")
    results: dict[str, dict] = {}
    ctx = {"skipped": skipped, "failed": failed, "results": results, "states": states,
           "workers": workers, "threads": threads, "t0": t0}

    def done(name: str, res: dict) -> None:
        results[name] = res
        bits = [f"{m} {res[m]['status']}" for m in METHODS if res.get(m)]
        _log(plan, f"{len(results)}/{len(tasks)} {name}: {', '.join(bits) or 'nothing to do'}")
        write_summary(plan, build_summary(plan, ctx, final=False), figures=False)

    if workers == 1:
        fn = runner or run_point
        for task in tasks:
            done(task.point.name, fn(task))
    else:
        mp = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp) as pool:
            futs = {pool.submit(run_point, t): t for t in tasks}
            for fut in cf.as_completed(futs):
                t = futs[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # a worker died (killed, out of memory, ...)
                    err = {"status": "failed", "stage": "worker",
                           "error": f"{type(exc).__name__}: {exc}"}
                    res = {"name": t.point.name, "pinn": err if t.do_pinn else None,
                           "baseline": dict(err) if t.do_baseline else None}
                done(t.point.name, res)
    summary = build_summary(plan, ctx)
    write_summary(plan, summary, figures=True)
    _log(plan, f"summary: {out / SUMMARY_JSON} ({summary['status']}; "
               f"{len(summary['failed'])} failed, {len(summary['skipped'])} skipped)")
    return summary


def build_summary(plan: SweepPlan, ctx: dict, final: bool = True) -> dict:
    """Assemble sweep_summary.json from what is on disk plus this invocation's results."""
    results, states = ctx["results"], ctx["states"]
    failed = list(ctx["failed"])
    methods = ["pinn", "baseline"] if plan.baseline.enabled else ["pinn"]
    runs = []
    for p in plan.points:
        res = results.get(p.name) or {}
        entry = {**p.describe(), "resume_state": states.get(p.name)}
        for m in methods:
            r = res.get(m)
            if r and r.get("status") == "failed":
                failed.append({"name": p.name, "method": m, "stage": r.get("stage"),
                               "error": r.get("error")})
            state = ((states.get(p.name) or {}).get(m) or [None])[0]
            if state == "conflict":  # what is on disk belongs to another configuration
                entry[m] = {"status": "conflict", "ran_now": False, "metrics": None}
                continue
            metrics = pinn_metrics(p.run_dir) if m == "pinn" else baseline_metrics(p.baseline_dir)
            if metrics is not None:
                status = "ok"
            elif r or any(f["name"] == p.name and f["method"] == m for f in failed):
                status = "failed"
            else:
                status = "missing" if final else "pending"
            entry[m] = {"status": status, "ran_now": bool(r), "metrics": metrics}
        if "dataset_sha256" in res:
            entry["dataset_sha256"] = res["dataset_sha256"]
        else:
            rec = _read_json(p.dataset_record)
            entry["dataset_sha256"] = rec.get("sha256") if rec else None
        runs.append(entry)
    per_dose = []
    for dose in plan.doses:
        block: dict[str, Any] = {"nphotons": dose, "label": dose_label(dose)}
        for m in methods:
            rows = [r for r in runs if r["nphotons"] == dose]
            per_seed = [{"seed_index": r["seed_index"], "sim_seed": r["sim_seed"],
                         "training_seed": r["training_seed"], "status": r[m]["status"],
                         "metrics": r[m]["metrics"]} for r in rows]
            ok = [s["metrics"] for s in per_seed if s["metrics"] is not None]
            block[m] = {"n_ok": len(ok), "n_seeds": len(per_seed), "per_seed": per_seed,
                        "mean": {k: aggregate([o.get(k) for o in ok])["mean"] for k in METRICS},
                        "std": {k: aggregate([o.get(k) for o in ok])["std"] for k in METRICS},
                        "n": {k: aggregate([o.get(k) for o in ok])["n"] for k in METRICS}}
        block["speedup_vs_baseline"] = speedup_vs_baseline(block)
        block["quality_vs_baseline"] = quality_vs_baseline(block)
        per_dose.append(block)
    # one entry per (name, method): keep the most informative error
    uniq: dict[tuple, dict] = {}
    for f in failed:
        uniq.setdefault((f["name"], f["method"]), f)
    missing = [{"name": r["name"], "method": m} for r in runs for m in methods
               if r[m]["status"] == "missing"]
    failed = list(uniq.values())
    status = "ok" if not failed and not missing else "failed"
    if not final:
        status = "running"
    return {
        "schema_version": SCHEMA_VERSION, "status": status, "generated_at": _now(),
        "scenario": plan.scenario, "output_dir": str(plan.output_dir),
        "doses": plan.doses, "methods": methods,
        "seeds": {"count": plan.seeds, "base_sim_seed": plan.base_sim_seed,
                  "base_training_seed": plan.base_training_seed,
                  "rule": "seed k: simulation.sim_seed = base_sim_seed + k, training.seed = "
                          "base_training_seed + k; baseline hold-out seed = training.seed"},
        "baseline": {"enabled": plan.baseline.enabled,
                     **(plan.baseline.signature() if plan.baseline.enabled else {}),
                     "coverage_rule": "evaluated with the PINN run's compare_reconstruction "
                                      "settings on the PINN's covered region (the baseline's own "
                                      "mask only when the PINN run failed); see each "
                                      "baseline/<name>/comparison_metrics.json 'coverage'",
                     "data": "identical: one simulation per (dose, seed), shared in memory"},
        "execution": {"jobs": plan.jobs, "workers": ctx["workers"],
                      "torch_threads_per_worker": ctx["threads"], "cores": available_cores(),
                      "elapsed_seconds": time.perf_counter() - ctx["t0"],
                      "this_invocation_ran": sorted(results)},
        "metric_definitions": METRICS,
        "std_definition": "sample standard deviation across seeds (ddof 1); null with < 2 values",
        "cli_args": plan.cli_args, "warnings": plan.warnings,
        "per_dose": per_dose, "runs": runs,
        "skipped": list(ctx["skipped"]), "failed": failed, "missing": missing,
    }


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _fmt(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "n/a"
    s = f"{mean:.{digits}g}"
    return s if std is None else f"{s} ± {std:.2g}"


MD_COLUMNS = (("amplitude_ssim", "amp SSIM"), ("amplitude_pearson_r", "amp Pearson"),
              ("amplitude_frc_half_bit_px", "FRC ½-bit (px)"), ("phase_ssim", "phase SSIM"),
              ("phase_pearson_r", "phase Pearson"), ("amplitude_bias_mean", "amp bias mean"),
              ("least_squares_scale", "LS scale"), ("seconds_per_pattern", "s / pattern"),
              ("train_seconds", "train s"), ("baseline_seconds", "baseline s"))


def render_markdown(summary: dict) -> str:
    lines = [f"# Dose sweep: {summary['scenario']}", "",
             f"Status: **{summary['status']}**; doses {', '.join(dose_label(d) for d in summary['doses'])} "
             "photons per pattern; "
             f"{summary['seeds']['count']} seed(s) (sim_seed from {summary['seeds']['base_sim_seed']}, "
             f"training seed from {summary['seeds']['base_training_seed']}).",
             "Values are mean ± sample std across seeds (n ok / seeds in the 'ok' column). Metrics on "
             "the PINN's covered region of the test split; 's / pattern' is PINN inference only, "
             "baseline wall time / pattern.", "",
             "| nphotons | method | ok | " + " | ".join(h for _, h in MD_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(MD_COLUMNS)]
    for block in summary["per_dose"]:
        for m in summary["methods"]:
            b = block[m]
            cells = [_fmt(b["mean"][k], b["std"][k]) for k, _ in MD_COLUMNS]
            lines.append(f"| {dose_label(block['nphotons'])} | {m} | {b['n_ok']}/{b['n_seeds']} | "
                         + " | ".join(cells) + " |")
    speed = [(dose_label(b["nphotons"]), b.get("speedup_vs_baseline")) for b in summary["per_dose"]]
    if any(sp for _, sp in speed):
        lines += ["", "Speed-up of the PINN over the baseline per reconstructed pattern (baseline s / "
                  "PINN s; training excluded):", "",
                  "| nphotons | default inference | network alone |", "|---|---|---|"]
        lines += [f"| {d} | {_fmt(sp.get('inference'), None, 3)}x | "
                  f"{_fmt(sp.get('network_only'), None, 3)}x |" for d, sp in speed if sp]
    lines += _verdict_lines(summary["per_dose"])
    if summary.get("skipped"):
        lines += ["", "## Skipped (already finished, resumed)", ""]
        lines += [f"- {s['name']} ({s['method']}): {s['reason']}" for s in summary["skipped"]]
    if summary.get("failed"):
        lines += ["", "## Failed", ""]
        lines += [f"- {f['name']} ({f['method']}, stage {f.get('stage')}): {f.get('error')}"
                  for f in summary["failed"]]
    if summary.get("missing"):
        lines += ["", "## Missing (no result on disk)", ""]
        lines += [f"- {m['name']} ({m['method']})" for m in summary["missing"]]
    if summary.get("figures"):
        lines += ["", "## Figures", ""] + [f"- {f}" for f in summary["figures"]]
    lines += ["", f"Baseline: {summary['baseline'].get('coverage_rule') if summary['baseline']['enabled'] else 'not run'}.", ""]
    return "\n".join(lines)


def _verdict_lines(per_dose: list[dict]) -> list[str]:
    """'Where the PINN stands': per dose, quality against the baseline and which is faster."""
    rows = [(b, b.get("quality_vs_baseline"), b.get("speedup_vs_baseline")) for b in per_dose]
    rows = [r for r in rows if r[1]]
    if not rows:
        return []
    name = dict(MD_COLUMNS).get(rows[0][1]["metric"], rows[0][1]["metric"])
    lines = ["", "## Where the PINN stands", "",
             f"| nphotons | {name}: PINN - baseline | seeds with PINN >= baseline | "
             "faster per pattern (default inference) |", "|---|---|---|---|"]
    for b, q, sp in rows:
        ratio = (sp or {}).get("inference")
        faster = "n/a" if ratio is None else (f"PINN ({ratio:.3g}x)" if ratio >= 1
                                              else f"baseline ({1 / ratio:.3g}x)")
        lines.append(f"| {dose_label(b['nphotons'])} | {q['difference']:+.4f} | "
                     f"{q['seeds_pinn_at_or_above']}/{q['seeds_compared']} | {faster} |")
    above = [dose_label(b["nphotons"]) for b, q, _ in rows if q["pinn_at_or_above"]]
    below = [dose_label(b["nphotons"]) for b, q, _ in rows if not q["pinn_at_or_above"]]
    lines += ["", f"PINN {name} at or above the baseline (seed mean) at: "
              f"{', '.join(above) or 'no dose'}; below at: {', '.join(below) or 'no dose'}."]
    return lines


def write_summary(plan: SweepPlan, summary: dict, figures: bool = True) -> None:
    out = plan.output_dir
    if figures:
        from .plots import plot_all

        try:
            summary["figures"] = plot_all(summary, out)
        except Exception as exc:  # figures must never hide the numbers
            summary["figures"] = []
            summary["figures_error"] = f"{type(exc).__name__}: {exc}"
    write_json(out / SUMMARY_JSON, summary)
    write_text(out / SUMMARY_MD, render_markdown(summary))


__all__ = ["BaselineOptions", "METRICS", "PointTask", "SweepPlan", "SweepPoint", "aggregate",
           "baseline_metrics", "baseline_state", "build_summary", "dataset_fingerprint",
           "dose_label", "parse_nphotons", "pinn_covered_mask", "pinn_metrics", "pinn_state",
           "plan_sweep", "point_name", "render_markdown", "run_point", "run_sweep",
           "write_summary"]
