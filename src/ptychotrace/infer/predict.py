"""Inference: predict object patches for the test groups and stitch them into the object frame.

``predict(model, ckpt, ds, inference_config)`` -> :class:`Prediction` with the stitched amplitude
and phase (H, W) in the object frame, the stitching weights and coverage mask, and timings.

Steps:
1. group the test split exactly as in training (same gridsize, neighbour count, group seed), with
   the checkpoint's frozen input gain; cap at ``group_limit``;
2. run the network in batches of ``batch_size`` groups (bounded device memory; patches are kept
   on the host as complex64); for gridsize > 1 the patches are the per-group merged and
   re-extracted ones, i.e. what the physics saw in training;
3. optional overlap-consistency step (``twin_fix``, gridsize 1 only, see below);
4. stitch with ``stitch_to_object_frame`` (central ``stitch_window`` x ``stitch_window`` of each
   patch): amplitude directly, phase as the angle of the stitched unit phasors (wrap-safe);
   uniform weights in the window, or with ``stitch_weights: consistency`` inverse-variance
   weights by radius estimated from overlapping patches (:mod:`.stitch_weights`);
5. optional physics-consistent refinement (``refine_steps`` > 0, ``refine_method`` adam or
   lsqml; :mod:`.refine`), from the stitched object with its uncovered pixels at the covered
   pixels' complex mean (:func:`start_object`).

The twin ambiguity (gridsize 1): with a probe P for which ``conj(flip(P)) == P`` (the ideal real,
centro-symmetric disk) every diffraction pattern is matched exactly as well by the flipped,
conjugated patch ``conj(flip(O_j))``, so a network cannot choose the orientation from one
pattern. ``twin_fix`` chooses, for each test pattern, between the predicted patch and its twin so
that overlapping neighbours agree (pairwise disagreement of the amplitudes on the commonly
illuminated pixels; minimised by iterated conditional modes from several starts, best energy
kept). It is skipped (and says so) when the probe breaks the symmetry (custom probe) or for
gridsize > 1 (the group merge with known offsets already breaks it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..baseline.problem import object_shape_of
from ..config import InferenceConfig, RunConfig
from ..data.container import GroupedData, block_step_px, build_grouped, grouping_method_kwargs
from ..data.dataset import Dataset
from ..model.pinn import PINN
from ..model.precision import resolve_inference_precision
from ..physics.forward import required_pad
from ..physics.stitching import stitch_to_object_frame
from .refine import (
    REFINE_BACKOFF_FACTOR,
    REFINE_BACKOFFS,
    REFINE_HOLDOUT,
    REFINE_PATIENCE,
    refine_object,
    refine_with_solver,
    start_object,
)
from .stitch_weights import consistency_weights
from .twin import PAIR_CHUNK, twin_consistency, twin_flip_mode, twin_of

__all__ = ["Prediction", "predict", "predict_test_split", "regroup_test_blocks", "test_groups",
           "predict_patches",
           "object_shape_for", "refine_object", "twin_consistency", "twin_flip_mode", "twin_of",
           "PAIR_CHUNK", "REFINE_BACKOFF_FACTOR", "REFINE_BACKOFFS", "REFINE_HOLDOUT",
           "REFINE_PATIENCE"]


@dataclass
class Prediction:
    amplitude: np.ndarray          # (H, W) float32, object units, 0 where not covered
    phase: np.ndarray              # (H, W) float32 radians
    weight: np.ndarray             # (H, W) float32 summed stitch-window weights
    covered: np.ndarray            # (H, W) bool
    patches: np.ndarray            # (P, N, N) complex64 patches that were stitched
    xcoords: np.ndarray            # (P,) patch centres (object pixels)
    ycoords: np.ndarray
    n_groups: int
    n_patterns: int
    patterns_per_second: float     # network forward throughput (patterns = groups x C)
    seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)   # what twin_fix / refinement did
    groups_available: int = 0      # test groups before group_limit
    #: how the test split was grouped: method, gridsize, block step (px, measured on the test
    #: groups) and stride, the trained step; the record of a re-laid grouping (--block-stride)
    grouping: dict[str, Any] = field(default_factory=dict)
    #: the network's compute precision and why (model/precision.py resolve_inference_precision)
    precision: dict[str, Any] = field(default_factory=dict)
    offsets_axis_max_abs: list[float] = field(default_factory=list)   # [max|dx|, max|dy|] px
    padded_shape: tuple[int, int] = (0, 0)   # stitching canvas (object frame + 2*required_pad)
    fits_canvas: bool = True       # every patch lies inside the padded canvas (checked)
    #: The network's stitched object before refinement, {"amplitude", "phase"} (H, W) float32
    #: (issue #12: network-only quality is reported next to the refined one); None when no
    #: refinement ran (then amplitude/phase above are the network-only object).
    network_only: dict[str, np.ndarray] | None = None
    pattern_index: np.ndarray | None = None   # (P,) dataset rows of the patches
    object_full: np.ndarray | None = None     # (H, W) complex64 final object, no coverage mask

    # Names used by the scenario runner.
    @property
    def groups_used(self) -> int:
        return self.n_groups

    @property
    def patterns_used(self) -> int:
        return self.n_patterns

    @property
    def offsets_max_abs(self) -> float:
        return max(self.offsets_axis_max_abs) if self.offsets_axis_max_abs else 0.0

    @property
    def info(self) -> dict[str, Any]:
        return self.steps

    @property
    def obj(self) -> np.ndarray:
        return (self.amplitude * np.exp(1j * self.phase)).astype(np.complex64)

    @property
    def coverage_fraction(self) -> float:
        return float(self.covered.mean())

    def stats(self) -> dict[str, Any]:
        cov = self.covered
        a = self.amplitude[cov].astype(np.float64)
        return {"shape": list(self.amplitude.shape), "n_groups": self.n_groups,
                "n_patterns": self.n_patterns, "coverage_fraction": self.coverage_fraction,
                "patterns_per_second": self.patterns_per_second, "seconds": self.seconds,
                "amplitude_covered": {"mean": float(a.mean()) if a.size else None,
                                      "std": float(a.std()) if a.size else None,
                                      "min": float(a.min()) if a.size else None,
                                      "max": float(a.max()) if a.size else None},
                "steps": self.steps, "grouping": self.grouping, "precision": self.precision}


def object_shape_for(ds: Dataset) -> tuple[int, int]:
    """The object frame (H, W): the baseline's rule (truth, recorded frame, simulated size, scan
    extent; ``baseline/problem.py object_shape_of``), so that the stitch and the refinement's
    solver share one frame."""
    return object_shape_of(ds)


def test_groups(ckpt: dict, ds: Dataset, group_limit: int | None = None) -> tuple[GroupedData, int]:
    """Group the test split as the model was trained (gridsize, grouping), with its input gain.
    Returns (groups, number available before ``group_limit``)."""
    cfg = ckpt["config"]
    grp = cfg["grouping"]
    gridsize = int(ckpt["network"]["gridsize"])
    n_test = len(ds.indices("test"))
    count = min(int(grp["group_count"]) * int(grp.get("group_multiplier", 1)), n_test)
    gd = build_grouped(ds, "test", gridsize, count, int(grp["neighbor_count"]),
                       int(grp["group_seed"]), float(ckpt["scales"]["input_gain"]["value"]),
                       **grouping_method_kwargs(grp))
    check_block_geometry(ckpt, gd)
    available = len(gd)
    if group_limit is not None and group_limit < len(gd):
        gd = gd.take(np.arange(group_limit))
    return gd, available


#: relative difference between the test blocks' step and the trained one that is refused
BLOCK_STEP_RTOL = 0.02


def trained_block_step_px(ckpt: dict) -> float | None:
    """The raster-block step (px) the model was trained on, from its frozen scales; None for a
    knn or gridsize-1 model, or a checkpoint written before the step was recorded."""
    geom = (ckpt.get("scales") or {}).get("group_geometry") or {}
    step = geom.get("block_step_px")
    return None if step is None else float(step)


def check_block_geometry(ckpt: dict, data: GroupedData) -> None:
    """Refuse raster-block test groups whose step differs from the trained one: the network
    learned one block geometry (docs/benchmarks.md: a raster-block model given KNN groups of a
    random scan drops from SSIM 0.90 to 0.45), so another step gives a confident, wrong object.
    Models recorded before the step was (no ``group_geometry`` scale) are not checked."""
    trained = trained_block_step_px(ckpt)
    grp = ckpt["config"]["grouping"]
    if trained is None or grp.get("group_method", "knn") != "raster_blocks":
        return
    step = block_step_px(data.dx, data.gridsize)
    if step is None or abs(step - trained) <= BLOCK_STEP_RTOL * trained:
        return
    given = grp.get("block_step_px")
    how = ("the scan's raster step" if given is None
           else f"block_step_px {float(given):.4g}")
    raise ValueError(f"the test blocks are {step:.4g} px apart ({how}) but this model was "
                     f"trained on {trained:.4g}-px raster blocks: pass --block-step-px "
                     f"{trained:.4g} (a raster of {trained:.4g} px or a divisor of it) to "
                     f"group this scan as the model was trained")


def regroup_test_blocks(ckpt: dict, block_stride: int | None = None,
                        block_step_px: float | None = None) -> dict:
    """A copy of ``ckpt`` whose test grouping places raster blocks differently: origins every
    ``block_stride``-th raster point, points ``block_step_px`` pixels apart (None: keep the
    model's). Only the layout of the test groups changes; the block geometry the network learned
    is the model's, so a model trained with another grouping method (knn) is refused."""
    if block_stride is None and block_step_px is None:
        return ckpt
    grp = dict(ckpt["config"]["grouping"])
    method = grp.get("group_method", "knn")
    if method != "raster_blocks":
        raise ValueError(f"--block-stride / --block-step-px regroup raster blocks, but this "
                         f"model was trained with group_method '{method}': its test data are "
                         f"grouped as in training")
    if block_stride is not None:
        if int(block_stride) < 1:
            raise ValueError(f"--block-stride must be >= 1, got {block_stride}")
        grp["block_stride"] = int(block_stride)
    if block_step_px is not None:
        if not float(block_step_px) > 0:
            raise ValueError(f"--block-step-px must be > 0 pixels, got {block_step_px}")
        grp["block_step_px"] = float(block_step_px)
    return {**ckpt, "config": {**ckpt["config"], "grouping": grp}}


@torch.no_grad()
def predict_patches(model: PINN, data: GroupedData, batch_size: int = 64,
                    compute_precision: str | None = None) -> tuple[np.ndarray, float]:
    """(G, C, N, N) complex64 object patches (merged for gridsize > 1) and patterns/second.
    ``compute_precision``: "float32" | "bfloat16" for this call (default: the network's own;
    see model/precision.py)."""
    device = model.probe.device
    model.eval()
    out = np.empty(data.X.shape, dtype=np.complex64)
    # channels-last convolutions are ~1.5x faster on CPU (measured, docs/benchmarks.md); the
    # network is put back in its own layout and precision afterwards, so the caller's model is
    # unchanged.
    own_layout = torch.channels_last if model.net.channels_last else torch.contiguous_format
    model.net.set_conv_memory_format(torch.channels_last)
    own_precision = model.net.compute_precision
    if compute_precision is not None:
        model.net.set_compute_precision(compute_precision)
    t0 = time.perf_counter()
    try:
        for start in range(0, len(data), batch_size):
            sl = slice(start, min(start + batch_size, len(data)))
            x = torch.as_tensor(data.X[sl]).to(device).contiguous(memory_format=torch.channels_last)
            dx = torch.as_tensor(data.dx[sl]).to(device)
            dy = torch.as_tensor(data.dy[sl]).to(device)
            amp, phase = model.net(x, dx, dy)
            obj = torch.polar(amp.contiguous(), phase.contiguous())
            if model.gridsize > 1:
                obj, _ = model.physics(obj, dx, dy)
            out[sl] = obj.cpu().numpy()
    finally:
        model.net.set_compute_precision(own_precision)
        model.net.set_conv_memory_format(own_layout)
    dt = time.perf_counter() - t0
    return out, (data.X.shape[0] * data.X.shape[1]) / dt if dt > 0 else float("inf")


# --------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------
def predict_test_split(model: PINN, ds: Dataset, cfg: RunConfig | InferenceConfig | None = None,
                       group_limit: int | None = None) -> Prediction:
    """The runner's entry point: ``cfg`` may be the whole RunConfig (its ``inference`` section is
    used); the model must come from :func:`ptychotrace.train.checkpoint.load_model`."""
    inf = cfg.inference if isinstance(cfg, RunConfig) else cfg
    return predict(model, ds, inf, group_limit=group_limit)


def predict(model: PINN, ds: Dataset, cfg: InferenceConfig | None = None,
            group_limit: int | None = None, ckpt: dict | None = None) -> Prediction:
    """Predict and stitch the test split of ``ds`` (see the module docstring). ``ckpt`` defaults
    to ``model.checkpoint`` (set by load_model): its grouping and frozen scales are reused."""
    cfg = cfg or InferenceConfig()
    ckpt = ckpt if ckpt is not None else getattr(model, "checkpoint", None)
    if ckpt is None:
        raise ValueError("predict needs the checkpoint record (load the model with load_model)")
    limit = group_limit if group_limit is not None else cfg.group_limit
    seconds = {}
    t0 = time.perf_counter()
    data, available = test_groups(ckpt, ds, limit)
    seconds["grouping"] = time.perf_counter() - t0
    grp = ckpt["config"]["grouping"]
    method = grp.get("group_method", "knn") if data.gridsize > 1 else "single"
    grouping = {"method": method, "gridsize": int(data.gridsize), "n_groups": len(data),
                "groups_available": int(available),
                "block_step_px": block_step_px(data.dx, data.gridsize)
                if method == "raster_blocks" else None,
                "block_stride": int(grp.get("block_stride", 1))
                if method == "raster_blocks" else None,
                "trained_block_step_px": trained_block_step_px(ckpt),
                "units": "pixels (object frame); block_step_px measured on the test groups"}
    precision = resolve_inference_precision(cfg.precision, model.net_cfg.precision,
                                            model.probe.device)
    patches, pps = predict_patches(model, data, cfg.batch_size, precision["compute_precision"])
    seconds["network"] = (data.X.shape[0] * data.X.shape[1]) / pps
    n = patches.shape[-1]
    flat = patches.reshape(-1, n, n)
    xs, ys = data.xcoords.reshape(-1), data.ycoords.reshape(-1)
    probe_np = (model.probe / _probe_factor(model)).cpu().numpy()
    steps: dict[str, Any] = {}
    twin = cfg.twin_fix
    mode = twin_flip_mode(probe_np)
    if not twin:
        steps["twin_fix"] = {"applied": False, "reason": "disabled"}
    elif model.gridsize > 1:
        steps["twin_fix"] = {"applied": False, "reason": "gridsize > 1: the group merge breaks the "
                             "twin ambiguity"}
    elif mode is None:
        steps["twin_fix"] = {"applied": False, "reason": "probe is not twin-symmetric "
                             "(conj(flip(P)) != P): the physics breaks the ambiguity"}
    else:
        t1 = time.perf_counter()
        flat, steps["twin_fix"] = twin_consistency(flat, xs, ys, probe_np, mode)
        seconds["twin_fix"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    shape = object_shape_for(ds)
    amp_np = np.abs(flat)
    weights = None
    if cfg.stitch_weights == "consistency":
        groups = np.repeat(np.arange(len(data)), model.gridsize ** 2) if model.gridsize > 1 else None
        w_np, steps["stitch_weights"] = consistency_weights(
            amp_np, xs, ys, min(int(cfg.stitch_window), n), groups)
        weights = None if w_np is None else torch.as_tensor(w_np)
    else:
        steps["stitch_weights"] = {"method": "uniform"}
    amp_t = torch.as_tensor(amp_np)
    st = stitch_to_object_frame(amp_t, torch.as_tensor(xs), torch.as_tensor(ys), shape,
                                cfg.stitch_window, weights)
    unit = torch.as_tensor(np.exp(1j * np.angle(flat)).astype(np.complex64))
    st_ph = stitch_to_object_frame(unit, torch.as_tensor(xs), torch.as_tensor(ys), shape,
                                   cfg.stitch_window, weights)
    covered = st.covered.numpy()
    amplitude = np.where(covered, st.image.numpy(), 0.0).astype(np.float32)
    phase = np.where(covered, np.angle(st_ph.image.numpy()), 0.0).astype(np.float32)
    seconds["stitch"] = time.perf_counter() - t1
    refine_steps = int(cfg.refine_steps)
    network_only = None
    if refine_steps > 0:
        network_only = {"amplitude": amplitude.copy(), "phase": phase.copy()}
        t1 = time.perf_counter()
        uniq = np.unique(data.pattern_index.reshape(-1))
        amp_ref = float(ckpt["network"]["amp_ref"])
        seed = int(ckpt["config"]["training"]["seed"])
        start = start_object(amplitude * np.exp(1j * phase), covered, amp_ref)
        if cfg.refine_method == "lsqml":
            obj, steps["refine"] = refine_with_solver(ds, uniq, probe_np, start, cfg, seed)
        else:
            obj, steps["refine"] = refine_object(
                start, np.ones_like(covered), torch.as_tensor(probe_np),
                ds.counts[uniq], ds.xcoords[uniq], ds.ycoords[uniq],
                float(ckpt["scales"]["loss_normaliser"]["mean_counts"]) / model.target_factor,
                amp_ref, refine_steps, float(cfg.refine_lr), holdout=float(cfg.refine_holdout),
                patience=cfg.refine_patience, seed=seed,
                refit=bool(cfg.refine_refit), smooth=bool(cfg.refine_smooth),
                backoffs=int(cfg.refine_backoffs), valid=ds.valid)
            steps["refine"]["method"] = "adam"
        amplitude = np.where(covered, np.abs(obj), 0).astype(np.float32)
        phase = np.where(covered, np.angle(obj), 0).astype(np.float32)
        seconds["refine"] = time.perf_counter() - t1
    else:
        steps["refine"] = {"applied": False, "reason": "refine_steps = 0"}
        obj = amplitude * np.exp(1j * phase)
    seconds["total"] = time.perf_counter() - t0
    return Prediction(amplitude=amplitude, phase=phase, weight=st.weight.numpy().astype(np.float32),
                      covered=covered, patches=flat.astype(np.complex64), xcoords=xs, ycoords=ys,
                      n_groups=len(data), n_patterns=int(flat.shape[0]), patterns_per_second=pps,
                      seconds=seconds, steps=steps, groups_available=available,
                      grouping=grouping, precision=precision,
                      offsets_axis_max_abs=[float(np.abs(data.dx).max()), float(np.abs(data.dy).max())],
                      padded_shape=(shape[0] + 2 * required_pad(n), shape[1] + 2 * required_pad(n)),
                      fits_canvas=True, network_only=network_only,
                      pattern_index=data.pattern_index.reshape(-1),
                      object_full=np.asarray(obj, dtype=np.complex64))


def _probe_factor(model: PINN) -> float:
    from ..model.pinn import contract_factors

    return contract_factors(model.contract, model.dose_scale)[0]
