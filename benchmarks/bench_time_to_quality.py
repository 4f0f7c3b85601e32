"""Time to quality (issue #12): amplitude SSIM against inference seconds on one test split.

    .venv/bin/python benchmarks/bench_time_to_quality.py            # the documented small run
    .venv/bin/python benchmarks/bench_time_to_quality.py --quick    # smoke run
    # a model trained by study_network.py, on the data it was trained for (same flags):
    .venv/bin/python benchmarks/bench_time_to_quality.py --model /tmp/sn/<run> --scenario gs1_ideal \
        --base-total-images 500 --group-count 6000 --set simulation.nphotons=1e4 --threads 2

Three curves on the same data (the test split of one simulated scenario, small sizes):

    network       the trained network alone (refine_steps 0): one point
    network+k     the network followed by k physics-refinement steps (the InferenceConfig defaults
                  otherwise: hold-out early stop, back-offs, low-pass, refit), k in --refine-steps,
                  for each solver in --refine-methods (adam: curve "network_refined"; lsqml, the
                  baseline's solver from the network's object: "network_refined_lsqml")
    baseline      the iterative baseline (ptychotrace.baseline.reconstruct, LSQ-ML, amplitude
                  likelihood) from a flat start (ones), no hold-out, scored at every iterate in
                  --baseline-iterations; its time excludes the scoring callback

With ``--model`` no network is trained: the checkpoint (its best epoch) is scored on the scenario
data that study_network.py simulates for the same flags (the test split it never trained on), and
the baseline is also run once with its own defaults (hold-out early stop, refit: "run to
convergence"), which gives the per-pattern speed ratio and SSIM gap against the network alone.

Seconds are inference wall time (network: grouping + forward + twin fix + stitch; refinement
included when k > 0). Training time is reported separately and not on the axis: it is paid once.
Score: covered region of the test split, no rescale, no registration (evaluate.metrics). Writes
benchmarks/results/time_to_quality.json and docs/figures/time_to_quality.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptychotrace.baseline import reconstruct
from ptychotrace.config import resolve_scenario
from ptychotrace.evaluate.metrics import compare_reconstruction
from ptychotrace.infer.predict import predict
from ptychotrace.simulate import simulate
from ptychotrace.train.checkpoint import load_model
from ptychotrace.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402

ROOT = Path(__file__).resolve().parent


def ssim_of(obj: np.ndarray, covered: np.ndarray, truth: np.ndarray) -> dict:
    cmp = compare_reconstruction(obj, truth, covered, register=False,
                                 amplitude_data_range=float(np.ptp(np.abs(truth))))
    return {"amp_ssim": cmp["amplitude"]["ssim"], "amp_pearson": cmp["amplitude"]["pearson_r"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="gs1_custom")
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--object-size", type=int, default=128)
    ap.add_argument("--patterns", type=int, default=600)
    ap.add_argument("--nphotons", type=float, default=1e9)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--train-seconds", type=float, default=180.0)
    ap.add_argument("--refine-steps", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    ap.add_argument("--refine-methods", nargs="+", choices=["adam", "lsqml"], default=["adam"])
    ap.add_argument("--baseline-iterations", type=int, nargs="+",
                    default=[1, 2, 5, 10, 20, 50, 100, 200])
    ap.add_argument("--model", default=None, help="trained run directory (study_network.py): "
                    "score it instead of training a small network")
    ap.add_argument("--base-total-images", type=int, default=500, help="with --model: as the study")
    ap.add_argument("--group-count", type=int, default=500, help="with --model: as the study")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                    help="with --model: simulation.* / grouping.* overrides, as the study's --set")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=str(ROOT / "results" / "time_to_quality.json"))
    ap.add_argument("--figure", default=str(ROOT.parent / "docs" / "figures" / "time_to_quality.png"))
    args = ap.parse_args(argv)
    if args.quick:
        args.patterns, args.epochs, args.train_seconds = 128, 2, 30.0
        args.refine_steps, args.baseline_iterations = [2, 5], [1, 5, 10]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        from study_network import data_overrides

        cfg, _, _ = resolve_scenario(args.scenario, {
            "simulation.base_total_images": args.base_total_images,
            "grouping.group_count": args.group_count, **data_overrides(args.set)})
        ds, _ = simulate(cfg.simulation, scenario=args.scenario)
        model = load_model(Path(args.model), which="best")
        hist = json.loads((Path(args.model) / "train_outputs" / "history.json").read_text())
        training = {"model": str(args.model), "epochs_completed": len(hist["metrics"]["loss"]),
                    "train_seconds": float(sum(hist["metrics"]["epoch_seconds"]))}
        args.N, args.nphotons = cfg.simulation.N, cfg.simulation.nphotons
        args.object_size = cfg.simulation.object_size
    else:
        over = {"simulation.N": args.N, "simulation.object_size": args.object_size,
                "simulation.base_total_images": args.patterns, "simulation.buffer": 8.0,
                "simulation.nphotons": args.nphotons, "grouping.group_count": 100000,
                "training.nepochs": args.epochs, "training.batch_size": 16,
                "training.device": "cpu"}
        cfg, _, _ = resolve_scenario(args.scenario, over, use_profile=False)
        ds, _ = simulate(cfg.simulation, scenario=args.scenario)
        work = Path(tempfile.mkdtemp(prefix="bench_ttq_"))
        res = train(cfg, ds, work, progress=False, time_limit_s=args.train_seconds,
                    log=lambda *a: None)
        model = load_model(work)
        training = {"status": res.status, "epochs_completed": res.epochs_completed,
                    "train_seconds": res.train_seconds,
                    "samples_per_second": res.samples_per_second}
    truth = ds.obj
    icfg = cfg.inference

    curves: dict[str, list[dict]] = {"network": [], "baseline": [],
                                     **{curve_name(m): [] for m in args.refine_methods}}
    # Called twice, the second timed: the first includes one-time set-up (oneDNN kernel
    # selection, first-touch allocation) that a reused model does not pay again.
    cold = predict(model, ds, icfg.model_copy(update={"refine_steps": 0}))
    pred = predict(model, ds, icfg.model_copy(update={"refine_steps": 0}))
    covered = pred.covered
    curves["network"].append({"seconds": pred.seconds["total"], "refine_steps": 0,
                              "first_call_seconds": cold.seconds["total"],
                              **ssim_of(pred.obj, covered, truth)})
    for method in args.refine_methods:
        name = curve_name(method)
        for k in args.refine_steps:
            p = predict(model, ds, icfg.model_copy(update={"refine_steps": k,
                                                           "refine_method": method}))
            curves[name].append({"seconds": p.seconds["total"], "refine_steps": k,
                                 "refine": {kk: v for kk, v in p.steps["refine"].items()
                                            if not isinstance(v, list)},
                                 **ssim_of(p.obj, p.covered, truth)})
            print(f"network+{k} ({method}): {curves[name][-1]['amp_ssim']:.3f} in "
                  f"{p.seconds['total']:.2f} s", flush=True)

    marks = set(args.baseline_iterations)
    spent = {"callback": 0.0}
    t_start = time.perf_counter()

    def on_iterate(k: int, obj: np.ndarray) -> None:
        if k not in marks:
            return
        t0 = time.perf_counter()
        elapsed = t0 - t_start - spent["callback"]
        curves["baseline"].append({"seconds": elapsed, "iterations": k,
                                   **ssim_of(obj, covered, truth)})
        spent["callback"] += time.perf_counter() - t0

    base = reconstruct(ds, "test", iterations=max(marks), holdout=0.0, patience=None, refit=False,
                       window=icfg.stitch_window, callback=on_iterate)
    converged = None
    if args.model:
        # The baseline as `ptychotrace baseline` runs it (hold-out early stop, refit), timed alone.
        conv = reconstruct(ds, "test", window=icfg.stitch_window)
        net = curves["network"][0]
        converged = {"algorithm": conv.algorithm, "seconds": conv.wall_time_s,
                     "iterations": int(conv.iterations), "best_iteration": int(conv.best_iteration),
                     "refit_iterations": int(conv.refit_iterations),
                     "stop_reason": conv.stop_reason,
                     **ssim_of(conv.obj, covered, truth),
                     "coverage_matches_network": bool(np.array_equal(conv.covered, covered))}
        converged["network_speedup_per_pattern"] = conv.wall_time_s / net["seconds"]
        converged["network_ssim_minus_baseline"] = net["amp_ssim"] - converged["amp_ssim"]
        print(f"baseline to convergence: SSIM {converged['amp_ssim']:.3f} in "
              f"{conv.wall_time_s:.1f} s ({converged['iterations']} iterations); network only "
              f"{net['amp_ssim']:.3f} in {net['seconds']:.2f} s: "
              f"{converged['network_speedup_per_pattern']:.0f}x faster", flush=True)
    result = {
        "benchmark": "time_to_quality", "command": " ".join(sys.argv), "scenario": args.scenario,
        "N": args.N, "object_size": args.object_size, "nphotons": args.nphotons,
        "test_patterns": int(len(ds.indices("test"))),
        "training": training,
        "baseline": {"algorithm": base.algorithm, "wall_time_s": base.wall_time_s,
                     "coverage_matches_network": bool(np.array_equal(base.covered, covered))},
        "baseline_converged": converged,
        "threads": torch.get_num_threads(),
        "curves": curves,
        "score": "amplitude SSIM on the covered region of the test split (the network's coverage), "
                 "no rescale, no registration",
        "machine": describe_machine(),
        "note": "timings on a shared, loaded 2-core CPU: compare within this run only",
    }
    record_result(result, args.output)
    plot(curves, args.figure, f"{args.scenario}, N={args.N}, {args.nphotons:.0e} photons, "
         f"{result['test_patterns']} test patterns", converged)
    return 0


def curve_name(method: str) -> str:
    """The curve of the network + k steps of one refinement solver (adam keeps its old name)."""
    return "network_refined" if method == "adam" else f"network_refined_{method}"


def plot(curves: dict, path: str, title: str, converged: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    net = curves["network"][0]
    ax.plot([net["seconds"]], [net["amp_ssim"]], "o", ms=9, label="network only")
    for method, marker in (("adam", "s-"), ("lsqml", "D-")):
        r = curves.get(curve_name(method)) or []
        if not r:
            continue
        ax.plot([net["seconds"]] + [p["seconds"] for p in r],
                [net["amp_ssim"]] + [p["amp_ssim"] for p in r], marker,
                label=f"network + k {method} steps")
        for p in r:
            ax.annotate(str(p["refine_steps"]), (p["seconds"], p["amp_ssim"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    b = curves["baseline"]
    if b:
        ax.plot([p["seconds"] for p in b], [p["amp_ssim"] for p in b], "^-",
                label="baseline from flat start (iterations)")
        for p in b:
            ax.annotate(str(p["iterations"]), (p["seconds"], p["amp_ssim"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    if converged:
        ax.plot([converged["seconds"]], [converged["amp_ssim"]], "*", ms=12,
                label=f"baseline, hold-out stop + refit ({converged['iterations']} iterations)")
    ax.set_xscale("log")
    ax.set_xlabel("inference wall time (s)")
    ax.set_ylabel("amplitude SSIM (covered test region)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
