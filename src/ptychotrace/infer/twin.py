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
    cost = _pair_costs(amps, support, radius, xcoords, ycoords, pairs)
    labels, best, energies = _choose_labels(cost, pairs, n_pat, iterations)
    out = p.clone()
    flip = torch.as_tensor(labels.astype(bool))
    if flip.any():
        out[flip] = twin_of(p[flip], mode)
    record.update(flipped=int(labels.sum()), n_patterns=int(n_pat), start=best,
                  energies=energies, energy_unflipped=_energy(cost, pairs, np.zeros(n_pat, np.int64)))
    return out.numpy(), record


def _pair_costs(amps: torch.Tensor, support: torch.Tensor, radius: float, xcoords: np.ndarray,
                ycoords: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Overlap-weighted cost table (pairs, 2, 2): cost[e, a, b] for patch i = pairs[e, 0] in
    orientation a and patch j = pairs[e, 1] in orientation b. ``amps`` is (2, P, N, N) (the
    amplitudes and their twins), ``support`` the (N, N) probe support, ``radius`` its radius (px)."""
    n = amps.shape[-1]
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
    return cost


def _energy(cost: np.ndarray, pairs: np.ndarray, lab: np.ndarray) -> float:
    """Total cost of the labelling ``lab`` (P,) over all overlapping pairs."""
    return float(cost[np.arange(len(pairs)), lab[pairs[:, 0]], lab[pairs[:, 1]]].sum())


def _choose_labels(cost: np.ndarray, pairs: np.ndarray, n_pat: int,
                   iterations: int) -> tuple[np.ndarray, str, dict[str, float]]:
    """Minimise the pair energy: returns (labels (P,), name of the winning start, energy per start).

    Greedy starts with the root of every component labelled 0 or 1; keep, per component, the
    better one; then polish with ICM. Plain ICM from all-0 / all-1 competes; lowest energy wins."""
    i = pairs[:, 0]
    node_other, node_cost = _node_tables(cost, pairs, n_pat)
    nbrs = _neighbours(pairs, n_pat)
    lab0, comp = _propagate(0, nbrs, cost, i)
    lab1, _ = _propagate(1, nbrs, cost, i)
    better = (_component_energies(cost, pairs, lab1, comp)
              < _component_energies(cost, pairs, lab0, comp))
    greedy = np.where(better[comp], lab1, lab0)
    starts = {"greedy": greedy, "zeros": np.zeros(n_pat, np.int64), "ones": np.ones(n_pat, np.int64)}
    results = {name: _icm(lab, node_other, node_cost, iterations) for name, lab in starts.items()}
    energies = {name: _energy(cost, pairs, lab) for name, lab in results.items()}
    best = min(energies, key=energies.get)
    return results[best], best, energies


def _node_tables(cost: np.ndarray, pairs: np.ndarray,
                 n_pat: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per node: its neighbours and, for each edge, the cost table oriented as [own label, other label]."""
    i, j = pairs[:, 0], pairs[:, 1]
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
    return node_other, node_cost


def _icm(lab: np.ndarray, node_other: list[np.ndarray], node_cost: list[np.ndarray],
         iterations: int) -> np.ndarray:
    """Iterated conditional modes from ``lab`` (not modified): each node in turn takes the label
    cheaper against its neighbours' current labels, until nothing changes or ``iterations`` sweeps."""
    lab = lab.copy()
    for _ in range(iterations):
        changed = 0
        for k in range(len(node_other)):
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


def _neighbours(pairs: np.ndarray, n_pat: int) -> list[list[tuple[int, int]]]:
    """Per node, its (edge index, other node) pairs."""
    nbrs: list[list[tuple[int, int]]] = [[] for _ in range(n_pat)]
    for e, (a, b) in enumerate(pairs):
        nbrs[a].append((e, int(b)))
        nbrs[b].append((e, int(a)))
    return nbrs


def _edge_cost(cost, i, e, node, other, l_node, l_other):
    """Cost of edge e with `node` labelled l_node and `other` labelled l_other (i: first ends)."""
    return cost[e, l_node, l_other] if i[e] == node else cost[e, l_other, l_node]


def _propagate(root_label: int, nbrs: list[list[tuple[int, int]]], cost: np.ndarray,
               i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy from the most confident edges: grow each connected component from its best
    connected node; a node's label is fixed by the labelled neighbour whose edge decides it
    most clearly (largest cost gap between its two labels). Returns (labels, component id)."""
    import heapq

    n_pat = len(nbrs)
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
                    c0 = _edge_cost(cost, i, e, other, node, 0, lab[node])
                    c1 = _edge_cost(cost, i, e, other, node, 1, lab[node])
                    heapq.heappush(heap, (-abs(c0 - c1), int(other), int(c1 < c0)))

        push(root)
        while heap:
            _, node, choice = heapq.heappop(heap)
            if lab[node] >= 0:
                continue
            lab[node], comp[node] = choice, c
            push(node)
    return lab, comp


def _component_energies(cost: np.ndarray, pairs: np.ndarray, lab: np.ndarray,
                        comp: np.ndarray) -> np.ndarray:
    """Energy of labelling ``lab`` summed per connected component (indexed by ``comp``)."""
    i, j = pairs[:, 0], pairs[:, 1]
    per_edge = cost[np.arange(len(pairs)), lab[i], lab[j]]
    return np.bincount(comp[i], weights=per_edge, minlength=len(lab))
