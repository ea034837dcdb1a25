"""The localized (biased) training-set sampler of SR-GNN (Zhu et al., NeurIPS 2021)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_graph, check_index
from ..propagation import _graph_key, normalized_adjacency, ppr, ppr_gram, ppr_sq_norms


def default_pool(data: Data) -> Tensor:
    """The paper's candidate pool: the first 1,500 / 1,000 / 10,000 nodes of Cora / CiteSeer /
    PubMed (as in the authors' code); every node for other graphs."""
    from ..data import _registry

    info = _registry().get(getattr(data, "name", None) or "")
    size = info["localized_pool"] if info else data.num_nodes
    return torch.arange(min(size, data.num_nodes))


class LocalizedSampler:
    r"""Per class, one random seed node and the ``per_class`` pool nodes of that class nearest
    to it by squared distance between personalized-PageRank vectors,
    :math:`\lVert \pi_s - \pi_v \rVert_2^2` with :math:`\pi = \alpha(I - (1-\alpha)\hat A)^{-1}e`.

    The seed itself (distance 0) is one of the ``per_class`` nodes, as in the paper.

    Distances come from :math:`\lVert\pi_s-\pi_v\rVert^2 = G_{ss} + G_{vv} - 2G_{sv}` with
    :math:`G = \Pi^2` (:math:`\Pi` is symmetric). ``sketch_dim=None`` computes them exactly:
    :math:`G_{vv}` for the pool by ``srgnn.propagation.ppr_sq_norms`` (nested dissection
    or column solves, never a dense N x N matrix) and :math:`G_{sv}` from two solves per seed. ``sketch_dim=k`` replaces
    :math:`\Pi` by the Johnson-Lindenstrauss sketch :math:`\Pi R`, :math:`R \in
    \mathbb{R}^{N\times k}` Gaussian, whose squared distances are unbiased with relative
    standard deviation :math:`\sqrt{2/k}`; it costs k solves in all, for graphs where one
    solve per pool node is too much. ``"auto"`` is exact up to 20,000 pool nodes on graphs
    of up to 100,000 nodes, else a 128-dimensional sketch.

    Args:
        data: graph with labels ``y`` ``[N]``.
        per_class: nodes per class in each set.
        teleport: PPR teleport probability (0.01 in the paper's small-graph study).
        pool: candidate nodes (indices or a boolean mask); default ``default_pool(data)``.
        sketch_dim: ``None`` (exact), an int, or ``"auto"``.
    """

    def __init__(self, data: Data, per_class: int = 20, teleport: float = 0.01,
                 pool: Tensor | None = None, sketch_dim: int | str | None = "auto", seed_sketch: int = 0):
        check_graph(data, require_labels=True)
        if not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be a positive int; got {per_class!r}.")
        if not 0.0 < teleport < 1.0:
            raise ValueError(f"teleport must lie in (0, 1); got {teleport}.")
        pool = default_pool(data) if pool is None else check_index(pool, data.num_nodes, "pool")
        pool = torch.unique(pool)
        y = data.y.view(-1).cpu()
        num_classes = int(getattr(data, "num_classes", None) or int(y.max()) + 1)
        self.class_pools: list[Tensor] = []
        for c in range(num_classes):
            members = pool[y[pool] == c]
            if members.numel() < per_class:
                raise ValueError(
                    f"Class {c} has {members.numel()} node(s) in the pool but per_class={per_class}; "
                    "lower per_class or pass a larger pool.")
            self.class_pools.append(members)
        if sketch_dim == "auto":
            sketch_dim = None if pool.numel() <= 20_000 and data.num_nodes <= 100_000 else 128
        self.data, self.per_class, self.teleport, self.pool = data, per_class, teleport, pool
        self.sketch_dim, self.seed_sketch = sketch_dim, seed_sketch
        self._adj = normalized_adjacency(data.edge_index, data.num_nodes, "sym", "cpu", torch.float64)
        self._key = _graph_key(data.edge_index, data.num_nodes)
        self._sq_norms: Tensor | None = None  # G_vv for every node of the pool, [N] (pool entries filled)
        self._sketch: Tensor | None = None

    def _prepare(self) -> None:
        if self._sq_norms is not None:
            return
        n = self.data.num_nodes
        sq = torch.zeros(n, dtype=torch.float64)
        if self.sketch_dim is None:
            sq[self.pool] = ppr_sq_norms(self._adj, self.pool, self.teleport, cache_key=self._key)
        else:
            gen = torch.Generator().manual_seed(self.seed_sketch)
            projection = torch.randn(n, self.sketch_dim, generator=gen, dtype=torch.float64)
            self._sketch = ppr(self._adj, rhs=projection / math.sqrt(self.sketch_dim), teleport=self.teleport,
                               cache_key=self._key)
            sq[self.pool] = (self._sketch[self.pool] ** 2).sum(1)
        self._sq_norms = sq

    def _inner(self, seeds: Tensor, nodes: Tensor) -> Tensor:
        """G[seeds, nodes], ``[S, M]``."""
        if self._sketch is not None:
            return self._sketch[seeds] @ self._sketch[nodes].T
        return ppr_gram(self._adj, seeds, self.teleport, cache_key=self._key)[nodes].T

    def _seeds(self, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([members[torch.randint(members.numel(), (1,), generator=gen)][0]
                            for members in self.class_pools])

    def sample(self, seed: int) -> Tensor:
        """One localized set: ``[per_class * C]`` node ids, class by class."""
        return self.sample_many(1, seed)[0]

    def sample_many(self, n: int, seed: int = 0) -> list[Tensor]:
        """``n`` sets; set ``i`` equals ``sample(seed + i)``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}.")
        self._prepare()
        seeds = torch.stack([self._seeds(seed + i) for i in range(n)])  # [n, C]
        chosen = []
        for c, members in enumerate(self.class_pools):
            uniq, inverse = torch.unique(seeds[:, c], return_inverse=True)
            dist = self._sq_norms[uniq, None] + self._sq_norms[members][None] - 2 * self._inner(uniq, members)
            # Structurally twin nodes (say, leaves of one hub) lie at the same distance up to
            # rounding, which changes with the solver's blocking: quantize to 1e-12 of the
            # largest distance so that ties go to the lower node id, whatever the rounding.
            dist = torch.round(dist / dist.abs().amax(1, keepdim=True).clamp_min(1e-300) * 1e12)
            dist[torch.arange(uniq.numel()), torch.searchsorted(members, uniq)] = -1.0  # the seed comes first
            order = torch.argsort(dist, dim=1, stable=True)[:, : self.per_class]
            chosen.append(members[order][inverse])  # [n, per_class]
        return list(torch.cat(chosen, dim=1).unbind(0))


def within_class_hops(data: Data, sets: list[Tensor]) -> float:
    """Mean shortest-path length between same-class members of each set, averaged over
    sets (unreachable pairs skipped): how localized the sets are."""
    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.csgraph as csgraph

    ei = data.edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1]), ei), shape=(data.num_nodes,) * 2)
    y = data.y.cpu().numpy()
    means = []
    for s in sets:
        s = s.cpu().numpy()
        hops = csgraph.shortest_path(adj, indices=s, unweighted=True)[:, s]
        values = hops[(y[s][:, None] == y[s][None]) & ~np.eye(len(s), dtype=bool)]
        means.append(values[np.isfinite(values)].mean())
    return float(np.mean(means))
