"""Wall time of the documented scenario command (the README's main job), per stage.

Usage: python benchmarks/bench_demo.py [--output-dir /tmp/bench_demo]
Runs `ptychotrace run --scenario gs1_ideal --group-limit 64 --nepochs 5
--prediction-scale-source least_squares` in a fresh process and records its wall time and the
stage_seconds and headline metrics from the run's run_metadata.json.
Writes benchmarks/results/demo_command.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402

COMMAND = ["run", "--scenario", "gs1_ideal", "--group-limit", "64", "--nepochs", "5",
           "--prediction-scale-source", "least_squares", "--quiet", "--force"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output-dir", default="/tmp/ptychotrace_bench_demo")
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "demo_command.json"))
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "ptychotrace.cli", *COMMAND, "--output-dir", args.output_dir]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    meta = json.loads((Path(args.output_dir) / "run_metadata.json").read_text())
    amp = (meta.get("comparison") or {}).get("amplitude") or {}
    result = {"benchmark": "demo_command", "command": "ptychotrace " + " ".join(COMMAND),
              "wall_seconds": wall, "stage_seconds": meta.get("stage_seconds"),
              "training_samples_per_second": (meta.get("training") or {}).get("samples_per_second"),
              "inference_patterns_per_second": (meta.get("inference") or {}).get("patterns_per_second"),
              "amplitude_pearson": amp.get("pearson_r"), "amplitude_ssim": amp.get("ssim"),
              "least_squares_scale": ((meta.get("prediction_scale") or {}).get("least_squares")
                                      or {}).get("value"),
              "machine": describe_machine()}
    return record_result(result, args.output)


if __name__ == "__main__":
    main()
