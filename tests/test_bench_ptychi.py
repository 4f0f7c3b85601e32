"""benchmarks/bench_ptychi.py maps our conventions onto pty-chi's (only where pty-chi is installed:
it is an optional, benchmark-only dependency, absent in CI)."""

from __future__ import annotations

import importlib.util

import pytest

from ptychotrace.config import resolve_scenario
from ptychotrace.simulate import simulate

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ptychi") is None,
                                reason="pty-chi not installed (optional, benchmark only)")


def test_ptychi_forward_model_matches_ours_and_detects_a_shift(load_benchmark):
    mod = load_benchmark("bench_ptychi")
    api, task_cls, _ = mod.import_ptychi()
    cfg, _, _ = resolve_scenario("gs1_ideal", {"simulation.base_total_images": 64})
    ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
    idx = ds.indices("test")[:32]
    inp = mod.ptychi_inputs(ds, idx)
    assert mod.model_mismatch(api, task_cls, ds, idx, inp) < mod.MAX_MODEL_MISMATCH
    # the check can fail: half a pixel off in x (1.6 % on gs1_ideal; one pixel: 2-3 %), or the
    # unnormalised FFT's N^2 forgotten
    shifted = dict(inp, x_px=inp["x_px"] + 0.5)
    assert mod.model_mismatch(api, task_cls, ds, idx, shifted) > mod.MAX_MODEL_MISMATCH
    unscaled = dict(inp, probe=inp["probe"] * ds.patch_size)
    assert mod.model_mismatch(api, task_cls, ds, idx, unscaled) > 100
