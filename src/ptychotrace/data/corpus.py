"""Training data at the scale a network needs (issue #12): a denser scan of the training object
and a corpus of simulated objects, streamed into a bounded buffer.

``build_training_dataset(config, ds, cache_dir)`` returns one training :class:`Dataset` (every
pattern labelled train) and a typed :class:`CorpusManifest`. Its entries:

- ``scenario_train``: the scenario's own training split (copied; ``corpus.include_scenario_train``);
- ``train_scan``: extra positions on the training object, inside its training region only
  (y <= the largest training y, the rule of ``split_by_y``): a raster (``train_dense_step``) and/or
  ``train_extra_positions`` random positions; needs the ground-truth object;
- ``corpus``: ``corpus.count`` objects of ``corpus.families`` (physics/objects.py), cycled, each with
  ``patterns_per_object`` random positions.

Physics: every new pattern is ``Poisson(|F(P * O_j)|^2)`` with ``P`` the scenario's *physical*
probe (sqrt(photons)): the dose scale is the one derived from the scenario's training split and
recorded in its metadata, so the network's scale chain (input gain, loss normaliser, amp_ref,
all re-derived from this training set by the trainer) stays that of the test scan.

Frame: the objects are laid side by side in one mosaic (the scenario object first, at offset 0,
so its positions are unchanged), separated by a zero gap of at least N + 2 pixels (no patch sees
a neighbour; zero is also the simulator's padding value, so truth labels cut from the mosaic equal
those cut from each object alone) and wider than the largest K-th-nearest-neighbour distance
within any object, so neighbour grouping (K = neighbor_count) never joins two objects.

Memory bound (by design): patterns are simulated ``CHUNK`` at a time straight into the counts
array: at most ``CHUNK`` patterns (``CHUNK * N^2 * 8`` bytes of complex far field, plus the FFT's
work space) are in flight, whatever the corpus size. With a ``cache_dir`` the counts array is a
memory-mapped ``counts.npy`` on disk (``P * N^2 * 4`` bytes; opened read-only for training), so
simulation holds only that buffer, the positions and the mosaic object (``H * W * 8`` bytes) in RAM.
The trainer then groups the training set into its in-memory container (trainer.py), which holds
the grouped counts and inputs; that, not the simulation, bounds the training set's size.

Deterministic under ``corpus.seed``: object seeds ``corpus.seed + k`` (the scenario's lines seed
is skipped for lines objects), positions and noise from ``SeedSequence([seed, k, purpose])``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from scipy.spatial import cKDTree

from .. import __version__
from ..config import CorpusConfig, RunConfig
from ..physics.forward import extract_patches, far_field_of_product, pad_canvas, required_pad
from ..physics.noise import far_field_intensity, sample_poisson
from ..physics.objects import (
    DEFAULT_AMP_RANGE,
    grf_object,
    lines_object,
    siemens_object,
    texture_object,
)
from ..physics.probe import probe_fingerprint
from ..physics.scan import grid_positions, random_positions
from .dataset import TEST, TRAIN, Dataset

#: Patterns simulated at once: the design bound on the in-flight buffer (see the module doc).
CHUNK = 256
MANIFEST_SCHEMA_VERSION = "1.0"
#: Purpose codes in the seed sequences (positions, noise).
_POS, _NOISE = 1, 2
#: Entry index used for the training-object scans in the seed sequences (corpus objects use k).
_TRAIN_SCAN_KEY = 1_000_000


class TrainingDataEntry(BaseModel):
    """One block of rows of the training set. Sizes in pixels, photons per pattern measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    kind: Literal["scenario_train", "train_scan", "corpus"]
    family: str
    object_seed: int | None
    object_shape: tuple[int, int]
    n_patterns: int
    first_row: int
    offset_px: tuple[float, float]            # (x, y) of the object's origin in the mosaic
    photons_per_pattern_mean: float
    detail: str = ""


