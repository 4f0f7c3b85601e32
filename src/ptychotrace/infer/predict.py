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
5. optional physics-consistent refinement (``refine_steps`` > 0, see :func:`refine_object`).

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

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import InferenceConfig, RunConfig
from ..data.container import GroupedData, build_grouped
from ..data.dataset import Dataset
from ..model.losses import poisson_nll
from ..model.pinn import PINN
from ..physics.forward import expected_counts, extract_patches, pad_canvas, required_pad
from ..physics.holdout import choose_smoothing, holdout_reason, smooth_canvas, split_photons
from ..physics.stitching import stitch_to_object_frame

#: Overlapping pairs scored at once by the twin fix (bounds memory at ~PAIR_CHUNK * N^2 * 8 bytes * 6).
PAIR_CHUNK = 1024
#: Refinement defaults (InferenceConfig.refine_holdout / refine_patience / refine_backoffs use the
#: same values).
REFINE_HOLDOUT = 0.1
REFINE_PATIENCE = 10
REFINE_BACKOFFS = 2
#: Step-size factor of a back-off (see refine_object).
REFINE_BACKOFF_FACTOR = 0.25


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
                "steps": self.steps}


def object_shape_for(ds: Dataset) -> tuple[int, int]:
    """The object frame: the truth's shape, else the simulated object size, else the scan extent."""
    if ds.obj is not None:
        return tuple(ds.obj.shape)
    frame = (ds.metadata.get("geometry") or {}).get("object_frame")   # real data (ptychotrace.io)
    if frame:
        return int(frame["height_px"]), int(frame["width_px"])
    size = ((ds.metadata.get("simulation") or {}).get("object_size"))
    if size:
        return int(size), int(size)
    h = int(math.ceil(ds.ycoords.max())) + 1
    w = int(math.ceil(ds.xcoords.max())) + 1
    return h, w


def test_groups(ckpt: dict, ds: Dataset, group_limit: int | None = None) -> tuple[GroupedData, int]:
    """Group the test split as the model was trained (gridsize, grouping), with its input gain.
    Returns (groups, number available before ``group_limit``)."""
    cfg = ckpt["config"]
    grp = cfg["grouping"]
    gridsize = int(ckpt["network"]["gridsize"])
    n_test = len(ds.indices("test"))
    count = min(int(grp["group_count"]) * int(grp.get("group_multiplier", 1)), n_test)
    gd = build_grouped(ds, "test", gridsize, count, int(grp["neighbor_count"]),
                       int(grp["group_seed"]), float(ckpt["scales"]["input_gain"]["value"]))
    available = len(gd)
    if group_limit is not None and group_limit < len(gd):
        gd = gd.take(np.arange(group_limit))
    return gd, available


@torch.no_grad()
def predict_patches(model: PINN, data: GroupedData, batch_size: int = 64) -> tuple[np.ndarray, float]:
    """(G, C, N, N) complex64 object patches (merged for gridsize > 1) and patterns/second."""
    device = model.probe.device
    model.eval()
    out = np.empty(data.X.shape, dtype=np.complex64)
    # channels-last convolutions are ~1.5x faster on CPU (measured, docs/benchmarks.md); the
    # network is put back in the default layout afterwards, so the caller's model is unchanged.
    model.net.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    try:
        for start in range(0, len(data), batch_size):
            sl = slice(start, min(start + batch_size, len(data)))
            x = torch.as_tensor(data.X[sl]).to(device).contiguous(memory_format=torch.channels_last)
            amp, phase = model.net(x)
            obj = torch.polar(amp.contiguous(), phase.contiguous())
            if model.gridsize > 1:
                obj, _ = model.physics(obj, torch.as_tensor(data.dx[sl]).to(device),
                                       torch.as_tensor(data.dy[sl]).to(device))
            out[sl] = obj.cpu().numpy()
    finally:
        model.net.to(memory_format=torch.contiguous_format)
    dt = time.perf_counter() - t0
    return out, (data.X.shape[0] * data.X.shape[1]) / dt if dt > 0 else float("inf")


