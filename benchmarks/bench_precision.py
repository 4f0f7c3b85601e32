"""Training and inference speed of the network in float32 and bfloat16 (``training.precision``).

    python benchmarks/bench_precision.py --output benchmarks/results/precision.json

For each configuration (N, gridsize, object support) the same network (same weights) runs
timed optimiser steps (forward, backward, Adam; a stand-in loss on the outputs, so the physics'
FFTs, common to both precisions, are left out) and timed no-grad forward passes, in the order
float32, float32 channels-last, bfloat16 (channels-last), float32, float32 channels-last; ratios
are taken against the mean of the two float32 blocks, so a drift of the shared machine during
the run shows as their difference (it is recorded). bfloat16 is fast only where the CPU has
native bfloat16 (AVX512-BF16 / AMX; the CPU flags are recorded) or on a GPU; elsewhere it is
emulated and slower (``--no-bfloat16`` leaves it out there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.model.network import NetworkConfig, PtychoNet  # noqa: E402
from ptychotrace.model.precision import cpu_flags, native_bfloat16  # noqa: E402

CONFIGS = [(64, 1, "central"), (64, 1, "full"), (64, 2, "central"), (64, 2, "full"),
           (128, 1, "central")]


def _cpu_flags() -> list[str]:
    """The flags that decide bfloat16 speed (and whether AVX-512 is there at all)."""
    return sorted(f for f in cpu_flags() or []
                  if "bf16" in f or f.startswith("amx") or f == "avx512f")


def _rates(net: PtychoNet, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """(training samples/s, inference patterns/s) of ``net`` on batch ``x``."""
    opt = torch.optim.Adam(net.parameters(), 1e-4)

    def step():
        amp, phase = net(x)
        loss = amp.square().mean() + phase.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()                                       # warm-up (kernel selection, allocations)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train = steps * x.shape[0] / (time.perf_counter() - t0)
    with torch.no_grad():
        net(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            net(x)
        infer = steps * x.shape[0] * x.shape[1] / (time.perf_counter() - t0)
    return train, infer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="groups per step (the study's batch)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bfloat16", action="store_true",
                    help="float32 layouts only (bfloat16 is emulated and very slow without "
                         "native support)")
    ap.add_argument("--output", default=str(Path(__file__).resolve().parent / "results" /
                                            "precision.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for n, gridsize, support in CONFIGS:
        torch.manual_seed(0)
        base = dict(N=n, gridsize=gridsize, amp_ref=2.0, object_support=support)
        x = torch.rand(args.batch, gridsize * gridsize, n, n)
        nets = {p: PtychoNet(NetworkConfig(**base, precision=p)) for p in ("float32", "bfloat16")}
        nets["bfloat16"].load_state_dict(nets["float32"].state_dict())
        nets["float32_cl"] = PtychoNet(NetworkConfig(**base))
        nets["float32_cl"].load_state_dict(nets["float32"].state_dict())
        nets["float32_cl"].set_conv_memory_format(torch.channels_last)
        f1 = _rates(nets["float32"], x, args.steps)
        c1 = _rates(nets["float32_cl"], x, args.steps)
        b = None if args.no_bfloat16 else _rates(nets["bfloat16"], x, args.steps)
        f2 = _rates(nets["float32"], x, args.steps)
        c2 = _rates(nets["float32_cl"], x, args.steps)
        f = [(f1[i] + f2[i]) / 2 for i in range(2)]
        c = [(c1[i] + c2[i]) / 2 for i in range(2)]
        row = {"N": n, "gridsize": gridsize, "object_support": support,
               "batch_groups": args.batch,
               "float32_train_samples_per_s": f[0], "float32_blocks": [f1, f2],
               "float32_infer_patterns_per_s": f[1],
               "float32_channels_last_train_samples_per_s": c[0],
               "float32_channels_last_infer_patterns_per_s": c[1],
               "float32_channels_last_blocks": [c1, c2],
               "channels_last_train_speedup": c[0] / f[0],
               "channels_last_infer_speedup": c[1] / f[1]}
        line = (f"N={n} gs={gridsize} {support}: float32 channels-last train x{c[0] / f[0]:.2f} "
                f"({f[0]:.1f} -> {c[0]:.1f} samples/s), infer x{c[1] / f[1]:.2f}")
        if b is not None:
            row.update({"bfloat16_train_samples_per_s": b[0], "bfloat16_infer_patterns_per_s": b[1],
                        "train_speedup": b[0] / f[0], "infer_speedup": b[1] / f[1]})
            line += (f"; bfloat16 train x{b[0] / f[0]:.2f} ({b[0]:.1f} samples/s), "
                     f"infer x{b[1] / f[1]:.2f}")
        rows.append(row)
        print(line, flush=True)
    record_result({"benchmark": "precision", "command": " ".join(sys.argv),
                   "cpu_flags": _cpu_flags(), "native_bfloat16": native_bfloat16("cpu"),
                   "rows": rows,
                   "units": {"train": "groups per second of optimiser steps (network only)",
                             "infer": "patterns per second of no-grad forward passes"},
                   "machine": describe_machine()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
