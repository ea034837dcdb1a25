r"""PPR-S: the localized sampler of the SR-GNN authors' large-graph code, on push-based
approximate personalized PageRank.

``push_ppr`` approximates the random-walk PPR vectors
:math:`\pi_s = \alpha (I - (1 - \alpha) A D^{-1})^{-1} e_s` of many seeds by residual
pushes (Andersen, Chung & Lang, 2006): a node whose residual is at least
:math:`\alpha \varepsilon \deg(u)` moves it to its estimate and spreads
:math:`(1 - \alpha)` of it over its out-neighbours, until no node qualifies. The estimate
never exceeds :math:`\pi_s` and misses it by at most :math:`\varepsilon \deg(v)` at node v.
All qualifying nodes of a block of seeds push at once (one sparse product per round), and the
residuals and estimates are sparse ``[N, B]`` matrices, so a round costs the entries it
touches, not N, and working memory is the graph plus those entries, never N x N; each seed
keeps only its ``top_k`` neighbours.

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

from .._validation import check_graph, check_int, check_number, check_seed, check_undirected

#: Seeds pushed together: one sparse product a round serves all of them.
PUSH_BLOCK = 256


def _walk_matrix(edge_index: Tensor, num_nodes: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """:math:`(A D^{-1})^T`, CSR: row u holds node u's out-edges, each weighted 1 / deg(u), the
    share of u's mass a push spreads along it; and the out-degrees."""
    source, target = edge_index.cpu().numpy()
    degree = np.bincount(source, minlength=num_nodes).astype(np.float32)
    values = 1.0 / degree[source]
    spread = sp.csr_matrix((values.astype(np.float32), (source, target)), shape=(num_nodes, num_nodes))
    return spread, degree


class Pusher:
    """Push-based PPR on one graph (module docstring), ``block`` seeds at a time.

    Holds the graph's out-edges and the working residual and estimate of one block, flat
    ``[N * block]`` float32 arrays (entry ``node * block + seed``) allocated once and reused by
    every call: a push reads and resets only the entries it touched, so a round costs the edges
    it pushes over, never N, and memory is the graph plus ``2 * N * block`` floats."""

    def __init__(self, data: Data, teleport: float = 0.1, eps: float = 1e-4, top_k: int = 200,
                 block: int = PUSH_BLOCK):
        check_graph(data)
        if not 0.0 < teleport < 1.0:
            raise ValueError(f"teleport must lie in (0, 1); got {teleport!r}.")
        self.teleport, self.eps = teleport, check_number(eps, "eps", strict=True)
        self.top_k, self.block = check_int(top_k, "top_k"), check_int(block, "block")
        self.out, self.degree = _walk_matrix(data.edge_index, data.num_nodes)
        self.out_count = np.diff(self.out.indptr)
        self.threshold = (teleport * self.eps * np.maximum(self.degree, 1.0)).astype(np.float32)
        self.residual = np.zeros(data.num_nodes * self.block, dtype=np.float32)
        self.estimate = np.zeros_like(self.residual)

    def __call__(self, seeds: np.ndarray) -> tuple[Tensor, Tensor]:
        """``push_ppr``'s ``(indices, values)`` ``[S, top_k]`` for node ids ``seeds`` ``[S]``."""
        indices = np.full((len(seeds), self.top_k), -1, dtype=np.int64)
        values = np.zeros((len(seeds), self.top_k), dtype=np.float32)
        for start in range(0, len(seeds), self.block):
            node, col, value = self._push_block(seeds[start:start + self.block])
            # Per seed, decreasing PPR, ties by node id.
            order = np.lexsort((node, -value, col))
            node, col, value = node[order], col[order], value[order]
            rank = np.arange(col.size) - np.searchsorted(col, col)  # position within its seed
            kept = rank < self.top_k
            indices[start + col[kept], rank[kept]] = node[kept]
            values[start + col[kept], rank[kept]] = value[kept]
        return torch.from_numpy(indices), torch.from_numpy(values)

    def _push_block(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Push ``seeds`` (at most ``block``) to convergence; the (node, seed position, estimate)
        of every non-zero estimate entry, with the working arrays left all zero again."""
        width, residual, estimate, out = self.block, self.residual, self.estimate, self.out
        active = seeds.astype(np.int64) * width + np.arange(len(seeds))
        residual[active] = self.teleport
        pushed, reached = [], [active]
        active = active[residual[active] >= self.threshold[active // width]]
        while active.size:
            pushed.append(active)
            moved = residual[active]
            residual[active] = 0.0
            estimate[active] += moved
            # One round for every qualifying node of every seed: (1 - alpha) of its residual
            # spread evenly over its out-neighbours.
            node, col = active // width, active % width
            first, count = out.indptr[node], self.out_count[node]
            owner = np.repeat(np.arange(active.size), count)
            edge = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count) + first[owner]
            targets = out.indices[edge].astype(np.int64) * width + col[owner]
            np.add.at(residual, targets, (1.0 - self.teleport) * moved[owner] * out.data[edge])
            reached.append(targets)
            # Next round: the reached entries now over their threshold, each once.
            active = np.unique(targets[residual[targets] >= self.threshold[targets // width]])
        touched = np.unique(np.concatenate(pushed)) if pushed else np.empty(0, dtype=np.int64)
        value = estimate[touched]
        estimate[touched] = 0.0
        for keys in reached:
            residual[keys] = 0.0
        return touched // width, touched % width, value


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
    seeds = torch.as_tensor(seeds).long().view(-1).cpu().numpy()
    return Pusher(data, teleport, eps, top_k, block=max(1, min(PUSH_BLOCK, len(seeds))))(seeds)


def exact_walk_ppr(data: Data, seeds: Tensor, teleport: float = 0.1) -> Tensor:
    """The exact random-walk PPR columns that ``push_ppr`` approximates, ``[N, S]`` float64, by one
    sparse LU: a reference for checks on graphs small enough to factor."""
    check_graph(data)
    seeds = torch.as_tensor(seeds).long().view(-1).cpu().numpy()
    spread, _ = _walk_matrix(data.edge_index, data.num_nodes)
    walk = spread.T.astype(np.float64)  # A D^-1
    lu = spla.splu((sp.identity(data.num_nodes, format="csc") - (1 - teleport) * walk).tocsc())
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
        check_undirected(data, "PushSampler")
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
        self.pusher = Pusher(data, teleport, eps, self.top_k, self.block)  # the graph's out-edges, built once
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
        y = self.data.y.view(-1).cpu().numpy()
        generator = torch.Generator().manual_seed(check_seed(seed))
        order = self.candidates[torch.randperm(self.candidates.numel(), generator=generator)]
        taken = {c: 0 for c in self.quota}
        chosen: set[int] = set()
        used = skipped = 0

        def unfilled() -> bool:
            return any(taken[c] < q for c, q in self.quota.items())

        for start in range(0, order.numel(), self.block):
            if not unfilled():
                break
            part = order[start:start + self.block]
            neighbours, _ = self.pusher(part.numpy())
            for node, row in zip(part.tolist(), neighbours.numpy()):
                if not unfilled():
                    break
                cls = int(y[node])
                support = row[row >= 0]
                if support.size <= self.min_neighbours or cls not in self.quota:
                    skipped += 1
                    continue
                used += 1
                for v in support[y[support] == cls].tolist():
                    if taken[cls] >= self.quota[cls]:
                        break
                    if v not in chosen:
                        chosen.add(v)
                        taken[cls] += 1
        filled = 0
        if unfilled():  # the authors' fallback when the seeds ran out
            for node in order.tolist():
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
