"""benchmarks/bench_gpu.py runs on a CPU (tiny) and records both rates per size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_tiny_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu.json"
    assert mod.main(["--device", "cpu", "--tiny", "--sizes", "32", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["tiny"] and [r["N"] for r in res["sizes"]] == [32]
    row = res["sizes"][0]
    assert row["training_samples_per_second"] > 0 and row["inference_patterns_per_second"] > 0
    assert row["epochs"] == 1 and row["inference_patterns"] > 0
