"""The twin ambiguity (gridsize 1): overlap-consistent choice between each predicted patch and
its twin ``conj(flip(O))`` (see :mod:`ptychotrace.infer.predict`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..physics.forward import extract_patches, pad_canvas

#: Overlapping pairs scored at once by the twin fix (bounds memory at ~PAIR_CHUNK * N^2 * 8 bytes * 6).
PAIR_CHUNK = 1024

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
