"""Dose sweeps: one scenario at several photon doses and seeds, PINN and (optionally) the iterative
baseline on identical data, with resume, parallel workers, a summary and figures.

Layout of a sweep directory ``DIR``::

    runs/<scenario>_n<dose>_s<sim_seed>/      a normal run directory (telemetry.md) per point
    baseline/<same name>/                     the baseline of that point (--with-baseline), as
        written by ``ptychotrace baseline`` (stages.baseline): baseline_metadata.json,
        comparison_metrics.json, amplitude.npy, phase.npy (object frame, 0 where not
        illuminated), evaluation_region.npy, PNGs, comparison.png, frc.png, stats.json
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

Modules: plan.py (parsing, naming, points), resume.py (finished / redo / conflict), worker.py
(one point), metrics.py (numbers from the typed records), summary.py (sweep_summary.json/.md),
this module (orchestration).

Identical evaluation: the baseline is compared with :func:`ptychotrace.stages.evaluate.evaluate` using the run's
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
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import replace

from .metrics import (
    VERDICT_METRIC,
    aggregate,
    baseline_metrics,
    pinn_metrics,
    quality_vs_baseline,
    speedup_vs_baseline,
)
from .plan import (
    METHODS,
    METRICS,
    SUMMARY_JSON,
    SUMMARY_MD,
    BaselineOptions,
    SweepPlan,
    SweepPoint,
    available_cores,
    dose_label,
    parse_nphotons,
    plan_sweep,
    point_name,
)
from .resume import baseline_state, pinn_state
from .summary import MD_COLUMNS, build_summary, render_markdown, write_summary
from .worker import PointTask, dataset_fingerprint, pinn_covered_mask, run_point


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


__all__ = ["BaselineOptions", "METRICS", "MD_COLUMNS", "SUMMARY_JSON", "SUMMARY_MD",
           "VERDICT_METRIC", "quality_vs_baseline", "speedup_vs_baseline", "PointTask", "SweepPlan", "SweepPoint", "aggregate",
           "baseline_metrics", "baseline_state", "build_summary", "dataset_fingerprint",
           "dose_label", "parse_nphotons", "pinn_covered_mask", "pinn_metrics", "pinn_state",
           "plan_sweep", "point_name", "render_markdown", "run_point", "run_sweep",
           "write_summary"]
