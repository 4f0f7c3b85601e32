"""Peak memory and throughput of a 10k-pattern inference (N=64, gridsize 1).

Usage: python benchmarks/bench_inference_memory.py [--patterns 10000] [--batch-size 64]
Runs in a child process so that ru_maxrss measures this inference alone; reports the peak
resident memory, the memory held by the dataset itself, and the difference (what inference adds).
The network weights do not change memory or speed, so an untrained model of the default
architecture is used. Writes benchmarks/results/inference_memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402


def child(patterns: int, batch_size: int) -> dict:
    import numpy as np
    import torch

    from ptychotrace.config import InferenceConfig, resolve_scenario
    from ptychotrace.infer.predict import predict
    from ptychotrace.simulate import simulate
    from ptychotrace.train.trainer import build_model, prepare_training_data

    # gs1_ideal geometry with enough images that the test split holds `patterns` patterns
    cfg, _, _ = resolve_scenario("gs1_ideal", {
        "simulation.base_total_images": 2 * patterns, "grouping.group_count": patterns,
        "simulation.object_size": 392})
    ds, _ = simulate(cfg.simulation)
    data = prepare_training_data(cfg, ds)
    model = build_model(cfg, ds, data)
    model.checkpoint = {  # what load_model would attach: grouping and frozen scales
        "config": cfg.to_dict(), "network": model.net_cfg.to_dict(),
        "scales": data.scales(cfg.training.contract)}
    rss_data_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    inf = InferenceConfig(batch_size=batch_size, refine_steps=0)
    pred = predict(model, ds, inf)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"patterns": int(pred.n_patterns), "batch_size": batch_size,
            "peak_rss_mib": peak_kib / 1024, "rss_before_inference_mib": rss_data_kib / 1024,
            "inference_added_mib": (peak_kib - rss_data_kib) / 1024,
            "dataset_counts_mib": ds.counts.nbytes / 2**20,
            "seconds_total": seconds, "patterns_per_second_network": pred.patterns_per_second,
            "patterns_per_second_end_to_end": pred.n_patterns / seconds,
            "torch_threads": torch.get_num_threads(), "numpy": np.__version__}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patterns", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "inference_memory.json"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.patterns, args.batch_size)))
        return {}
    proc = subprocess.run([sys.executable, __file__, "--child", "--patterns", str(args.patterns),
                           "--batch-size", str(args.batch_size)], capture_output=True, text=True,
                          check=True)
    result = {"benchmark": "inference_memory", **json.loads(proc.stdout.strip().splitlines()[-1]),
              "machine": describe_machine()}
    return record_result(result, args.output)


if __name__ == "__main__":
    main()
