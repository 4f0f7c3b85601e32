"""sweep_summary.json and .md: assembled from disk and this invocation's results."""

from __future__ import annotations

import time
from typing import Any

from ..telemetry.writers import write_json, write_text
from .metrics import aggregate, baseline_metrics, pinn_metrics, quality_vs_baseline, speedup_vs_baseline
from .plan import METRICS, SCHEMA_VERSION, SUMMARY_JSON, SUMMARY_MD, SweepPlan, available_cores, dose_label
from .resume import _read_json
from .worker import _now


def build_summary(plan: SweepPlan, ctx: dict, final: bool = True) -> dict:
    """(Long by choice: assembles one record field by field, in its order.)
    Assemble sweep_summary.json from what is on disk plus this invocation's results."""
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
    """mean ± std with the one number formatter (ptychotrace.format)."""
    from ..format import format_value

    s = format_value(mean, digits=digits, thousands=False)
    return s if std is None or mean is None else f"{s} ± {format_value(std, digits=2)}"


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
    from ..records.sweep import SweepSummary

    record = SweepSummary.parse(summary, source=str(out / SUMMARY_JSON))  # the schema, checked
    write_json(out / SUMMARY_JSON, record.dump())
    write_text(out / SUMMARY_MD, render_markdown(summary))
