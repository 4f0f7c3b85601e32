"""Simulation of the sim-lines scenarios: object, probe, scan, dose, Poisson counts.

``simulate(config) -> (Dataset, record)``. The record holds the probe and dose blocks of
``run_metadata.json`` (probe stats before/after normalisation, dataset_scale_info,
split_intensity_stats) so that the scale chain starts at the source.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import __version__
from .config import ProbeMode, SimulationConfig
from .data.dataset import TEST, TRAIN, Dataset
from .physics.forward import extract_patches, far_field_of_product, pad_canvas, required_pad
from .physics.noise import far_field_intensity, sample_poisson
from .physics.objects import lines_object
from .physics.probe import amplitude_stats, focused_probe, ideal_probe, load_probe_npz, normalise_probe
from .physics.scaling import dataset_dose_scale
from .physics.scan import grid_positions, random_positions, split_by_y

#: Patterns per chunk of the forward model (bounds memory at ~ chunk * N^2 * 16 bytes).
CHUNK = 512

Progress = Callable[[int, int], None]


def make_probe(sim: SimulationConfig) -> tuple[np.ndarray, str]:
    """Raw (unnormalised) probe and a description of its source."""
    if sim.probe_file is not None:
        return load_probe_npz(sim.probe_file, sim.N), f"npz:{sim.probe_file}"
    if sim.probe_mode == ProbeMode.ideal:
        return ideal_probe(sim.N), "ideal_disk"
    return focused_probe(sim.N), "custom_focused_zone_plate"


def split_stats(unit_sums: np.ndarray, split: np.ndarray, nphotons: float) -> dict:
    """Per-split mean summed intensity and the dose scale each split alone would imply."""
    out = {}
    for name, code in (("train", TRAIN), ("test", TEST)):
        sel = unit_sums[split == code]
        m = float(sel.mean()) if len(sel) else None
        out[name] = {"batch_mean_sum_intensity": m, "n_samples": int(len(sel)),
                     "dataset_scale": float(np.sqrt(nphotons / m)) if m else None}
    tr, te = out["train"]["dataset_scale"], out["test"]["dataset_scale"]
    ratio = tr / te if tr and te else None
    out["train_vs_test_scale_ratio"] = ratio
    out["train_vs_test_deviation_pct"] = None if ratio is None else 100.0 * abs(ratio - 1.0)
    out["deviation_exceeds_5pct"] = None if ratio is None else bool(abs(ratio - 1.0) > 0.05)
    return out


def simulate(sim: SimulationConfig, progress: Progress | None = None,
             scenario: str | None = None) -> tuple[Dataset, dict]:
    """Simulate one dataset (both splits). Deterministic for fixed seeds.

    Two passes over the patterns in chunks of CHUNK: the unit-dose far-field intensities (whose
    training-split mean gives the dose scale), then Poisson counts at that scale in place."""
    n = sim.N
    obj = lines_object(sim.object_size, sim.object_seed, phase=sim.object_phase)
    raw_probe, probe_source = make_probe(sim)
    norm = normalise_probe(raw_probe, sim.resolved_probe_scale, use_mask=sim.probe_mask)

    pos_rng_seed, noise_seed = np.random.SeedSequence(sim.sim_seed).spawn(2)
    if sim.scan == "random":
        pos = random_positions(sim.total_images, sim.object_size, sim.object_size, sim.buffer,
                               seed=int(pos_rng_seed.generate_state(1)[0]))
    else:
        pos = grid_positions(sim.grid_step, sim.object_size, sim.object_size, sim.buffer)
    n_pat = len(pos)
    train_idx, test_idx = split_by_y(pos.ycoords, sim.split_fraction)
    split = np.full(n_pat, TEST, dtype=np.int8)
    split[train_idx] = TRAIN

    chunks = [slice(s, min(s + CHUNK, n_pat)) for s in range(0, n_pat, CHUNK)]
    tick = _progress_ticker(progress, 2 * n_pat)
    counts, unit_sums = _unit_dose_intensities(obj, norm.probe, pos, n, chunks, tick)
    # The dose scale comes from the training split alone (physics.md), before any sampling.
    dose = dataset_dose_scale(sim.nphotons, float(unit_sums[train_idx].mean()), n)
    noise_seed_int = int(noise_seed.generate_state(1, dtype=np.uint64)[0])
    measured = _counts_in_place(counts, dose.value**2, sim.poisson_noise, noise_seed_int, chunks,
                                tick)

    physical_probe = (norm.probe * np.float32(dose.value)).astype(np.complex64)
    record, metadata = _records(sim, scenario, raw_probe, probe_source, norm, physical_probe,
                                dose, unit_sums, measured, split, train_idx, test_idx)
    ds = Dataset(xcoords=pos.xcoords, ycoords=pos.ycoords, counts=counts, probe=physical_probe,
                 obj=obj, scan_index=np.arange(n_pat, dtype=np.int64), split=split,
                 metadata=metadata)
    return ds, record


def _progress_ticker(progress: Progress | None, total: int):
    """A callable advancing ``progress`` by a chunk's pattern count (no-op without progress)."""
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress(done[0], total)
    return tick


