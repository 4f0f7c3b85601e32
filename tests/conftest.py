"""Shared fixtures: tiny, fast configurations of the real pipeline."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when pytest runs. An explicit
# OMP_NUM_THREADS wins, so the suite can be checked with 1 and with 2 threads (issue #11: both
# must pass, since thread count changes the order of floating-point reductions).
_threads = os.environ.get("OMP_NUM_THREADS", "")
torch.set_num_threads(int(_threads) if _threads.isdigit() and int(_threads) > 0
                      else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_sim_overrides() -> dict:
    """A small but complete sim-lines problem (N 32, 96 px object, 64 patterns)."""
    return {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 64,
            "grouping.group_count": 32, "simulation.buffer": 8.0}


@pytest.fixture(scope="session")
def tiny_dataset(tiny_sim_overrides):
    from ptychotrace.config import resolve_scenario
    from ptychotrace.simulate import simulate

    cfg, _, _ = resolve_scenario("gs1_ideal", tiny_sim_overrides, use_profile=False)
    return simulate(cfg.simulation)
