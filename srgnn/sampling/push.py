r"""PPR-S: the localized sampler of the SR-GNN authors' large-graph code, on push-based
approximate personalized PageRank.

``push_ppr`` approximates the random-walk PPR vectors
:math:`\pi_s = \alpha (I - (1 - \alpha) A D^{-1})^{-1} e_s` of many seeds by residual
pushes (Andersen, Chung & Lang, 2006): a node whose residual is at least
:math:`\alpha \varepsilon \deg(u)` moves it to its estimate and spreads
:math:`(1 - \alpha)` of it over its out-neighbours, until no node qualifies. The estimate
never exceeds :math:`\pi_s` and misses it by at most :math:`\varepsilon \deg(v)` at node v.
All qualifying nodes of a block of seeds push at once (one sparse product per round), so
working memory is the graph plus two ``[N, B]`` float32 blocks (B seeds, sized to a memory
budget), never N x N; each seed keeps only its ``top_k`` neighbours.

``PushSampler`` then draws a training set as the authors' code does: per class a quota of
``floor(ratio * class size)`` nodes; classes whose quota falls under ``min_quota`` are
dropped; seeds are taken in a seeded random order, a seed with fewer than ``min_neighbours``
PPR neighbours (or of a dropped class) is skipped, and each other seed adds its same-class
PPR neighbours, nearest first, until its class's quota is met. ``report_`` says what was
dropped, skipped and filled.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_graph, check_int, check_number

#: Entries of each ``[N, B]`` working block (float32): 64 MiB.
BLOCK_ENTRIES = 1 << 24


def _walk_matrix(edge_index: Tensor, num_nodes: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """:math:`A D^{-1}` (column u spreads node u's mass over its out-neighbours) and the out-degrees."""
    source, target = edge_index.cpu().numpy()
    degree = np.bincount(source, minlength=num_nodes).astype(np.float32)
    values = 1.0 / degree[source]
    walk = sp.csr_matrix((values.astype(np.float32), (target, source)), shape=(num_nodes, num_nodes))
    return walk, degree


def push_ppr(data: Data, seeds: Tensor, teleport: float = 0.1, eps: float = 1e-4,
             top_k: int = 200) -> tuple[Tensor, Tensor]:
    """Approximate random-walk PPR of each seed by pushes; its ``top_k`` largest entries.

    Args:
        data: the graph (``edge_index``, ``num_nodes``); degrees are out-degrees.
        seeds: ``[S]`` node ids.
        teleport: alpha (0.1, as the authors). eps: residual tolerance (the authors' 5e-5 to 1e-3).
        top_k: neighbours kept per seed.

    Returns:
        ``indices`` ``[S, top_k]`` (``-1`` past a seed's support) and ``values`` ``[S, top_k]``
        float32, each row in decreasing PPR, ties by node id.
    """
    check_graph(data)
    if not 0.0 < teleport < 1.0:
        raise ValueError(f"teleport must lie in (0, 1); got {teleport!r}.")
    walk, degree = _walk_matrix(data.edge_index, data.num_nodes)
    return _push(walk, degree, torch.as_tensor(seeds).long().view(-1).cpu().numpy(), teleport,
                 check_number(eps, "eps", strict=True), check_int(top_k, "top_k"))


def _push(walk: sp.csr_matrix, degree: np.ndarray, seeds: np.ndarray, teleport: float, eps: float,
          top_k: int) -> tuple[Tensor, Tensor]:
    n = walk.shape[0]
    threshold = (teleport * eps * np.maximum(degree, 1.0)).astype(np.float32)[:, None]
    block = max(1, min(len(seeds), BLOCK_ENTRIES // max(n, 1)))
    keep = min(top_k, n)
    indices = np.full((len(seeds), top_k), -1, dtype=np.int64)
    values = np.zeros((len(seeds), top_k), dtype=np.float32)
    for start in range(0, len(seeds), block):
        part = seeds[start:start + block]
        estimate = np.zeros((n, len(part)), dtype=np.float32)
        residual = np.zeros_like(estimate)
        residual[part, np.arange(len(part))] = teleport
        while True:
            rows, cols = np.nonzero(residual >= threshold)
            if rows.size == 0:
                break
            moved = residual[rows, cols]
            residual[rows, cols] = 0.0
            estimate[rows, cols] += moved
            # One round for every qualifying node of every seed: (1 - alpha) of its residual
            # spread evenly over its out-neighbours. The product's entries are unique, so the
            # indexed += adds each once.
            spread = (walk @ sp.csc_matrix((moved, (rows, cols)), shape=residual.shape)).tocoo()
            residual[spread.row, spread.col] += (1.0 - teleport) * spread.data
        # Decreasing PPR, ties by node id: a stable sort of the negated estimate.
        order = np.argsort(-estimate, axis=0, kind="stable")[:keep].T  # [B, keep]
        top = np.take_along_axis(estimate.T, order, axis=1)
        order[top <= 0] = -1
        indices[start:start + len(part), :keep] = order
        values[start:start + len(part), :keep] = np.where(top > 0, top, 0.0)
    return torch.from_numpy(indices), torch.from_numpy(values)


def exact_walk_ppr(data: Data, seeds: Tensor, teleport: float = 0.1) -> Tensor:
    """The exact random-walk PPR columns that ``push_ppr`` approximates, ``[N, S]`` float64, by one
    sparse LU: a reference for checks on graphs small enough to factor."""
    check_graph(data)
    seeds = torch.as_tensor(seeds).long().view(-1).cpu().numpy()
    walk, _ = _walk_matrix(data.edge_index, data.num_nodes)
    lu = spla.splu((sp.identity(data.num_nodes, format="csc") - (1 - teleport) * walk.astype(np.float64)).tocsc())
    rhs = np.zeros((data.num_nodes, len(seeds)))
    rhs[seeds, np.arange(len(seeds))] = 1.0
    return torch.from_numpy(teleport * lu.solve(rhs))


class PushSampler:
    """PPR-S, the authors' localized sampler for large graphs (module docstring).

    Args:
        data: a labelled graph.
        ratio: the label ratio, e.g. 0.01 or 0.05: class c's quota is
            ``floor(ratio * |candidates of class c|)``.
        candidates: the nodes that may seed a set and that the quotas count (default: the
            ``train_mask`` nodes, else every node); the sets' other nodes are any same-class
            PPR neighbours, as in the authors' code (on ogbn-arxiv some fall in OGB's test split:
            take them out of the test nodes).
        teleport, eps, top_k: of ``push_ppr`` (0.1, 5e-5, 200: the authors' settings).
        min_neighbours: a seed with at most this many PPR neighbours is skipped (50).
        min_quota: classes whose quota is under this are dropped (10).
        block: seeds whose PPR is pushed at once.

    Attributes (after ``sample``): ``report_``, a dict with ``quota`` (per kept class),
    ``dropped_classes``, ``seeds_used``, ``seeds_skipped`` and ``filled_at_random`` (nodes taken
    from the candidates, in the same random order, when the seeds did not fill every quota).
    """

    def __init__(self, data: Data, ratio: float, *, candidates: Tensor | None = None, teleport: float = 0.1,
                 eps: float = 5e-5, top_k: int = 200, min_neighbours: int = 50, min_quota: int = 10,
                 block: int = 32):
        check_graph(data, require_labels=True)
        if not 0.0 < check_number(ratio, "ratio", strict=True) <= 1.0:
            raise ValueError(f"ratio must lie in (0, 1]; got {ratio!r}.")
        if candidates is None:
            mask = getattr(data, "train_mask", None)
            candidates = mask.nonzero().view(-1) if mask is not None else torch.arange(data.num_nodes)
        self.data, self.ratio, self.candidates = data, ratio, torch.as_tensor(candidates).long().view(-1).cpu()
        self.teleport, self.eps, self.top_k = teleport, eps, check_int(top_k, "top_k")
        self.min_neighbours = check_int(min_neighbours, "min_neighbours", minimum=0)
        self.min_quota = check_int(min_quota, "min_quota", minimum=0)
        self.block = check_int(block, "block")
        self._walk, self._degree = _walk_matrix(data.edge_index, data.num_nodes)  # A D^-1, built once
        y = data.y.view(-1).cpu()
        counts = torch.bincount(y[self.candidates], minlength=int(y.max()) + 1).tolist()
        self.quota = {c: math.floor(ratio * count) for c, count in enumerate(counts) if count}
        self.dropped_classes = sorted(c for c, q in self.quota.items() if q < self.min_quota)
        for c in self.dropped_classes:
            del self.quota[c]
        if not self.quota:
            raise ValueError(f"At ratio {ratio} no class reaches min_quota={min_quota} training nodes; raise the "
                             "ratio or lower min_quota.")

    def sample(self, seed: int = 0) -> Tensor:
        """One training set ``[T]`` (sorted), ``sum(quota)`` nodes; deterministic in ``seed``."""
        y = self.data.y.view(-1).cpu()
        generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
        order = self.candidates[torch.randperm(self.candidates.numel(), generator=generator)]
        taken = {c: 0 for c in self.quota}
        chosen: set[int] = set()
        used = skipped = 0
        for start in range(0, order.numel(), self.block):
            if all(taken[c] >= q for c, q in self.quota.items()):
                break
            part = order[start:start + self.block]
            neighbours, _ = _push(self._walk, self._degree, part.numpy(), self.teleport, self.eps, self.top_k)
            for node, row in zip(part.tolist(), neighbours.tolist()):
                if all(taken[c] >= q for c, q in self.quota.items()):
                    break
                cls = int(y[node])
                support = [v for v in row if v >= 0]
                if len(support) <= self.min_neighbours or cls not in self.quota:
                    skipped += 1
                    continue
                used += 1
                for v in support:
                    if taken[cls] >= self.quota[cls]:
                        break
                    if int(y[v]) == cls and v not in chosen:
                        chosen.add(v)
                        taken[cls] += 1
        filled = 0
        for node in order.tolist():  # the authors' fallback when the seeds ran out
            cls = int(y[node])
            if cls in self.quota and taken[cls] < self.quota[cls] and node not in chosen:
                chosen.add(node)
                taken[cls] += 1
                filled += 1
        self.report_ = {"quota": dict(self.quota), "dropped_classes": list(self.dropped_classes),
                        "seeds_used": used, "seeds_skipped": skipped, "filled_at_random": filled}
        return torch.tensor(sorted(chosen), dtype=torch.long)


def push_sq_distances(data: Data, sources: Tensor, targets: Tensor, teleport: float = 0.1, eps: float = 1e-3,
                      top_k: int = 1000) -> Tensor:
    r"""Squared distances :math:`\lVert \hat\pi_s - \hat\pi_t \rVert_2^2` between push-approximated
    PPR vectors (``push_ppr``, each cut to its ``top_k`` largest entries) of ``sources`` ``[S]``
    and ``targets`` ``[T]``, ``[S, T]`` float64: KMM's input on graphs too large for exact PPR,
    as the SR-GNN authors' large-graph code computes it (at their tolerance, 1e-3).
    Memory is ``(S + T) * top_k`` entries plus the ``[S, T]`` result."""
    nodes = torch.cat([torch.as_tensor(sources).long().view(-1), torch.as_tensor(targets).long().view(-1)])
    indices, values = push_ppr(data, nodes, teleport, eps, top_k)
    kept = indices >= 0
    rows = sp.csr_matrix((values[kept].double().numpy(), (np.nonzero(kept.numpy())[0], indices[kept].numpy())),
                         shape=(nodes.numel(), data.num_nodes))
    s = len(sources)
    gram = (rows[:s] @ rows[s:].T).toarray()
    norms = np.asarray(rows.multiply(rows).sum(1)).ravel()
    sq = np.maximum(norms[:s, None] + norms[None, s:] - 2.0 * gram, 0.0)
    return torch.from_numpy(sq)
