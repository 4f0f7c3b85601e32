"""Shared fixtures: tiny, fast configurations of the real pipeline."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when pytest runs. An explicit
# OMP_NUM_THREADS wins, so the suite can be checked with 1 and with 2 threads (issue #11: both
# must pass, since thread count changes the order of floating-point reductions).
_threads = os.environ.get("OMP_NUM_THREADS", "")
torch.set_num_threads(int(_threads) if _threads.isdigit() and int(_threads) > 0
                      else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("bench_gpu")``: import ``benchmarks/<name>.py`` (not a package) as a module."""
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, bench_dir / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


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


#: The analyzer suites' tiny gs1_ideal run (N 32, 96 px object, 48 patterns per split, 1 epoch).
TINY_RUN = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
            "simulation.buffer": 8.0, "grouping.group_count": 64, "training.nepochs": 1,
            "training.batch_size": 8, "inference.stitch_window": 12,
            "evaluation.prediction_scale_source": "least_squares"}


@pytest.fixture(scope="session")
def run_tiny():
    """``run_tiny(out_dir, overrides={}, dataset=None, faults={})`` -> (config, dataset): one real
    run of the tiny gs1_ideal configuration (TINY_RUN + overrides) through the scenario runner.
    ``dataset`` (default: simulated from the config) is what the run reads; the simulation record
    is always the config's own, as for a file whose metadata state the nominal settings."""
    from ptychotrace.config import resolve_scenario
    from ptychotrace.scenarios.runner import RunRequest, run_scenario
    from ptychotrace.simulate import simulate

    def run(out_dir, overrides=None, dataset=None, faults=None):
        cfg, _, _ = resolve_scenario("gs1_ideal", {**TINY_RUN, **(overrides or {})},
                                     use_profile=False)
        ds, record = simulate(cfg.simulation, scenario="gs1_ideal")
        run_scenario(RunRequest(config=cfg, output_dir=out_dir, progress=False,
                                dataset=ds if dataset is None else dataset,
                                dataset_record=record, faults=faults or {}))
        return cfg, ds
    return run