# --------------------------------------------------------------------------------------------
# Twin ambiguity: overlap-consistent choice between each patch and its twin
# --------------------------------------------------------------------------------------------
def twin_flip_mode(probe: np.ndarray, tol: float = 1e-3) -> str | None:
    """How to form the twin for this probe: 'flip' (about (N-1)/2), 'roll' (about N/2) or None
    when ``conj(flip(P)) != P`` (relative L2 > tol): then the physics breaks the ambiguity."""
    p = np.asarray(probe, dtype=np.complex128)
    norm = np.linalg.norm(p)
    best, mode = math.inf, None
    for name, q in (("flip", np.conj(p[::-1, ::-1])), ("roll", np.conj(_roll_flip(p)))):
        # A constant phase factor on the twin probe is also an exact symmetry.
        c = np.vdot(q, p)
        c = c / abs(c) if abs(c) > 0 else 1.0
        err = np.linalg.norm(p - c * q) / norm
        if err < best:
            best, mode = err, name
    return mode if best < tol else None


def _roll_flip(a):
    """Flip about pixel N/2 with wrap (index i -> (N - i) mod N) on the last two axes."""
    if isinstance(a, torch.Tensor):
        return torch.roll(torch.flip(a, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return np.roll(a[..., ::-1, ::-1], (1, 1), axis=(-2, -1))


def twin_of(patches: torch.Tensor, mode: str) -> torch.Tensor:
    """The exact twin ``conj(flip(O))`` of object patches (..., N, N) for a symmetric probe."""
    flipped = torch.flip(patches, dims=(-2, -1)) if mode == "flip" else _roll_flip(patches)
    return flipped.conj().resolve_conj() if flipped.is_complex() else flipped


def _overlap_pairs(x: np.ndarray, y: np.ndarray, max_dist: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    pairs = cKDTree(np.column_stack([x, y])).query_pairs(max_dist, output_type="ndarray")
    return pairs.reshape(-1, 2).astype(np.int64)


def twin_consistency(patches: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                     probe: np.ndarray, mode: str, support_level: float = 0.5,
                     iterations: int = 20) -> tuple[np.ndarray, dict[str, Any]]:
    """Choose per patch between the prediction (label 0) and its twin (label 1).

    Pairwise cost: mean squared amplitude difference of patches i and j on the pixels both
    illuminate (|P| >= support_level * max|P| in both frames), patch j resampled into patch i's
    frame with the bilinear extractor, weighted by the overlap fraction. Energy = sum over
    overlapping pairs; minimised by greedy propagation from the most confident edges (per
    connected component, both root labels tried) followed by iterated conditional modes; plain
    ICM from all-0 / all-1 competes and the lowest energy wins. Isolated patches keep the
    network's orientation.
    Returns (patches with the chosen orientation, record)."""
    p = torch.as_tensor(patches)
    n = p.shape[-1]
    amp = p.abs().to(torch.float64)
    amps = torch.stack([amp, twin_of(amp, mode)])               # (2, P, N, N)
    pa = np.abs(probe)
    support = torch.as_tensor(pa >= support_level * pa.max(), dtype=torch.float64)
    radius = float(np.sqrt(support.sum().item() / math.pi))
    pairs = _overlap_pairs(xcoords, ycoords, 2 * radius)
    record: dict[str, Any] = {"applied": True, "mode": mode, "pairs": int(len(pairs)),
                              "support_radius_px": radius}
    n_pat = p.shape[0]
    if len(pairs) == 0:
        record.update(flipped=0, note="no overlapping pairs; nothing to decide")
        return patches, record
    i, j = pairs[:, 0], pairs[:, 1]
    # Only the probe's support matters: crop every patch to a centred square around it (about
    # 7x fewer pixels than the full patch at N=64) and pad by the largest pair offset, 2*radius.
    h = min(n // 2, int(math.ceil(radius)) + 2)
    c0, c1 = n // 2 - h, n // 2 + h
    if float(support[c0:c1, c0:c1].sum()) != float(support.sum()):
        h, c0, c1 = n // 2, 0, n                         # off-centre support: keep whole patches
    amps, support, n = amps[..., c0:c1, c0:c1], support[c0:c1, c0:c1], c1 - c0
    pad = int(math.ceil(2 * radius)) + 2
    centre = n // 2 + pad
    # patch j (and its support) resampled into patch i's frame: centre moves by pos_i - pos_j
    sx = torch.as_tensor(xcoords[i] - xcoords[j] + centre)[:, None]
    sy = torch.as_tensor(ycoords[i] - ycoords[j] + centre)[:, None]
    # Pairs are processed in chunks: memory stays O(chunk * N^2) however dense the scan is.
    cost = np.empty((len(pairs), 2, 2), dtype=np.float64)
    overlap = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), PAIR_CHUNK):
        sl = slice(start, min(start + PAIR_CHUNK, len(pairs)))
        m = sl.stop - sl.start
        sup_j = extract_patches(pad_canvas(support.expand(m, n, n), pad), sx[sl], sy[sl], n)[:, 0]
        mask = sup_j * support
        msum = mask.sum(dim=(-2, -1))
        overlap[sl] = (msum / support.sum()).numpy()
        msum = msum.clamp_min(1.0)
        for b in (0, 1):
            aj = extract_patches(pad_canvas(amps[b][j[sl]], pad), sx[sl], sy[sl], n)[:, 0]
            for a in (0, 1):
                ai = amps[a][i[sl]]
                cost[sl, a, b] = (((ai - aj) ** 2 * mask).sum(dim=(-2, -1)) / msum).numpy()
    cost *= overlap[:, None, None]   # overlap weight

    def energy(lab):
        return float(cost[np.arange(len(pairs)), lab[i], lab[j]].sum())

    # Per node: its edges and, for each, the cost table oriented as [own label, other label].
    node_edges: list[np.ndarray] = [np.empty(0, np.int64)] * n_pat
    node_other: list[np.ndarray] = [np.empty(0, np.int64)] * n_pat
    node_cost: list[np.ndarray] = [np.empty((0, 2, 2))] * n_pat
    order_e = np.argsort(np.concatenate([i, j]), kind="stable")
    ends = np.concatenate([i, j])[order_e]
    others = np.concatenate([j, i])[order_e]
    oriented = np.concatenate([cost, cost.transpose(0, 2, 1)])[order_e]
    bounds = np.searchsorted(ends, np.arange(n_pat + 1))
    for k in range(n_pat):
        a, b = bounds[k], bounds[k + 1]
        node_other[k] = others[a:b]
        node_cost[k] = oriented[a:b]
        node_edges[k] = order_e[a:b]

    def icm(lab):
        lab = lab.copy()
        for _ in range(iterations):
            changed = 0
            for k in range(n_pat):
                if len(node_other[k]) == 0:
                    continue
                lo = lab[node_other[k]]
                rows = np.arange(len(lo))
                e = (node_cost[k][rows, 0, lo].sum(), node_cost[k][rows, 1, lo].sum())
                new = int(e[1] < e[0])
                if new != lab[k]:
                    lab[k], changed = new, changed + 1
            if not changed:
                break
        return lab

    nbrs: list[list[tuple[int, int]]] = [[] for _ in range(n_pat)]   # (edge, other node)
    for e, (a, b) in enumerate(pairs):
        nbrs[a].append((e, int(b)))
        nbrs[b].append((e, int(a)))

    def edge_cost(e, node, other, l_node, l_other):
        # cost of edge e with `node` labelled l_node and `other` labelled l_other
        return cost[e, l_node, l_other] if i[e] == node else cost[e, l_other, l_node]

    def propagate(root_label):
        """Greedy from the most confident edges: grow each connected component from its best
        connected node; a node's label is fixed by the labelled neighbour whose edge decides it
        most clearly (largest cost gap between its two labels)."""
        import heapq

        lab = np.full(n_pat, -1, np.int64)
        comp = np.full(n_pat, -1, np.int64)
        order = np.argsort([-len(x) for x in nbrs], kind="stable")
        for c, root in enumerate(order):
            if lab[root] >= 0:
                continue
            lab[root], comp[root] = root_label, c
            heap = []

            def push(node, heap=heap):
                for e, other in nbrs[node]:
                    if lab[other] < 0:
                        c0 = edge_cost(e, other, node, 0, lab[node])
                        c1 = edge_cost(e, other, node, 1, lab[node])
                        heapq.heappush(heap, (-abs(c0 - c1), int(other), int(c1 < c0)))

            push(root)
            while heap:
                _, node, choice = heapq.heappop(heap)
                if lab[node] >= 0:
                    continue
                lab[node], comp[node] = choice, c
                push(node)
        return lab, comp

    def component_energies(lab, comp):
        per_edge = cost[np.arange(len(pairs)), lab[i], lab[j]]
        return np.bincount(comp[i], weights=per_edge, minlength=n_pat)

    # Greedy starts with the root of every component labelled 0 or 1; keep, per component, the
    # better one; then polish with ICM. Plain ICM from all-0 / all-1 competes; lowest energy wins.
    lab0, comp = propagate(0)
    lab1, _ = propagate(1)
    better = component_energies(lab1, comp) < component_energies(lab0, comp)
    greedy = np.where(better[comp], lab1, lab0)
    starts = {"greedy": greedy, "zeros": np.zeros(n_pat, np.int64), "ones": np.ones(n_pat, np.int64)}
    results = {name: icm(lab) for name, lab in starts.items()}
    energies = {name: energy(lab) for name, lab in results.items()}
    best = min(energies, key=energies.get)
    labels = results[best]
    out = p.clone()
    flip = torch.as_tensor(labels.astype(bool))
    if flip.any():
        out[flip] = twin_of(p[flip], mode)
    record.update(flipped=int(labels.sum()), n_patterns=int(n_pat), start=best,
                  energies=energies, energy_unflipped=energy(np.zeros(n_pat, np.int64)))
    return out.numpy(), record


# --------------------------------------------------------------------------------------------
# Physics-consistent refinement of the stitched object on the test data
# --------------------------------------------------------------------------------------------
def refine_object(init: np.ndarray, covered_init: np.ndarray, probe: torch.Tensor,
                  counts: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                  mean_counts: float, fill: float, steps: int, lr: float,
                  batch_size: int = 256, *, holdout: float = REFINE_HOLDOUT,
                  patience: int | None = REFINE_PATIENCE, seed: int = 0,
                  refit: bool = True, smooth: bool = True,
                  backoffs: int = REFINE_BACKOFFS,
                  valid: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """At most ``steps`` Adam steps of the training Poisson NLL w.r.t. the object canvas (H, W)
    complex, starting from the stitched PINN output (uncovered pixels start at ``fill``). Uses the
    same extractor and forward model as training; ``lr`` is relative to ``fill`` (the amp scale).

    Photon hold-out (``holdout`` > 0, integer counts): a fraction ``holdout`` of every pixel's
    photons is split off by binomial thinning (:mod:`ptychotrace.physics.holdout`, the baseline's
    code); the steps fit the rest (probe scaled by ``sqrt(1 - holdout)``) and the held-out photons'
    Poisson deviance is scored at every iterate 0..K from the same forward pass:

    1. early stopping: the iterate with the lowest held-out deviance is kept (0 steps = the
       network's object). After ``patience`` steps without improvement (None = never) the
       refinement backs off: it returns to that iterate and goes on with a step
       REFINE_BACKOFF_FACTOR times smaller (fresh Adam moments), at most ``backoffs`` times, then
       stops. At high dose the deviance keeps falling and nothing changes; at low dose the first
       steps overshoot into shot noise after a few iterations and the smaller steps go on from
       the best point (measured in docs/benchmarks.md);
    2. ``smooth``: a Gaussian low-pass of that iterate, its width chosen from
       ``holdout.SMOOTH_SIGMAS_PX`` by the same held-out deviance (0 = none). Shot noise that the fit
       absorbed raises the held-out deviance and a low-pass removes it, while at high dose any
       blur costs far more than it removes, so the width follows the dose from the data alone;
    3. ``refit``: the steps that led to the kept iterate (each segment at its own step size) are
       redone from the same start on *all* photons and the chosen low-pass applied to that, so
       the hold-out costs no photons (twice the refinement time).

    ``holdout`` = 0, or non-integer counts (recorded in ``holdout_note``), gives exactly the plain
    ``steps`` steps on all photons (the behaviour before the hold-out existed): no early stop, no
    low-pass. ``seed`` drives the thinning only."""
    n = counts.shape[-1]
    pad = required_pad(n)
    counts = np.ascontiguousarray(counts, dtype=np.float32)
    mask = None
    if valid is not None:
        # ``valid`` (N, N) bool, True = measured: masked pixels leave every sum below; 0 here only
        # keeps their values out of the hold-out decision and the thinning's random draws
        counts = np.where(valid, counts, np.float32(0))
        mask = torch.as_tensor(np.asarray(valid, bool))
    reason = holdout_reason(counts, holdout)
    start = np.where(covered_init, init, np.complex64(fill)).astype(np.complex64)
    xs = torch.as_tensor(xcoords + pad)
    ys = torch.as_tensor(ycoords + pad)
    all_counts = torch.as_tensor(counts)
    if reason is None:
        fit_np, held_np = split_photons(counts, holdout, seed)
        fit, held = torch.as_tensor(fit_np), torch.as_tensor(held_np)
        fit_probe = probe * math.sqrt(1.0 - holdout)
        fit_mean = mean_counts * (1.0 - holdout)
        ratio = holdout / (1.0 - holdout)         # E[held-out] / E[fitted]
    else:
        fit, held, fit_probe, fit_mean, ratio = all_counts, None, probe, mean_counts, 0.0
    n_pix = float(counts.size if mask is None else counts.shape[0] * int(mask.sum()))

    def new_param():
        canvas = pad_canvas(torch.as_tensor(start), pad, value=fill).clone()
        return torch.nn.Parameter(torch.view_as_real(canvas).clone())

    def one_pass(param, cts, p, mc, grad, score):
        """Fit loss over all patterns at the current object (its gradient accumulated into
        param when grad) and the held-out deviance per detector pixel (when score)."""
        total, held_sum = 0.0, 0.0
        for s in range(0, len(xs), batch_size):
            sl = slice(s, s + batch_size)
            with torch.set_grad_enabled(grad):
                lam = expected_counts(p, extract_patches(torch.view_as_complex(param),
                                                         xs[sl], ys[sl], n))
                loss = poisson_nll(lam, cts[sl], mc, mask).sum() / len(xs)
                if grad:
                    loss.backward()
            total += float(loss.detach())
            if score:
                held_sum += float(poisson_nll(lam.detach() * ratio, held[sl], 1.0, mask).sum())
        return total, held_sum / n_pix

    def replay(path, cts, p, mc):
        """The object after the given segments [(steps, Adam lr)] from the start, on cts, and the
        fit loss before each step."""
        param = new_param()
        losses = []
        for n_steps, seg_lr in path:
            opt = torch.optim.Adam([param], lr=seg_lr)
            for _ in range(n_steps):
                opt.zero_grad(set_to_none=True)
                losses.append(one_pass(param, cts, p, mc, True, False)[0])
                opt.step()
        return torch.view_as_complex(param.detach()), losses

    def fit_with_holdout(max_steps):
        """Adam steps on the fitted photons, scored on the held-out ones, with early stopping
        and back-offs. Returns (best object, its path, held-out history, fit losses, stop
        reason, back-offs used)."""
        param = new_param()
        seg_lr = lr * fill
        opt = torch.optim.Adam([param], lr=seg_lr)
        losses: list[float] = []
        held_hist: list[float] = []
        done_path: list[tuple[int, float]] = []     # finished segments of the current path
        seg_steps, taken, used = 0, 0, 0
        best, best_path, best_held = None, [], math.inf
        last_event = 0                               # pass index of the last improvement/back-off
        stop = "steps"
        while True:
            can_step = taken < max_steps
            opt.zero_grad(set_to_none=True)
            total, held_dev = one_pass(param, fit, fit_probe, fit_mean, can_step, True)
            held_hist.append(held_dev)
            if held_dev < best_held:
                best_held, last_event = held_dev, len(held_hist) - 1
                best = param.detach().clone()
                best_path = done_path + ([(seg_steps, seg_lr)] if seg_steps else [])
            if not can_step:
                break
            if patience is not None and len(held_hist) - 1 - last_event >= patience:
                if used >= backoffs:
                    stop = f"hold-out deviance did not improve for {patience} steps"
                    break
                used += 1                            # back off: return to the best iterate
                with torch.no_grad():
                    param.copy_(best)
                seg_lr *= REFINE_BACKOFF_FACTOR
                opt = torch.optim.Adam([param], lr=seg_lr)
                done_path, seg_steps = list(best_path), 0
                last_event = len(held_hist) - 1
                continue
            losses.append(total)                     # fit loss before the step
            opt.step()
            seg_steps += 1
            taken += 1
        if best is None:                             # non-finite deviance from the start
            best = param.detach().clone()
        return torch.view_as_complex(best), best_path, held_hist, losses, stop, used


    def held_deviance(canvas):
        """Mean Poisson half-deviance of the held-out photons per detector pixel at canvas."""
        return one_pass(torch.view_as_real(canvas), fit, fit_probe, fit_mean, False, True)[1]

    scored = held is not None
    sigma, smooth_scores = 0.0, []
    if scored:
        final, path, held_hist, losses, stop, used = fit_with_holdout(int(steps))
        if smooth:
            sigma, smooth_scores = choose_smoothing(final, held_deviance)
    else:                                      # plain steps on all photons (no hold-out)
        path = [(int(steps), lr * fill)]
        final, losses = replay(path, all_counts, probe, mean_counts)
        held_hist, stop, used = [], "steps", 0
    best_k = sum(k for k, _ in path)
    refit_steps = 0
    if scored and refit and best_k > 0:
        final, _ = replay(path, all_counts, probe, mean_counts)
        refit_steps = best_k
    final = smooth_canvas(final, sigma)
    h, w = init.shape
    out = final[pad:pad + h, pad:pad + w].numpy().copy()
    record: dict[str, Any] = {
        "applied": True, "max_steps": int(steps), "lr_relative": lr, "steps": len(losses),
        "best_step": int(best_k), "stop_reason": stop,
        "nll_first": losses[0] if losses else None, "nll_last": losses[-1] if losses else None,
        "holdout": float(holdout) if scored else 0.0, "holdout_note": reason,
        "holdout_seed": int(seed) if scored else None,
        "patience": patience if scored else None,
        "backoffs_used": int(used), "backoffs_max": int(backoffs) if scored else 0,
        "best_path": [[int(k), float(step / fill)] for k, step in path],
        "best_path_units": "[steps, Adam step relative to the amplitude scale] per segment",
        "holdout_history_len": len(held_hist), "holdout_history": held_hist,
        "holdout_units": "mean Poisson half-deviance of the held-out photons per detector pixel"
                         if scored else None,
        "refit_steps": refit_steps,
        "smooth_sigma_px": float(sigma),
        "smooth_scores": [[float(a), float(b)] for a, b in smooth_scores],
        "smooth_note": None if scored and smooth else
        ("disabled (smooth=False)" if scored else "needs the hold-out"),
    }
    return out, record


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
    patches, pps = predict_patches(model, data, cfg.batch_size)
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
    amp_t = torch.as_tensor(np.abs(flat))
    st = stitch_to_object_frame(amp_t, torch.as_tensor(xs), torch.as_tensor(ys), shape,
                                cfg.stitch_window)
    unit = torch.as_tensor(np.exp(1j * np.angle(flat)).astype(np.complex64))
    st_ph = stitch_to_object_frame(unit, torch.as_tensor(xs), torch.as_tensor(ys), shape,
                                   cfg.stitch_window)
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
        obj, steps["refine"] = refine_object(
            amplitude * np.exp(1j * phase), covered, torch.as_tensor(probe_np),
            ds.counts[uniq], ds.xcoords[uniq], ds.ycoords[uniq],
            float(ckpt["scales"]["loss_normaliser"]["mean_counts"]) / model.target_factor,
            amp_ref, refine_steps, float(cfg.refine_lr), holdout=float(cfg.refine_holdout),
            patience=cfg.refine_patience, seed=int(ckpt["config"]["training"]["seed"]),
            refit=bool(cfg.refine_refit), smooth=bool(cfg.refine_smooth),
            backoffs=int(cfg.refine_backoffs), valid=ds.valid)
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
                      offsets_axis_max_abs=[float(np.abs(data.dx).max()), float(np.abs(data.dy).max())],
                      padded_shape=(shape[0] + 2 * required_pad(n), shape[1] + 2 * required_pad(n)),
                      fits_canvas=True, network_only=network_only,
                      pattern_index=data.pattern_index.reshape(-1),
                      object_full=np.asarray(obj, dtype=np.complex64))


def _probe_factor(model: PINN) -> float:
    from ..model.pinn import contract_factors

    return contract_factors(model.contract, model.dose_scale)[0]