class CorpusManifest(BaseModel):
    """What the training set holds and how it was made (written as manifest.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: str = MANIFEST_SCHEMA_VERSION
    generator: str
    key: str                                  # sha256 of every input that determines the data
    N: int
    n_patterns: int
    entries: tuple[TrainingDataEntry, ...]
    probe_source: str
    probe_fingerprint: str
    dose_scale: float | None
    dose_mode: str | None
    dose_derived_from: str
    nphotons_target: float | None
    amp_range: tuple[float, float]
    gap_px: int
    mosaic_shape: tuple[int, int] | None
    poisson_noise: bool
    cache: str | None
    counts_bytes: int
    chunk_patterns: int
    peak_buffer_patterns: int
    config: CorpusConfig

    def summary(self) -> dict:
        """Compact dict for dataset metadata and logs."""
        fams: dict[str, int] = {}
        for e in self.entries:
            fams[e.family] = fams.get(e.family, 0) + e.n_patterns
        return {"n_patterns": self.n_patterns, "objects": len({e.offset_px for e in self.entries}),
                "patterns_by_family": fams, "key": self.key, "cache": self.cache}


# --------------------------------------------------------------------------------------------
# Streaming forward model
# --------------------------------------------------------------------------------------------
def simulate_scan(obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                  out: np.ndarray, seed: int, poisson: bool = True, chunk: int = CHUNK,
                  on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
    """Counts ``Poisson(|F(probe * O_j)|^2)`` of one object written into ``out`` (P, N, N) float32.

    probe: (N, N) complex64 physical probe, sqrt(photons); positions in object pixels. ``chunk``
    patterns are in flight at a time (``on_chunk(n)`` is told each chunk's size). The noise of
    chunk c is seeded by ``SeedSequence(seed)`` state c, so the result depends on (seed, chunk).
    Returns the measured photons of each pattern (P,) float64."""
    n = probe.shape[-1]
    n_pat = len(xcoords)
    if out.shape != (n_pat, n, n) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n_pat, n, n)}, got {out.dtype} {out.shape}")
    pad = required_pad(n)
    canvas = pad_canvas(torch.from_numpy(np.ascontiguousarray(obj, dtype=np.complex64)), pad)
    p = torch.from_numpy(np.ascontiguousarray(probe, dtype=np.complex64))
    xs = torch.from_numpy(np.asarray(xcoords, dtype=np.float64) + pad)
    ys = torch.from_numpy(np.asarray(ycoords, dtype=np.float64) + pad)
    starts = range(0, n_pat, chunk)
    # uint32 states: valid seeds for every version of the noise sampler
    seeds = np.random.SeedSequence(seed).generate_state(max(len(starts), 1), dtype=np.uint32)
    sums = np.empty(n_pat, dtype=np.float64)
    with torch.no_grad():
        for c, s in enumerate(starts):
            sl = slice(s, min(s + chunk, n_pat))
            block = np.asarray(out[sl])                       # a plain view of out's rows
            field = far_field_of_product(p, extract_patches(canvas, xs[sl], ys[sl], n))
            far_field_intensity(field.numpy(), block)
            del field
            if poisson:
                sample_poisson(block, int(seeds[c]), 1.0, out=block)
            sums[sl] = block.reshape(len(block), -1).sum(axis=1, dtype=np.float64)
            if on_chunk is not None:
                on_chunk(sl.stop - sl.start)
    return sums


# --------------------------------------------------------------------------------------------
# Objects and positions
# --------------------------------------------------------------------------------------------
def make_object(family: str, seed: int, size: int, corpus: CorpusConfig,
                amp_range: tuple[float, float], lines_phase: str = "zero",
                lines_density_size: int = 392) -> np.ndarray:
    """One corpus object, complex64 (size, size). Lines objects keep the line density of a
    ``lines_density_size`` object (400 lines there; the scenario object's size)."""
    if family == "lines":
        n_lines = max(1, int(round(400 * (size / lines_density_size) ** 2)))
        return lines_object(size, seed, n_lines=n_lines, phase=lines_phase)
    if family == "grf":
        return grf_object(size, seed, amp_range, corpus.phase_max_rad)
    if family == "siemens":
        return siemens_object(size, seed, amp_range, corpus.phase_max_rad)
    if family == "texture":
        return texture_object(size, seed, tuple(corpus.textures), amp_range, corpus.phase_max_rad)
    raise ValueError(f"unknown corpus family {family!r}")


def _seed(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint32)[0])


def _kth_neighbour_distance(xs: np.ndarray, ys: np.ndarray, k: int) -> float:
    if len(xs) < 2:
        return 0.0
    k = min(k, len(xs))
    d, _ = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs, ys]), k=k)
    return float(np.max(d))


class _Block:
    """A planned block of rows: positions in its object's frame, and how to fill the counts."""

    def __init__(self, name, kind, family, object_seed, slot, xs, ys, noise_seed=None,
                 source_rows=None, detail=""):
        self.name, self.kind, self.family, self.object_seed = name, kind, family, object_seed
        self.slot, self.xs, self.ys, self.noise_seed = slot, xs, ys, noise_seed
        self.source_rows, self.detail = source_rows, detail


