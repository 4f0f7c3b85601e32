"""PINN quality and speed benchmark: one command, JSON results.

    .venv/bin/python benchmarks/bench_pinn.py                       # the documented run
    .venv/bin/python benchmarks/bench_pinn.py --scenarios gs1_ideal --stages 5 10 --quick

For each scenario (at its defaults and stable profile) and width: simulate, train in stages
(cumulative epochs, continued with resume, so one training run is measured at several points),
and after every stage infer the test split with the inference variants

    raw        no twin fix, no refinement (the network alone, stitched)
    twin       overlap-consistent twin choice (gridsize 1 + symmetric probe only)
    default    the InferenceConfig defaults (twin fix + refinement steps)
    flat_init  control: the same refinement started from a flat object (amp_ref), no network

and compare on the covered region of the test split, no rescale, no registration (the stitched
canvas *is* the object frame): amplitude Pearson, SSIM (scikit-image, data_range = the truth
amplitude's max - min over the whole object, stated in the output), MAE, least-squares scale
``sum(p t) / sum(p p)``. A throughput section measures training samples/s and inference
patterns/s per width on the N=64 network. Results: benchmarks/results/bench_pinn.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ptychotrace.config import InferenceConfig, resolve_scenario
from ptychotrace.evaluate.metrics import compare_reconstruction
from ptychotrace.infer.predict import predict, refine_object
from ptychotrace.simulate import simulate
from ptychotrace.telemetry.writers import write_json
from ptychotrace.train.checkpoint import load_model
from ptychotrace.train.trainer import train

ROOT = Path(__file__).resolve().parent


def score(obj: np.ndarray, covered: np.ndarray, truth: np.ndarray, data_range: float) -> dict:
    amp = np.where(covered, np.abs(obj), 0).astype(np.float32)
    cmp = compare_reconstruction(amp * np.exp(1j * np.angle(obj)), truth, covered, register=False,
                                 amplitude_data_range=data_range)
    a = cmp["amplitude"]
    p = amp[covered].astype(np.float64)
    t = np.abs(truth)[covered].astype(np.float64)
    return {"pearson": a["pearson_r"], "ssim": a["ssim"], "mae": a["mae"],
            "lsq_scale": float((p * t).sum() / (p * p).sum()), "pred_std": float(p.std()),
            "truth_std": float(t.std()), "phase_mae": cmp["phase"]["mae"]}


def evaluate(run_dir: Path, ds, cfg, refine_steps: int, with_control: bool) -> dict:
    model = load_model(run_dir, which="last")
    truth = ds.obj
    data_range = float(np.ptp(np.abs(truth)))
    base = cfg.inference
    variants = {"raw": base.model_copy(update={"twin_fix": False, "refine_steps": 0}),
                "twin": base.model_copy(update={"twin_fix": True, "refine_steps": 0}),
                "default": base.model_copy(update={"refine_steps": refine_steps})}
    out = {"ssim_data_range": data_range, "ssim_data_range_note":
           "truth amplitude max - min over the whole object"}
    for name, icfg in variants.items():
        pred = predict(model, ds, icfg)
        out[name] = {**score(pred.obj, pred.covered, truth, data_range),
                     "coverage_fraction": pred.coverage_fraction,
                     "patterns_per_second_network": pred.patterns_per_second,
                     "seconds": pred.seconds,
                     "twin_fix": {k: v for k, v in pred.steps["twin_fix"].items()
                                  if k in ("applied", "flipped", "n_patterns", "reason")},
                     "refine": {k: v for k, v in pred.steps["refine"].items()
                                if k in ("applied", "steps", "nll_first", "nll_last")}}
    if with_control and refine_steps > 0:
        pred = predict(model, ds, variants["raw"])
        te = np.unique(np.concatenate([ds.indices("test")]))
        t0 = time.perf_counter()
        amp_ref = float(model.checkpoint["network"]["amp_ref"])
        obj, rec = refine_object(np.full(truth.shape, amp_ref, np.complex64),
                                 np.zeros(truth.shape, bool), model.probe.detach(), ds.counts[te],
                                 ds.xcoords[te], ds.ycoords[te],
                                 model.checkpoint["scales"]["loss_normaliser"]["mean_counts"],
                                 amp_ref, refine_steps, base.refine_lr)
        out["flat_init"] = {**score(obj, pred.covered, truth, data_range),
                            "seconds": time.perf_counter() - t0, "nll_last": rec["nll_last"]}
    return out


def bench_scenario(name: str, width: int, stages: list[int], time_limit: float, refine_steps: int,
                   workdir: Path, log) -> dict:
    over = {"training.width": width, "training.device": "cpu",
            "inference.refine_steps": refine_steps}
    cfg, profile, _ = resolve_scenario(name, over)
    t0 = time.perf_counter()
    ds, _ = simulate(cfg.simulation, scenario=name)
    sim_s = time.perf_counter() - t0
    run_dir = workdir / f"{name}_w{width}"
    res_rows, train_s, res = [], 0.0, None
    for k, epochs in enumerate(stages):
        stage_cfg = cfg.model_copy(update={"training": cfg.training.model_copy(
            update={"nepochs": epochs})})
        remaining = time_limit - train_s
        if remaining <= 0:
            break
        res = train(stage_cfg, ds, run_dir, resume=run_dir if k else None, progress=False,
                    time_limit_s=remaining, log=log)
        train_s += res.train_seconds
        ev = evaluate(run_dir, ds, cfg, refine_steps, with_control=(k == len(stages) - 1
                                                                   or res.status == "time_limit"))
        row = {"epochs": res.epochs_completed, "train_seconds_cumulative": train_s,
               "samples_per_second": res.samples_per_second, "final_loss": res.final_loss,
               "final_val_loss": res.final_val_loss, "status": res.status, **ev}
        res_rows.append(row)
        log(f"{name} w{width} epoch {res.epochs_completed} ({train_s:.0f} s): "
            + ", ".join(f"{v} P={row[v]['pearson']:.4f} SSIM={row[v]['ssim']:.4f} "
                        f"s={row[v]['lsq_scale']:.3f}" for v in ("raw", "twin", "default")))
        if res.status in ("time_limit", "nan"):
            break
    return {"scenario": name, "width": width, "profile": profile, "simulate_seconds": sim_s,
            "stages": res_rows,
            "config": cfg.to_dict()}


def throughput(widths: list[int], n: int = 64, batch: int = 8, steps: int = 6) -> list[dict]:
    """Training samples/s (forward + Poisson loss + backward + Adam) and inference patterns/s of
    the N=64 network per width and object support, on random input."""
    from ptychotrace.config import LossWeights
    from ptychotrace.model.losses import LossNormaliser, compute_losses
    from ptychotrace.model.network import NetworkConfig
    from ptychotrace.model.pinn import PINN
    from ptychotrace.physics.probe import ideal_probe

    rows = []
    probe = ideal_probe(n) * 500
    for width in widths:
        for support in ("central", "full"):
            torch.manual_seed(0)
            model = PINN(NetworkConfig(N=n, width=width, amp_ref=2.8, object_support=support), probe)
            opt = torch.optim.Adam(model.parameters(), 1e-3)
            x = torch.rand(batch, 1, n, n)
            counts = torch.rand(batch, 1, n, n) * 1e5
            norm = LossNormaliser(1e9, 1e6)
            for k in range(steps + 2):
                if k == 2:
                    t0 = time.perf_counter()
                out = model(x)
                loss = compute_losses(out, counts, norm, LossWeights())["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
            train_sps = steps * batch / (time.perf_counter() - t0)
            with torch.no_grad():
                xb = torch.rand(64, 1, n, n)
                model.net(xb)
                t0 = time.perf_counter()
                for _ in range(3):
                    model.net(xb)
                infer_pps = 3 * 64 / (time.perf_counter() - t0)
            rows.append({"width": width, "object_support": support,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "train_samples_per_second": train_sps,
                         "inference_patterns_per_second": infer_pps, "batch": batch})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", nargs="*", default=["gs1_ideal", "gs2_ideal", "gs1_custom"])
    ap.add_argument("--widths", nargs="+", type=int, default=[1])
    ap.add_argument("--stages", nargs="+", type=int, default=[5, 10, 20, 40, 80],
                    help="cumulative epochs at which to evaluate")
    ap.add_argument("--time-limit", type=float, default=900.0, help="training seconds per run")
    ap.add_argument("--refine-steps", type=int, default=InferenceConfig().refine_steps)
    ap.add_argument("--throughput-widths", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--workdir", default="/tmp/ptychotrace_bench_pinn")
    ap.add_argument("--output", default=str(ROOT / "results" / "bench_pinn.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count(), "torch": str(torch.__version__),
                           "torch_threads": torch.get_num_threads(),
                           "load_average_start": os.getloadavg()},
               "args": vars(args), "runs": [], "throughput": None}
    out = Path(args.output)
    if args.throughput_widths:
        results["throughput"] = throughput(args.throughput_widths)
        log(json.dumps(results["throughput"], indent=1))
        write_json(out, results)
    for name in args.scenarios:
        for width in args.widths:
            results["runs"].append(bench_scenario(name, width, args.stages, args.time_limit,
                                                  args.refine_steps, workdir, log))
            results["machine"]["load_average_end"] = os.getloadavg()
            write_json(out, results)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
