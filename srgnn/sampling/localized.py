"""The localized (biased) training-set sampler of SR-GNN (Zhu et al., NeurIPS 2021)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_graph, check_index, check_int, check_number, check_seed, check_undirected
from ..graph import Graph
from ..ppr import every_sq_norm, ppr, ppr_gram, ppr_sq_norms, sym_adjacency

#: The teleport for a graph the registry does not know. 0.1 is the teleport of the authors'
#: large-graph sampler (PPR-S) and of APPNP, and the one whose sets equal the authors' published
#: PubMed sets (100 of 100) and most of their CiteSeer sets; 0.01 spreads each set over a wider
#: neighbourhood and only suits small, tightly clustered graphs such as Cora.
DEFAULT_TELEPORT = 0.1


def _registry_entry(data: Data | str) -> dict | None:
    from ..data import _registry

    name = data if isinstance(data, str) else getattr(data, "name", None)
    return _registry().get((name or "").lower())


def default_pool(data: Data) -> Tensor:
    """The paper's candidate pool: the first 1,500 / 1,000 / 10,000 nodes of Cora / CiteSeer /
    PubMed (as in the authors' code); every node for other graphs."""
    info = _registry_entry(data)
    size = info.get("localized_pool", data.num_nodes) if info else data.num_nodes
    return torch.arange(min(size, data.num_nodes))


def default_teleport(data: Data | str) -> float:
    """The PPR teleport the authors' sets were drawn with, for a graph or a dataset name:
    ``localized_teleport`` in ``datasets/registry.json`` (Cora 0.01, CiteSeer 0.1, PubMed 0.1,
    each checked by regenerating the published sets from their seed nodes), else
    ``DEFAULT_TELEPORT``."""
    info = _registry_entry(data)
    return info.get("localized_teleport", DEFAULT_TELEPORT) if info else DEFAULT_TELEPORT


class LocalizedSampler:
    r"""Per class, one seed node and the ``per_class`` pool nodes of that class nearest to it
    by squared distance between personalized-PageRank vectors,
    :math:`\lVert \pi_s - \pi_v \rVert_2^2` with :math:`\pi = \alpha(I - (1-\alpha)\hat A)^{-1}e`
    and :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` (self-loops of ``edge_index`` replaced, as PyG
    does, not added twice).

    The seed is drawn at random (``sample(seed=...)``) or given (``sample(seed_nodes=...)``,
    which regenerates a published set from its first node per class). It is one of the
    ``per_class`` nodes (distance 0), first in its block, as in the paper; the others follow by
    distance. **Ties:** distances are rounded to 1e-12 of the largest distance from that seed,
    so nodes whose distances agree to that precision (structural twins, such as the leaves of
    one hub) are tied, and a tie goes to the lower node id, whatever the solver's rounding.

    Distances come from :math:`\lVert\pi_s-\pi_v\rVert^2 = G_{ss} + G_{vv} - 2G_{sv}` with
    :math:`G = \Pi^2` (:math:`\Pi` is symmetric, so the graph must be undirected).
    ``sketch_dim=None`` computes them exactly: :math:`G_{vv}` for the pool by
    ``srgnn.ppr.ppr_sq_norms`` (nested dissection or column solves, never a dense N x N
    matrix) and :math:`G_{sv}` from two solves per seed. ``sketch_dim=k`` replaces :math:`\Pi`
    by the Johnson-Lindenstrauss sketch :math:`\Pi R`, :math:`R \in \mathbb{R}^{N\times k}`
    Gaussian, whose squared distances are unbiased with relative standard deviation
    :math:`\sqrt{2/k}`; it costs k solves in all, for graphs where one solve per pool node is
    too much. ``"auto"`` is exact up to 20,000 pool nodes on graphs of up to 100,000 nodes,
    else a 128-dimensional sketch.

    Args:
        data: undirected graph with labels ``y`` ``[N]``; a ``srgnn.Graph`` shares its cache, so
            that KMM on the same graph and teleport reuses the PPR factorization and norms.
        per_class: nodes per class in each set.
        teleport: PPR teleport probability :math:`\alpha`; default ``default_teleport(data)``:
            the one the authors' published sets were drawn with (Cora 0.01, CiteSeer 0.1,
            PubMed 0.1), ``DEFAULT_TELEPORT`` (0.1) for any other graph. A smaller teleport
            reaches further, so its sets are less concentrated.
        pool: candidate nodes (indices or a boolean mask); default ``default_pool(data)``.
        sketch_dim: ``None`` (exact), a positive int, or ``"auto"``.
        seed_sketch: seed of the sketch's Gaussian matrix.
    """

    def __init__(self, data: Data | Graph, per_class: int = 20, teleport: float | None = None,
                 pool: Tensor | None = None, sketch_dim: int | str | None = "auto", seed_sketch: int = 0):
        graph = data if isinstance(data, Graph) else None
        data = graph.data if graph is not None else data
        check_graph(data, require_labels=True)
        per_class = check_int(per_class, "per_class")
        teleport = default_teleport(data) if teleport is None else teleport
        if not check_number(teleport, "teleport", strict=True) < 1.0:
            raise ValueError(f"teleport must lie in (0, 1); got {teleport!r}.")
        if sketch_dim not in (None, "auto"):
            try:
                check_int(sketch_dim, "sketch_dim")
            except (TypeError, ValueError):
                raise ValueError(f"sketch_dim must be None (exact distances), 'auto' or a positive int; "
                                 f"got {sketch_dim!r}.") from None
        check_undirected(data, "LocalizedSampler")
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
        self.data, self.per_class, self.teleport, self.pool = data, per_class, float(teleport), pool
        self.sketch_dim, self.seed_sketch = sketch_dim, seed_sketch
        # A Graph's adjacency and cache, where KMM at the same teleport reuses the factors and
        # norms; a Data's own, with the LU factorization (and nested dissection) kept here.
        self._adj, factors = sym_adjacency(data if graph is None else graph)
        self._factors: dict = {} if factors is None else factors
        self._sq_norms: Tensor | None = None  # G_vv for every node of the pool, [N] (pool entries filled)
        self._sketch: Tensor | None = None

    def _prepare(self) -> None:
        if self._sq_norms is not None:
            return
        n = self.data.num_nodes
        sq = torch.zeros(n, dtype=torch.float64)
        if self.sketch_dim is None:
            # A pool of every node takes the norms kept on the graph (computed once, for KMM too).
            every = every_sq_norm(self._adj, self._factors, self.teleport) if self.pool.numel() == n else None
            sq[self.pool] = (every if every is not None
                             else ppr_sq_norms(self._adj, self.pool, self.teleport, factors=self._factors))
        else:
            gen = torch.Generator().manual_seed(self.seed_sketch)
            projection = torch.randn(n, self.sketch_dim, generator=gen, dtype=torch.float64)
            self._sketch = ppr(self._adj, rhs=projection / math.sqrt(self.sketch_dim), teleport=self.teleport,
                               factors=self._factors)
            sq[self.pool] = (self._sketch[self.pool] ** 2).sum(1)
        self._sq_norms = sq

    def _inner(self, seeds: Tensor, nodes: Tensor) -> Tensor:
        """G[seeds, nodes], ``[S, M]``."""
        if self._sketch is not None:
            return self._sketch[seeds] @ self._sketch[nodes].T
        return ppr_gram(self._adj, seeds, self.teleport, factors=self._factors)[nodes].T

    def sq_distances(self, seeds: Tensor, nodes: Tensor) -> Tensor:
        r""":math:`\lVert \pi_s - \pi_v \rVert_2^2` for pool nodes ``seeds`` ``[S]`` and ``nodes``
        ``[M]``: ``[S, M]``, float64 (the sketch's estimate when ``sketch_dim`` is set)."""
        return self._sq_distances(self._pool_nodes(seeds, "seeds"), self._pool_nodes(nodes, "nodes"))

    def _sq_distances(self, seeds: Tensor, nodes: Tensor) -> Tensor:
        self._prepare()
        return self._sq_norms[seeds, None] + self._sq_norms[nodes][None] - 2 * self._inner(seeds, nodes)

    def _pool_nodes(self, nodes, name: str) -> Tensor:
        nodes = check_index(nodes, self.data.num_nodes, name)
        outside = nodes[~torch.isin(nodes, self.pool)]
        if outside.numel():
            raise ValueError(f"{name} holds node(s) {outside[:5].tolist()} outside the sampler's pool; "
                             "pass pool= containing them.")
        return nodes

    def _random_seeds(self, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([members[torch.randint(members.numel(), (1,), generator=gen)][0]
                            for members in self.class_pools])

    def sample(self, seed: int | None = None, *, seed_nodes: Tensor | Sequence[int] | None = None) -> Tensor:
        """One localized set: ``[per_class * C]`` node ids, a block per class, seed first.

        Pass ``seed`` (an int: random seed nodes) or ``seed_nodes`` (one pool node per class,
        ``[C]``, in any class order; the blocks follow that order).
        """
        if (seed is None) == (seed_nodes is None):
            raise TypeError("pass exactly one of seed= (random seed nodes) or seed_nodes= (one node per class).")
        if seed is None:
            return self.sample_many(seed_nodes=torch.as_tensor(seed_nodes).view(1, -1))[0]
        return self.sample_many(1, seed)[0]

    def sample_many(self, n: int | None = None, seed: int = 0, *,
                    seed_nodes: Tensor | Sequence[Sequence[int]] | None = None) -> list[Tensor]:
        """``n`` sets; set ``i`` equals ``sample(seed + i)``. Or, with ``seed_nodes`` ``[n, C]``
        (a row per set, one pool node per class in any order), set ``i`` equals
        ``sample(seed_nodes=seed_nodes[i])``."""
        if seed_nodes is not None:
            if n is not None:
                raise TypeError("pass n= or seed_nodes=, not both: seed_nodes has a row per set.")
            return self._grow_given(seed_nodes)
        n, seed = check_int(n, "n"), check_seed(seed)
        return list(self._grow(torch.stack([self._random_seeds(seed + i) for i in range(n)])).unbind(0))

    def _grow_given(self, seed_nodes) -> list[Tensor]:
        """Check ``seed_nodes`` ``[n, C]``, grow each row's sets in class order, then put the
        blocks back in the order the row gave."""
        seed_nodes = torch.as_tensor(seed_nodes)
        num_classes = len(self.class_pools)
        if seed_nodes.dim() != 2 or seed_nodes.size(1) != num_classes or seed_nodes.size(0) < 1:
            raise ValueError(f"seed_nodes must hold one node per class ({num_classes}) for each set, "
                             f"shape [n, {num_classes}]; got shape {tuple(seed_nodes.shape)}.")
        flat = self._pool_nodes(seed_nodes, "seed_nodes").view(seed_nodes.shape)
        classes = self.data.y.view(-1).cpu()[flat]  # [n, C]
        in_order, order = torch.sort(classes, dim=1)
        wrong = (in_order != torch.arange(num_classes)).any(1)
        if wrong.any():
            row = int(wrong.nonzero()[0])
            raise ValueError(f"seed_nodes row {row} has classes {classes[row].tolist()}; each row needs "
                             f"one node of each class 0..{num_classes - 1}.")
        blocks = self._grow(torch.gather(flat, 1, order)).view(len(flat), num_classes, self.per_class)
        # Block j of the output is the block of the class of seed_nodes[:, j].
        blocks = torch.gather(blocks, 1, classes[:, :, None].expand(-1, -1, self.per_class))
        return list(blocks.flatten(1).unbind(0))

    def _grow(self, seeds: Tensor) -> Tensor:
        """``seeds`` ``[n, C]`` (column c a pool node of class c) -> sets ``[n, per_class * C]``."""
        chosen = []
        for c, members in enumerate(self.class_pools):
            uniq, inverse = torch.unique(seeds[:, c], return_inverse=True)
            dist = self._sq_distances(uniq, members)
            # Structurally twin nodes lie at the same distance up to rounding, which changes with
            # the solver's blocking: quantize to 1e-12 of the largest distance so that ties go to
            # the lower node id, whatever the rounding.
            dist = torch.round(dist / dist.abs().amax(1, keepdim=True).clamp_min(1e-300) * 1e12)
            dist[torch.arange(uniq.numel()), torch.searchsorted(members, uniq)] = -1.0  # the seed comes first
            order = torch.argsort(dist, dim=1, stable=True)[:, : self.per_class]
            chosen.append(members[order][inverse])  # [n, per_class]
        return torch.cat(chosen, dim=1)


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
