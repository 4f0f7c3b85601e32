"""Training and inference throughput at N=64 and N=128 on one device (issue #12).

    .venv/bin/python benchmarks/bench_gpu.py                      # CUDA: the documented run (< 5 min)
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --tiny  # CPU smoke run (seconds)

For each N: simulate a gs1_ideal-like scan (lines object, ideal probe, 1e9 photons), train the
PINN through ``ptychotrace.train.trainer.train`` (the product's loop: host->device batches, Poisson
NLL, Adam, validation) for ``--epochs`` epochs, and record the trainer's training samples/s
(groups x C per second of optimiser epochs, validation excluded); then the network-only inference
rate ``predict_patches`` (patterns per second of network forward passes, the rate the reference
PINN reports: 6.1k (N=64) and 2.6k (N=128) patterns/s on one GPU, arXiv 2602.21361) over the
test groups, best of ``--repeats`` passes after one warm-up pass. Results:
benchmarks/results/gpu_throughput_<device>.json with the machine described.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from ptychotrace.config import resolve_scenario
from ptychotrace.data.container import build_grouped
from ptychotrace.infer.predict import predict_patches
from ptychotrace.simulate import simulate
from ptychotrace.train.checkpoint import load_model
from ptychotrace.train.distributed import resolve_device
from ptychotrace.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402

ROOT = Path(__file__).resolve().parent
REFERENCE_PATTERNS_PER_S = {64: 6100.0, 128: 2600.0}


def one_size(n: int, args, device: torch.device, work: Path) -> dict:
    over = {"simulation.N": n, "simulation.object_size": args.object_size,
            "simulation.base_total_images": args.patterns, "grouping.group_count": args.patterns,
            "training.nepochs": args.epochs, "training.batch_size": args.batch_size,
            "training.device": str(device), "training.validation_fraction": 0.05,
            "simulation.buffer": min(10.0, args.object_size / 4),
            "training.precision": args.precision}
    cfg, _, _ = resolve_scenario("gs1_ideal", over, use_profile=False)
    t0 = time.perf_counter()
    ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
    sim_s = time.perf_counter() - t0
    res = train(cfg, ds, work / f"n{n}", progress=False, log=lambda *a: None)
    model = load_model(work / f"n{n}", device)
    ck = model.checkpoint
    data = build_grouped(ds, "test", 1, len(ds.indices("test")), 4, 0,
                         float(ck["scales"]["input_gain"]["value"]))
    predict_patches(model, data, args.infer_batch)                    # warm-up (cuDNN, caches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rates = [predict_patches(model, data, args.infer_batch)[1] for _ in range(args.repeats)]
    return {"N": n, "simulate_seconds": sim_s, "training_patterns": len(ds.indices("train")),
            "epochs": res.epochs_completed, "train_status": res.status,
            "train_batch_size": args.batch_size,
            "training_samples_per_second": res.samples_per_second,
            "train_seconds": res.train_seconds, "inference_patterns": int(data.X.shape[0]),
            "inference_batch_size": args.infer_batch,
            "inference_patterns_per_second": max(rates), "inference_rates": rates,
            "reference_inference_patterns_per_second": REFERENCE_PATTERNS_PER_S.get(n)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N, cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--patterns", type=int, default=4000, help="both splits, per size")
    ap.add_argument("--object-size", type=int, default=392)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke run (any device)")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="training.precision of the network (bfloat16: autocast mixed precision)")
    ap.add_argument("--output", help="default benchmarks/results/gpu_throughput_<device>.json")
    args = ap.parse_args(argv)
    if args.tiny:
        args.patterns, args.object_size, args.epochs = 24, 96, 1
        args.batch_size, args.infer_batch, args.repeats = 4, 8, 1
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    t0 = time.perf_counter()
    rows = [one_size(n, args, device, work) for n in args.sizes]
    result = {"benchmark": "gpu_throughput", "command": " ".join(sys.argv), "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "tiny": args.tiny, "precision": args.precision, "sizes": rows,
              "wall_seconds": time.perf_counter() - t0,
              "units": {"training_samples_per_second": "groups x C patterns per second of "
                        "optimiser epochs (trainer.py)", "inference_patterns_per_second":
                        "patterns per second of network forward passes (predict_patches)"},
              "machine": describe_machine()}
    out = args.output or ROOT / "results" / f"gpu_throughput_{device.type}.json"
    record_result(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
