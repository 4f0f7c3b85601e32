"""Run every benchmark and record results in benchmarks/results/ (see docs/benchmarks.md).

Usage: python benchmarks/run_all.py [--quick] [--with-sweep]

  simulation        bench_simulation.py       simulation vs bare batched FFT (same run)
  pinn              bench_pinn.py             PINN quality vs epochs, training/inference speed
  demo              bench_demo.py             wall time of the README's scenario command
  inference_memory  bench_inference_memory.py peak memory of a 10k-pattern inference
  sweep (optional)  ptychotrace sweep         quality vs dose, PINN next to the baseline

Benchmarks are timing-sensitive: run them on an otherwise idle machine and compare ratios measured
within one run rather than absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs and patterns (smoke run)")
    ap.add_argument("--with-sweep", action="store_true", help="also run the dose sweep (long)")
    ap.add_argument("--sweep-dir", default="/tmp/ptychotrace_bench_sweep")
    args = ap.parse_args(argv)
    py = sys.executable
    run([py, str(HERE / "bench_simulation.py")] + (["--repeats", "1"] if args.quick else []))
    run([py, str(HERE / "bench_pinn.py")] + (["--scenarios", "gs1_ideal", "--stages", "5"]
                                             if args.quick else []))
    run([py, str(HERE / "bench_demo.py")])
    run([py, str(HERE / "bench_inference_memory.py")] + (["--patterns", "1000"] if args.quick else []))
    if args.with_sweep:
        run([py, "-m", "ptychotrace.cli", "sweep", "--scenario", "gs1_ideal", "--nphotons",
             "1e3,1e4,1e5,1e6,1e7,1e9", "--output-dir", args.sweep_dir, "--with-baseline",
             "--nepochs", "10", "--quiet"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