def _plan(config: RunConfig, ds: Dataset, amp_range):
    """Blocks and object slots (slot 0 = the scenario object). Objects are made lazily."""
    corpus = config.corpus
    meta_sim = ds.metadata.get("simulation") or {}
    buffer = float(meta_sim.get("buffer", config.simulation.buffer))
    lines_phase = str(meta_sim.get("object_phase", config.simulation.object_phase))
    scen_seed = meta_sim.get("object_seed", config.simulation.object_seed)
    train = ds.indices("train")
    if ds.obj is not None:
        h0, w0 = ds.obj.shape
    else:                          # no truth: the scan's extent stands for the object's
        h0 = int(np.ceil(ds.ycoords.max() + buffer)) + 1
        w0 = int(np.ceil(ds.xcoords.max() + buffer)) + 1
    slots: list[tuple[tuple[int, int], Callable[[], np.ndarray] | None]] = [((h0, w0), None)]
    blocks: list[_Block] = []
    if corpus.include_scenario_train and len(train):
        blocks.append(_Block("scenario_train", "scenario_train", "scenario", scen_seed, 0,
                             ds.xcoords[train], ds.ycoords[train], source_rows=train,
                             detail="the scenario's training split"))
    if corpus.train_dense_step is not None or corpus.train_extra_positions:
        if ds.obj is None:
            raise ValueError("corpus.train_dense_step / train_extra_positions need the training "
                             "object (the dataset has no objectGuess)")
        if len(train) == 0:
            raise ValueError("the dataset has no training split to extend")
        y_max = float(ds.ycoords[train].max())
        if corpus.train_dense_step is not None:
            g = grid_positions(corpus.train_dense_step, h0, w0, buffer)
            keep = g.ycoords <= y_max
            blocks.append(_Block("train_dense", "train_scan", "scenario", scen_seed, 0,
                                 g.xcoords[keep], g.ycoords[keep],
                                 noise_seed=_seed(corpus.seed, _TRAIN_SCAN_KEY, _NOISE),
                                 detail=f"raster step {corpus.train_dense_step} px, y <= {y_max:.1f}"))
        if corpus.train_extra_positions:
            rng = np.random.default_rng(_seed(corpus.seed, _TRAIN_SCAN_KEY, _POS))
            m = corpus.train_extra_positions
            xs = rng.uniform(buffer, w0 - buffer, m)
            ys = rng.uniform(buffer, min(y_max, h0 - buffer), m)
            blocks.append(_Block("train_extra", "train_scan", "scenario", scen_seed, 0, xs, ys,
                                 noise_seed=_seed(corpus.seed, _TRAIN_SCAN_KEY + 1, _NOISE),
                                 detail=f"{m} random positions, y <= {y_max:.1f}"))
    scen_size = int(meta_sim.get("object_size", config.simulation.object_size))
    size = corpus.object_size or scen_size
    if 2 * buffer >= size:
        raise ValueError(f"corpus.object_size {size} px leaves no scan area inside the {buffer} px "
                         "buffer")
    obj_seed = corpus.seed
    for k in range(corpus.count):
        family = corpus.families[k % len(corpus.families)]
        if family == "lines" and scen_seed is not None and obj_seed == int(scen_seed):
            obj_seed += 1                                    # never the test object itself
        pos = random_positions(corpus.patterns_per_object, size, size, buffer,
                               seed=_seed(corpus.seed, k, _POS))

        def factory(family=family, s=obj_seed):
            return make_object(family, s, size, corpus, amp_range, lines_phase, scen_size)

        slots.append(((size, size), factory))
        blocks.append(_Block(f"{family}_{obj_seed}", "corpus", family, obj_seed, len(slots) - 1,
                             pos.xcoords, pos.ycoords, noise_seed=_seed(corpus.seed, k, _NOISE)))
        obj_seed += 1
    blocks = [b for b in blocks if len(b.xs)]
    if not blocks:
        raise ValueError("the training data would be empty: corpus.include_scenario_train is off "
                         "and no corpus objects or training-object scans are configured")
    return blocks, slots, buffer


def _layout(blocks, slots, n: int, neighbor_count: int) -> tuple[list[float], int, tuple[int, int]]:
    """x offsets of the slots in the mosaic, the gap and the mosaic shape."""
    dmax = 0.0
    for s in range(len(slots)):
        xs = np.concatenate([b.xs for b in blocks if b.slot == s] or [np.zeros(0)])
        ys = np.concatenate([b.ys for b in blocks if b.slot == s] or [np.zeros(0)])
        dmax = max(dmax, _kth_neighbour_distance(xs, ys, neighbor_count))
    gap = max(n + 2, int(np.ceil(dmax)) + 1)
    offsets, x = [], 0.0
    for (_h, w), _ in slots:
        offsets.append(x)
        x += w + gap
    height = max(h for (h, _), _ in slots)
    return offsets, gap, (int(height), int(max(x - gap, 0)))


