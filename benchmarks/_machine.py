"""Describe the machine a benchmark ran on (recorded next to every result)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch


def describe_machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    # whether bfloat16 is native here (AVX512-BF16 / AMX / Arm BF16): a bfloat16 result's
    # seconds are only comparable between machines that agree on this (model/precision.py)
    from ptychotrace.model.precision import cpu_bfloat16_flags

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "cpu_bfloat16_flags": cpu_bfloat16_flags(),
            "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


def record_result(result: dict, output: str | Path) -> dict:
    """Write a benchmark result as JSON (with its machine block) and print it without the machine."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return result


def parse_overrides(items: list[str]) -> dict:
    """``KEY=JSON`` command-line items (``--set``) as a config-override dict; a malformed item
    stops the benchmark with a message naming it."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=JSON, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            raise SystemExit(f"{key}: the value {value!r} is not JSON ({err.msg}); quote "
                             f"strings, e.g. {key}='\"text\"'") from None
    return out
