"""How much does one diffraction pattern say about its object patch? The gridsize-1 bound.

    .venv/bin/python benchmarks/bench_pattern_information.py   # results/pattern_information.json

A gridsize-1 network predicts each patch from its own pattern. Whatever it gets right beyond what
that pattern determines must come from a prior learned from the training objects. This benchmark
measures what one pattern determines, with no network and no overlap:

- the probe's footprint as a fraction of the N x N window (pixels holding 99 % / 99.9 % of
  |P|^2). One pattern gives N^2 real amplitudes; the patch inside the footprint has 2 x footprint
  real unknowns, so a footprint above about half the window leaves the patch under-determined
  (the oversampling condition of coherent diffraction imaging);
- the same fraction for the probe's own far field |F(P)|^2: how much fine structure the probe
  has. A smooth defocused probe (a zone plate) keeps its spectrum inside the pupil; a structured
  (measured) probe spreads it over the detector, which diversifies what one pattern encodes;
- a per-pattern fit: every test patch (N x N complex, in object units) is fitted by Adam to its
  own measured amplitudes (mean squared error of |far_field(P O)| against sqrt(counts), which is
  the variance-stabilised Poisson likelihood), starting from the one-step 'backprop' estimate
  (model/network.py). The fitted patches are stitched with the one stitcher and scored like a
  network's output (bench_pinn.score: covered region, no rescale). If the fit explains the data
  as well as the true object does (relative amplitude error at or below the truth's, which is
  the shot-noise floor) and still scores far below 1, the data of one pattern admit many
  objects and the score is what the data alone determine from that start.

It is an empirical reading of one start and one optimiser, not a proof: another start could find
another data-consistent patch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, parse_overrides, record_result  # noqa: E402
from bench_backprop_estimate import stitched_test_score  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.model.network import BackpropInput  # noqa: E402
from ptychotrace.physics.forward import extract_patches, far_field, pad_canvas, required_pad  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent


def footprint_fractions(probe: np.ndarray, energies=(0.99, 0.999)) -> dict:
    """Fraction of the N x N window holding each fraction of the probe's energy (brightest
    pixels first)."""
    power = np.sort((np.abs(probe) ** 2).ravel())[::-1]
    cum = np.cumsum(power) / power.sum()
    return {f"{e:g}": float((np.searchsorted(cum, e) + 1) / power.size) for e in energies}


def relative_amplitude_error(probe: torch.Tensor, patches: torch.Tensor,
                             measured: torch.Tensor) -> float:
    """mean |  |far_field(P O)| - sqrt(counts) | / mean sqrt(counts), over all patterns."""
    amp = far_field(probe * patches).abs()
    return float((amp - measured).abs().mean() / measured.mean())


def fit_patterns(probe: torch.Tensor, measured: torch.Tensor, start: torch.Tensor,
                 steps: int, lr: float = 0.01, report=(0,)) -> tuple[torch.Tensor, list]:
    """Adam on each patch (B, N, N complex) alone against its measured amplitudes (B, N, N):
    returns the fitted patches and [(step, relative amplitude error)] at the ``report`` steps."""
    param = torch.nn.Parameter(torch.view_as_real(start.clone()).contiguous())
    opt = torch.optim.Adam([param], lr=lr)
    trace = []
    for k in range(steps + 1):
        patches = torch.view_as_complex(param)
        amp = far_field(probe * patches).abs()
        if k in report:
            trace.append((k, float((amp.detach() - measured).abs().mean() / measured.mean())))
        if k == steps:
            break
        opt.zero_grad(set_to_none=True)
        (amp - measured).square().mean().backward()
        opt.step()
    return torch.view_as_complex(param.detach()), trace


def scenario_rows(scenario: str, total: int, steps: int, overrides: dict | None = None) -> dict:
    """One scenario's row; ``overrides`` are extra config entries (e.g. another probe file)."""
    over = {"simulation.base_total_images": total, **(overrides or {})}
    cfg, _, _ = resolve_scenario(scenario, over)
    ds, _ = simulate(cfg.simulation, scenario=scenario)
    test = ds.indices("test")
    n = ds.probe.shape[0]
    probe = torch.as_tensor(ds.probe.astype(np.complex64))
    measured = torch.sqrt(torch.as_tensor(ds.counts[test]).float())
    xs, ys = torch.as_tensor(ds.xcoords[test]), torch.as_tensor(ds.ycoords[test])

    def stitched_score(patches):
        return stitched_test_score(ds, patches, cfg.inference.stitch_window)

    pad = required_pad(n)
    canvas = pad_canvas(torch.as_tensor(ds.obj.astype(np.complex64)), pad, value=1.0)
    truth = extract_patches(canvas, xs + pad, ys + pad, n)
    est = BackpropInput(ds.probe, 1.0)(measured[:, None])
    start = torch.complex(est[:, 0], est[:, 1])
    t0 = time.perf_counter()
    fitted, trace = fit_patterns(probe, measured, start, steps,
                                 report=sorted({0, 10, 100, steps}))
    seconds = time.perf_counter() - t0
    row = {"scenario": scenario, "base_total_images": total, "overrides": overrides or {},
           "probe_source": (ds.metadata.get("probe") or {}).get("source"),
           "test_patterns": int(len(test)),
           "probe_footprint_fraction": footprint_fractions(ds.probe),
           "probe_far_field_footprint_fraction": footprint_fractions(
               far_field(probe).numpy()),
           "truth_relative_amplitude_error": relative_amplitude_error(probe, truth, measured),
           "start": {**stitched_score(start),
                     "relative_amplitude_error": relative_amplitude_error(probe, start, measured)},
           "fit_steps": steps, "fit_trace": trace, "fit_seconds": seconds,
           "fitted": {**stitched_score(fitted),
                      "relative_amplitude_error": relative_amplitude_error(probe, fitted,
                                                                           measured)},
           "true_patches_stitched": stitched_score(truth)}
    print(f"{scenario:11s} footprint 99% {row['probe_footprint_fraction']['0.99']:.2f} "
          f"99.9% {row['probe_footprint_fraction']['0.999']:.2f} | far field 99% "
          f"{row['probe_far_field_footprint_fraction']['0.99']:.2f} | truth err "
          f"{row['truth_relative_amplitude_error']:.4f} | start SSIM {row['start']['ssim']:.3f} "
          f"err {row['start']['relative_amplitude_error']:.4f} | fitted SSIM "
          f"{row['fitted']['ssim']:.3f} err {row['fitted']['relative_amplitude_error']:.4f} "
          f"| true patches SSIM {row['true_patches_stitched']['ssim']:.3f}", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["gs1_custom", "gs1_ideal"])
    ap.add_argument("--base-total-images", type=int, default=500,
                    help="500: the network studies' data (250 test patterns)")
    ap.add_argument("--steps", type=int, default=1000, help="Adam steps of the per-pattern fit")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                    help='config overrides for every scenario, e.g. '
                         'simulation.probe_file=\'"probe.npz"\' (another probe)')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", default=str(ROOT / "results" / "pattern_information.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    overrides = parse_overrides(args.set)
    rows = [scenario_rows(s, args.base_total_images, args.steps, overrides)
            for s in args.scenarios]
    record_result({"benchmark": "pattern_information", "command": " ".join(sys.argv),
                   "evaluation": "stitched per-pattern patches (no network, no overlap), covered "
                                 "region, no rescale (bench_pinn.score); relative amplitude "
                                 "error = mean |  |F(P O)| - sqrt(counts) | / mean sqrt(counts)",
                   "rows": rows, "wall_seconds": time.perf_counter() - t0,
                   "machine": describe_machine()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