def _key(config: RunConfig, ds: Dataset, buffer: float, poisson: bool) -> str:
    h = hashlib.sha256()
    h.update(config.corpus.model_dump_json().encode())
    h.update(json.dumps({"neighbor_count": config.grouping.neighbor_count, "buffer": buffer,
                         "poisson": poisson, "seeds": ds.metadata.get("seeds"),
                         "version": __version__}, sort_keys=True).encode())
    h.update(probe_fingerprint(ds.probe).encode())
    train = ds.indices("train")
    for a in (ds.xcoords[train], ds.ycoords[train]):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    if ds.obj is not None:
        h.update(np.ascontiguousarray(ds.obj, dtype=np.complex64).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The training set
# --------------------------------------------------------------------------------------------
def build_training_dataset(config: RunConfig, ds: Dataset, cache_dir: str | Path | None = None,
                           log: Callable[[str], None] = print, chunk: int = CHUNK,
                           on_chunk: Callable[[int], None] | None = None
                           ) -> tuple[Dataset, CorpusManifest]:
    """The training set of ``config.corpus`` around the scenario dataset ``ds`` (see module doc).

    ``cache_dir``: counts go to ``cache_dir/counts.npy`` (memory-mapped) with ``manifest.json``; a
    cache made from the same inputs is reused, one made from other inputs is refused (never
    overwritten). None: counts in memory (tests, small benchmarks).

    Long by design (75 lines of code after this docstring):
    cache reuse checks and one streamed simulation loop, kept in order."""
    if ds.probe is None or ds.patch_size != ds.probe.shape[-1]:
        raise ValueError("the dataset's probe does not match its patterns")
    n = ds.patch_size
    amp_range = DEFAULT_AMP_RANGE
    if ds.obj is not None:
        a = np.abs(ds.obj)
        amp_range = (float(np.percentile(a, 1.0)), float(np.percentile(a, 99.0)))
    blocks, slots, buffer = _plan(config, ds, amp_range)
    offsets, gap, mosaic_shape = _layout(blocks, slots, n, config.grouping.neighbor_count)
    poisson = bool((ds.metadata.get("simulation") or {}).get("poisson_noise", True))
    key = _key(config, ds, buffer, poisson)
    total = sum(len(b.xs) for b in blocks)
    cache_dir = None if cache_dir is None else Path(cache_dir)
    counts_path = None if cache_dir is None else cache_dir / "counts.npy"
    manifest_path = None if cache_dir is None else cache_dir / "manifest.json"

    reuse = None
    if manifest_path is not None and manifest_path.exists():
        old = CorpusManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        if old.key != key or not counts_path.is_file():
            raise FileExistsError(f"{cache_dir} holds a training-corpus cache made from other "
                                  f"inputs (key {old.key[:12]} vs {key[:12]}); remove it or use "
                                  "another output directory")
        reuse = old
        log(f"corpus: reusing the cache in {cache_dir} ({old.n_patterns} patterns)")
    elif cache_dir is not None and counts_path.exists():
        raise FileExistsError(f"{counts_path} exists without a manifest; remove it")

    if reuse is None:
        if counts_path is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / "counts.npy.partial"
            counts = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                               shape=(total, n, n))
        else:
            counts = np.empty((total, n, n), dtype=np.float32)
        entries = _fill(blocks, slots, offsets, ds, counts, poisson, chunk, on_chunk, log)
        if counts_path is not None:
            counts.flush()
            del counts
            os.replace(tmp, counts_path)
        manifest = CorpusManifest(
            generator=f"ptychotrace {__version__}", key=key, N=n, n_patterns=total,
            entries=tuple(entries),
            probe_source=str((ds.metadata.get("probe") or {}).get("source", "dataset probeGuess")),
            probe_fingerprint=probe_fingerprint(ds.probe), dose_scale=ds.dose_scale,
            dose_mode=(ds.metadata.get("dose") or {}).get("mode"),
            dose_derived_from="the scenario's training split (its dataset metadata); every corpus "
                              "pattern uses the same physical probe",
            nphotons_target=ds.metadata.get("nphotons"), amp_range=amp_range, gap_px=gap,
            mosaic_shape=mosaic_shape if ds.obj is not None else None, poisson_noise=poisson,
            cache=None if counts_path is None else str(counts_path),
            counts_bytes=int(total * n * n * 4), chunk_patterns=chunk,
            peak_buffer_patterns=min(chunk, max(len(b.xs) for b in blocks)), config=config.corpus)
        if manifest_path is not None:
            manifest_path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    else:
        manifest = reuse
    if counts_path is not None:
        counts = np.load(counts_path, mmap_mode="r", allow_pickle=False)
        if counts.shape != (total, n, n):
            raise ValueError(f"{counts_path}: shape {counts.shape}, expected {(total, n, n)}")
    xs = np.concatenate([b.xs + offsets[b.slot] for b in blocks])
    ys = np.concatenate([b.ys for b in blocks])
    mosaic = _mosaic(slots, offsets, mosaic_shape, ds) if ds.obj is not None else None
    meta = {**ds.metadata, "training_set": manifest.summary()}
    out = Dataset(xcoords=xs.astype(np.float64), ycoords=ys.astype(np.float64), counts=counts,
                  probe=ds.probe, obj=mosaic, scan_index=np.arange(total, dtype=np.int64),
                  split=np.full(total, TRAIN, dtype=np.int8), metadata=meta,
                  valid=getattr(ds, "valid", None))     # one detector: its mask applies to all
    groups = config.grouping.requested_groups
    if groups < total:
        log(f"warning: grouping.group_count {groups} < {total} training patterns: only {groups} "
            "groups are drawn; raise --group-count to train on the whole corpus")
    return out, manifest