def _unit_dose_intensities(obj, probe0, pos, n, chunks, tick) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: unit-dose far-field intensities |F(P0 * O_j)|^2, (P, N, N) float32, written
    straight into the counts array (no second copy), and each pattern's float64 sum."""
    pad = required_pad(n)
    canvas = pad_canvas(torch.from_numpy(obj), pad)
    p0 = torch.from_numpy(probe0)
    xs = torch.from_numpy(pos.xcoords + pad)
    ys = torch.from_numpy(pos.ycoords + pad)
    n_pat = len(pos)
    counts = np.empty((n_pat, n, n), dtype=np.float32)
    unit_sums = np.empty(n_pat, dtype=np.float64)
    with torch.no_grad():
        for sl in chunks:
            field = far_field_of_product(p0, extract_patches(canvas, xs[sl], ys[sl], n))
            unit_sums[sl] = far_field_intensity(field.numpy(), counts[sl])
            tick(sl.stop - sl.start)
    return counts, unit_sums


def _counts_in_place(counts, s2: float, poisson: bool, noise_seed: int, chunks, tick
                     ) -> np.ndarray:
    """Pass 2, in place: counts = Poisson(s^2 * intensity), or the expected counts without
    noise. Returns each pattern's measured photons (float64 sums)."""
    measured = np.empty(len(counts), dtype=np.float64)
    for sl in chunks:
        block = counts[sl]
        if poisson:
            sample_poisson(block, noise_seed, s2, first_pattern=sl.start, out=block)
        else:
            np.multiply(block, np.float32(s2), out=block)
        measured[sl] = block.sum(axis=(1, 2), dtype=np.float64)
        tick(sl.stop - sl.start)
    return measured


def _records(sim, scenario, raw_probe, probe_source, norm, physical_probe, dose, unit_sums,
             measured, split, train_idx, test_idx) -> tuple[dict, dict]:
    """(the simulation record of the scale chain, the dataset's metadata)."""
    n, n_pat = sim.N, len(split)
    probe_block = {
        "source": probe_source, "mode": sim.probe_mode.value, "shape": list(raw_probe.shape),
        "pre_normalisation": amplitude_stats(raw_probe),
        "post_normalisation": amplitude_stats(norm.probe),
        "physical": amplitude_stats(physical_probe),
        "energy": float(np.sum(np.abs(norm.probe.astype(np.complex128)) ** 2)),
        "energy_units": "sum|P0|^2 (normalised probe, dimensionless)",
        "physical_energy_photons": float(np.sum(np.abs(physical_probe.astype(np.complex128)) ** 2)),
        "probe_scale": norm.probe_scale, "mask_used": sim.probe_mask,
        "mask_coverage": norm.mask_coverage, "norm_factor": norm.norm_factor,
    }
    dataset_scale_info = {
        "N": n, "nphotons": sim.nphotons,
        "batch_mean_sum_intensity": dose.batch_mean_sum_intensity,
        "dataset_scale": dose.value, "fallback_scale": dose.closed_form_value,
        "ratio": dose.value / dose.closed_form_value, "used_mode": dose.mode,
        "derived_from": "train split, far-field sum |F(P0*O_j)|^2 of each unit-dose pattern "
                        "(equal to the real-space sum |P0*O_j|^2 by Parseval)",
    }
    record = {
        "probe": probe_block,
        "dataset_scale_info": dataset_scale_info,
        "split_intensity_stats": split_stats(unit_sums, split, sim.nphotons),
        "measured_photons_per_pattern": {
            "all": float(measured.mean()), "train": float(measured[train_idx].mean()),
            "test": float(measured[test_idx].mean()), "units": "photons (summed counts)"},
        "counts": {"total_images": n_pat, "train_count": int(len(train_idx)),
                   "test_count": int(len(test_idx)), "gridsize": sim.gridsize, "N": n,
                   "nphotons": sim.nphotons},
    }
    metadata = {
        "generator": f"ptychotrace {__version__}", "scenario": scenario,
        "nphotons": sim.nphotons,
        "dose": {"scale": dose.value, "mode": dose.mode, "derived_from": "train",
                 "units": "sqrt(photons) per unit of normalised probe amplitude"},
        "seeds": {"object_seed": sim.object_seed, "sim_seed": sim.sim_seed},
        "probe": {k: probe_block[k] for k in ("source", "mode", "probe_scale", "norm_factor",
                                              "mask_used")},
        "normalised_probe_energy": probe_block["energy"],
        "simulation": sim.model_dump(mode="json"),
    }
    return record, metadata
