"""Which compute precision the network should run in on this device.

bfloat16 (``training.precision``, autocast mixed precision) pays only where the hardware computes
it natively: a CPU with AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (Arm), or a GPU that
supports it. Elsewhere PyTorch emulates it: measured on a 2-core AMD EPYC with AVX2 only
(`benchmarks/results/precision_avx2.json`), a training step ran 10-13x slower than float32 and a
forward pass 5-7x slower, against 3.6-4.2x / 4-6x faster on a Sapphire Rapids VM with AMX
(`results/precision.json`). So training warns when it is asked for emulated bfloat16, and
inference of a bfloat16-trained model falls back to float32 there (``inference.precision:
auto``), since its weights are float32 anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["INFERENCE_PRECISIONS", "BF16_CPU_FLAGS", "cpu_flags", "cpu_bfloat16_flags", "native_bfloat16",
           "resolve_inference_precision", "bfloat16_training_warning", "precision_note"]

#: ``inference.precision`` values: "auto" = the model's precision where this device computes it
#: natively, else float32; the others force one.
INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")

#: CPU feature flags (/proc/cpuinfo) that mean native bfloat16 arithmetic: x86 AVX512-BF16 and
#: AMX-BF16, Arm's BF16 extension ("bf16" in the Features line).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The feature flags of the first CPU in ``cpuinfo`` (default: /proc/cpuinfo; the "flags"
    line on x86, "Features" on Arm), sorted; None where they cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return sorted(value.split())
    return None


def cpu_bfloat16_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The bfloat16 flags (BF16_CPU_FLAGS) among :func:`cpu_flags`; None where unreadable."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else [f for f in flags if f in BF16_CPU_FLAGS]


def native_bfloat16(device: torch.device | str, cpuinfo: str | None = None) -> bool | None:
    """Whether ``device`` computes bfloat16 natively: True, False, or None (cannot tell: a CPU
    whose flags cannot be read, or another device type). ``cpuinfo``: the text of /proc/cpuinfo
    (for tests; default: this machine's)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return None
    flags = cpu_bfloat16_flags(cpuinfo)
    return None if flags is None else bool(flags)


def bfloat16_training_warning(precision: str, device: torch.device | str,
                              cpuinfo: str | None = None) -> str | None:
    """The warning training prints when asked for bfloat16 on a device that only emulates it
    (None when there is nothing to say)."""
    if precision != "bfloat16" or native_bfloat16(device, cpuinfo) is not False:
        return None
    return ("warning: training.precision 'bfloat16' on a CPU without native bfloat16 (no "
            "avx512_bf16 / amx_bf16 flag): PyTorch emulates it, measured 10-13x slower than "
            "float32 on such a CPU (docs/benchmarks.md); use --precision float32 here")


def resolve_inference_precision(requested: str, trained: str, device: torch.device | str,
                                cpuinfo: str | None = None) -> dict[str, Any]:
    """The precision inference runs the network in, and why. ``requested``: "auto" | "float32" |
    "bfloat16" (``inference.precision``); ``trained``: the checkpoint's ``network.precision``.
    Returns {requested, trained_precision, compute_precision, native_bfloat16, reason}."""
    if requested not in INFERENCE_PRECISIONS:
        raise ValueError(f"inference precision must be one of {INFERENCE_PRECISIONS}, got "
                         f"{requested!r}")
    native = native_bfloat16(device, cpuinfo)
    if requested != "auto":
        compute, reason = requested, "requested (inference.precision)"
    elif trained != "bfloat16":
        compute, reason = trained, "the model's training precision"
    elif native is False:
        compute = "float32"
        reason = ("the model trained in bfloat16, but this CPU has no native bfloat16 (emulated, "
                  "5-7x slower): the network runs in float32 (its weights are float32)")
    else:
        compute = "bfloat16"
        reason = ("the model's training precision (native on this device)" if native
                  else "the model's training precision (native support unknown)")
    return {"requested": requested, "trained_precision": trained, "compute_precision": compute,
            "native_bfloat16": native, "device": str(torch.device(device)), "reason": reason}


def precision_note(record: dict[str, Any] | None) -> str | None:
    """One line for the log when inference ran the network in another precision than it trained
    in (None otherwise)."""
    if not record or record.get("compute_precision") == record.get("trained_precision"):
        return None
    return (f"note: the network ran in {record['compute_precision']}, not its training precision "
            f"{record['trained_precision']}: {record['reason']} ('precision' in stats.json "
            f"'prediction'; inference.precision / --precision chooses)")
