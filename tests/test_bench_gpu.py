"""benchmarks/bench_gpu.py runs on a CPU (tiny) and records both rates per size."""

from __future__ import annotations

import json


def test_bench_gpu_tiny_on_cpu(tmp_path, load_benchmark):
    mod = load_benchmark("bench_gpu")
    out = tmp_path / "gpu.json"
    assert mod.main(["--device", "cpu", "--tiny", "--sizes", "32", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["tiny"] and [r["N"] for r in res["sizes"]] == [32]
    row = res["sizes"][0]
    assert row["training_samples_per_second"] > 0 and row["inference_patterns_per_second"] > 0
    assert row["epochs"] == 1 and row["inference_patterns"] > 0