def _fill(blocks, slots, offsets, ds, counts, poisson, chunk, on_chunk, log):
    """Write every block's counts; objects are made one at a time and dropped after use."""
    entries, row = [], 0
    cache: dict[int, np.ndarray] = {}
    for b in blocks:
        m = len(b.xs)
        out = counts[row:row + m]
        if b.source_rows is not None:
            sums = np.empty(m, dtype=np.float64)
            for s in range(0, m, chunk):
                src = ds.counts[b.source_rows[s:s + chunk]]
                out[s:s + len(src)] = src
                sums[s:s + len(src)] = src.reshape(len(src), -1).sum(axis=1, dtype=np.float64)
                if on_chunk is not None:
                    on_chunk(len(src))
        else:
            if b.slot not in cache:
                cache.clear()                                 # one corpus object in memory
                factory = slots[b.slot][1]
                cache[b.slot] = ds.obj if factory is None else factory()
            sums = simulate_scan(cache[b.slot], ds.probe, b.xs, b.ys, out, b.noise_seed, poisson,
                                 chunk, on_chunk)
        (h, w) = slots[b.slot][0]
        entries.append(TrainingDataEntry(
            name=b.name, kind=b.kind, family=b.family,
            object_seed=None if b.object_seed is None else int(b.object_seed),
            object_shape=(int(h), int(w)), n_patterns=m, first_row=row,
            offset_px=(float(offsets[b.slot]), 0.0), photons_per_pattern_mean=float(sums.mean()),
            detail=b.detail))
        log(f"corpus: {b.name}: {m} patterns, {sums.mean():.4g} photons/pattern")
        row += m
    return entries


def _mosaic(slots, offsets, shape, ds) -> np.ndarray:
    """The objects side by side (zero gaps), complex64 (H, W); corpus objects are re-made from
    their seeds (cheap next to the simulation), one at a time."""
    mosaic = np.zeros(shape, dtype=np.complex64)
    for ((h, w), factory), x0 in zip(slots, offsets, strict=True):
        if not w:
            continue
        obj = ds.obj if factory is None else factory()
        mosaic[:h, int(x0):int(x0) + w] = obj
    return mosaic


def object_scan_dataset(obj: np.ndarray, probe: np.ndarray, n_patterns: int, buffer: float,
                        seed: int, poisson: bool = True, metadata: dict | None = None) -> Dataset:
    """A dataset of one object scanned at ``n_patterns`` random positions with ``probe`` (the
    physical probe), every pattern in the test split: an unseen object for amortised inference."""
    h, w = obj.shape
    pos = random_positions(n_patterns, h, w, buffer, seed=_seed(seed, _POS))
    n = probe.shape[-1]
    counts = np.empty((n_patterns, n, n), dtype=np.float32)
    simulate_scan(obj, probe, pos.xcoords, pos.ycoords, counts, _seed(seed, _NOISE), poisson)
    return Dataset(xcoords=pos.xcoords, ycoords=pos.ycoords, counts=counts,
                   probe=probe.astype(np.complex64), obj=obj.astype(np.complex64),
                   scan_index=np.arange(n_patterns, dtype=np.int64),
                   split=np.full(n_patterns, TEST, dtype=np.int8), metadata=dict(metadata or {}))
