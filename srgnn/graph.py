"""The graph a model runs on: ``Graph``, one whole graph on one device with what srgnn computes
once per graph kept on it, and its two views, ``Subgraph`` and ``LayerRows``.

A model's forward takes ``(x, edge_index)`` as in PyG, where ``edge_index`` is a ``[2, E]``
tensor, a ``Graph`` or a view. Given a tensor, a model builds what it needs (the normalized
adjacency, GAT's edge structure) afresh at each call (``as_graph``). Given a ``Graph``, it asks
the graph, which builds each once and keeps it in ``Graph.cache``, a dict the user can read and
clear: the normalized adjacencies, GAT's ``AttentionCSR``, SGC's propagated features, DGI's
embeddings, PPR factorizations and KMM weights. Nothing is kept anywhere else: two graphs never
share an entry, and a graph whose tensors (or the ``Data`` it was built from) are modified in
place refuses to be used (``StaleGraphError``), so a stale entry is never served.

The views are what training cuts from a graph, all with the whole graph's degrees, so that a
message-passing layer run on them gives the whole graph's outputs where they are read:

- ``Subgraph``: the receptive field of the nodes a loss reads (``Graph.receptive_subgraph``),
  a sampled batch (``Subgraph.from_batch``), or several replicas' fields side by side;
- ``LayerRows``: the edges into the nodes whose output one layer computes (``Subgraph.layer``).

Two functions connect them to models and trainers, each the one place its job is done:
``model_inputs`` gives ``(x, edge_index)`` as a model's forward takes them, and ``graph_for``
turns what a user passes to a trainer into the ``Graph`` it runs on, validated once.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from ._validation import check_graph
from .kernels.attention import AttentionCSR
from .kernels.propagation import Adjacency, Norm, adjacency_pair, compact_csr, quiet_sparse

T = TypeVar("T")


class StaleGraphError(RuntimeError):
    """A ``Graph``'s tensors were modified in place after it was built."""


def prepared_data(data: Data) -> Data:
    """``data`` as srgnn's models read it: features ``x`` dense float32, detached from any autograd
    graph (float64 from numpy, half, bfloat16 and sparse layouts are converted), labels ``y``
    int64. ``data`` itself when it already is so; else a shallow copy with the converted tensors,
    so the user's object is never changed."""
    x, y = data.x, getattr(data, "y", None)
    new_x = x.to_dense() if x.layout != torch.strided else x
    new_x = (new_x.detach() if new_x.requires_grad else new_x).to(torch.float32)
    new_y = y if y is None or y.dtype == torch.long else y.long()
    if new_x is x and new_y is y:
        return data
    prepared = copy.copy(data)
    prepared.x = new_x
    if new_y is not None:
        prepared.y = new_y
    return prepared


def compact_features(x: Tensor, max_density: float = 0.3) -> Tensor:
    """Sparse bag-of-words features as CSR (first-layer SpMM and O(nnz) dropout), others as is."""
    if x.is_floating_point() and x.dim() == 2 and float((x != 0).float().mean()) < max_density:
        with quiet_sparse():
            return compact_csr(x.to_sparse_csr())
    return x


class _Edges:
    """Edges ``[2, E]`` among ``num_nodes`` nodes, what message passing derives from them kept in
    ``cache``. ``read``, ``full_degree`` and ``num_rows`` are those of ``adjacency_pair``: ``None``
    for a whole graph."""

    x: Tensor | None = None
    read: Tensor | None = None
    full_degree: Tensor | None = None
    num_rows: int | None = None

    def __init__(self, edge_index: Tensor, num_nodes: int):
        self.edge_index, self.num_nodes = edge_index, int(num_nodes)
        self.cache: dict[Any, Any] = {}

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    def cached(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()``, kept in ``cache`` under ``key``."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def clear(self) -> None:
        """Drop every cached result (they are rebuilt on the next use)."""
        self.cache.clear()

    def adjacency(self, norm: Norm = "sym", dtype: torch.dtype = torch.float32) -> Adjacency:
        """The normalized adjacency with its transpose (``srgnn.kernels.propagation.adjacency_pair``);
        on ``LayerRows``, the rows it reads, with the whole graph's degrees."""
        return self.cached(("adjacency", norm, dtype), lambda: adjacency_pair(
            self.edge_index, self.num_nodes, norm, dtype=dtype, read=self.read, full_degree=self.full_degree,
            num_rows=self.num_rows))

    def attention(self) -> AttentionCSR:
        """GAT's edge structure with self-loops (at the ``read`` nodes of ``LayerRows``)."""
        return self.cached("attention", lambda: AttentionCSR(self.edge_index, self.num_nodes, self.read))

    def in_degree(self) -> Tensor:
        """In-degrees ``[N]``, without self-loops, as ``normalized_adjacency`` counts them."""
        def count() -> Tensor:
            source, target = self.edge_index
            return torch.bincount(target[source != target], minlength=self.num_nodes)

        return self.cached("in_degree", count)

    def layer(self, layer: int, trimmed: bool = False) -> "_Edges":
        """The edges layer ``layer`` of a model reads: all of them, except on a ``Subgraph``."""
        return self


class Graph(_Edges):
    """A whole graph's ``edge_index`` ``[2, E]`` on one device, with optional model input ``x``
    ``[N, F]`` (dense or CSR), and a cache of what is derived from them.

    Args:
        edge_index: ``[2, E]``, PyG's source-to-target flow.
        num_nodes: N (default: ``x``'s rows, else the largest node id plus one).
        x: the features models read, if the graph owns them (``from_data`` sets it).
        data: the ``Data`` this graph reads (labels, masks, ``num_classes``): ``prepared_data``
            of the one it was built from.
        source: the ``Data`` it was built from, the user's (default ``data``); a graph whose
            source's ``x``, ``edge_index`` or ``y`` were modified in place or reassigned refuses
            to be used.

    Attributes: ``cache``, every derived result by key; ``clear()`` empties it.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int | None = None, *, x: Tensor | None = None,
                 data: Data | None = None, source: Data | None = None):
        if isinstance(edge_index, Data):
            raise TypeError("Graph(...) takes an edge_index [2, E]; a graph of a Data is built by "
                            "Graph.from_data(data) (or srgnn.graph_for(data)).")
        if num_nodes is None:
            num_nodes = x.size(0) if x is not None else int(edge_index.max()) + 1 if edge_index.numel() else 0
        super().__init__(edge_index, num_nodes)
        self.x, self.data = x, data
        self.source = data if source is None else source
        self._watched = [t for t in (edge_index, x) if t is not None]
        self._source_tensors = self._current_source_tensors()
        self._watched += [t for t in self._source_tensors + self._current_prepared_tensors() if t is not None]
        self._versions = self._current_versions()

    @classmethod
    def from_data(cls, data: Data, device: str | torch.device | None = None) -> "Graph":
        """The whole graph of ``data`` on ``device`` (default: where ``data`` is), checked once
        (features, and labels where it has them), with sparse features as CSR (``compact_features``)."""
        check_graph(data, require_features=True, require_labels=getattr(data, "y", None) is not None)
        device = torch.device(device) if device is not None else data.edge_index.device
        prepared = prepared_data(data)
        return cls(data.edge_index.to(device), data.num_nodes, x=compact_features(prepared.x).to(device),
                   data=prepared, source=data)

    def _current_versions(self) -> list[int]:
        return [t._version for t in self._watched]

    def _current_source_tensors(self) -> list[Tensor | None]:
        return [] if self.source is None else [getattr(self.source, k, None) for k in ("x", "edge_index", "y")]

    def _current_prepared_tensors(self) -> list[Tensor | None]:
        return [] if self.data is None or self.data is self.source else [self.data.x, self.data.y]

    def check_current(self) -> None:
        """Raise ``StaleGraphError`` if a tensor of this graph, or of the ``Data`` it was built
        from, was modified in place or reassigned (``data.x = ...``) since it was built."""
        reassigned = [name for name, now, then in zip(("x", "edge_index", "y"), self._current_source_tensors(),
                                                      self._source_tensors) if now is not then]
        if reassigned:
            raise StaleGraphError(f"data.{reassigned[0]} of the Data this Graph was built from was reassigned after "
                                  "the Graph was built, so what it holds is stale; build a new one "
                                  "(Graph.from_data(data)), or fit again on the changed Data.")
        if self._current_versions() != self._versions:
            raise StaleGraphError("A tensor of this Graph (edge_index, x, or the Data it was built from) was "
                                  "modified in place after the Graph was built, so what it cached may be stale; "
                                  "build a new one (Graph.from_data(data)).")

    def cached(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()``, kept in ``cache`` under ``key``, after checking the graph is current."""
        self.check_current()
        return super().cached(key, compute)

    def features(self, x: Tensor, key: Any, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, a result of this graph and features ``x`` (SGC's propagated features,
        DGI's embeddings): cached when ``x`` is this graph's own ``x``, else computed afresh."""
        return self.cached(("features", key), compute) if x is self.x else compute()

    def on(self, device: str | torch.device) -> "Graph":
        """This graph on ``device``: itself, or a copy kept in ``cache`` (with a cache of its own)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return self.cached(("on", str(device)), lambda: self.to(device))

    def relabelled(self, data: Data) -> "Graph":
        """This graph reading ``data`` instead: the same nodes, edges and features, other labels
        (self-training's pseudo-labels). What the cache holds comes from the structure and the
        features, or is keyed by the labels it read (KMM, ReNode), so the new graph starts with
        it; a copy on another device is relabelled in turn."""
        graph = Graph(self.edge_index, self.num_nodes, x=self.x, data=data)
        for key, value in self.cache.items():
            graph.cache[key] = value.relabelled(data) if isinstance(value, Graph) else value
        return graph

    def to(self, device: str | torch.device) -> "Graph":
        """A copy on ``device``, with an empty cache."""
        return Graph(self.edge_index.to(device), self.num_nodes, x=None if self.x is None else self.x.to(device),
                     data=self.data, source=self.source)

    def hop_distances(self, sources: Tensor, max_hops: int) -> Tensor:
        """``[N]`` hops from each node to the nearest of ``sources`` (``[S]`` node indices), and
        ``max_hops + 1`` for nodes farther than ``max_hops``."""
        sources = torch.as_tensor(sources, dtype=torch.long, device=self.device).view(-1)
        if sources.numel() == 0 or int(sources.min()) < 0 or int(sources.max()) >= self.num_nodes:
            raise ValueError(f"hop_distances: sources must be one or more node indices in [0, {self.num_nodes}).")
        if max_hops < 0:
            raise ValueError(f"hop_distances: max_hops must be >= 0; got {max_hops}.")
        return _hop_distances(self.edge_index, self.num_nodes, sources, max_hops)

    def receptive_subgraph(self, targets: Tensor | Sequence[Tensor],
                           hops: int | Sequence[int]) -> tuple[Tensor, "Subgraph"]:
        """The ``hops``-hop neighbourhood of ``targets``: its nodes ``subset`` ``[M]`` (sorted) and
        a ``Subgraph`` of the edges among them, relabelled to ``0..M-1``. ``targets`` may be several
        groups with one hop count each (the union of their neighbourhoods).

        The subgraph keeps the whole graph's degrees (``full_degree``), so a ``hops``-layer
        message-passing model (GCN, GraphSAGE, GAT) run on it gives exactly the whole graph's
        outputs at the targets: every node within ``hops - 1`` of a target keeps all its
        neighbours. Its ``depth`` ``[M]`` is how many layers' outputs are needed at each node,
        the largest ``hops - distance`` over the groups; layer l's output is read only at nodes
        of depth >= l, so a model may skip the rest (``Subgraph.layer``): on PubMed, 60 localized
        nodes' 2-hop subgraph has 21,034 edges, of which 5,867 end at depth >= 1 and 281 at depth 2.
        """
        if isinstance(targets, Tensor):
            targets, hops = [targets], [hops]
        if len(targets) != len(hops):
            raise ValueError(f"Pass one hop count per target group; got {len(targets)} groups and {len(hops)} counts.")
        # depth = hops - distance, largest over the groups; -1 outside every neighbourhood.
        depth = torch.stack([group_hops - _hop_distances(self.edge_index, self.num_nodes, group, group_hops)
                             for group, group_hops in zip(targets, hops)]).amax(0)
        subset = (depth >= 0).nonzero().view(-1)
        edge_index, _ = subgraph(subset, self.edge_index, relabel_nodes=True, num_nodes=self.num_nodes)
        return subset, Subgraph(edge_index, subset.numel(), full_degree=self.in_degree()[subset], depth=depth[subset])


class Subgraph(_Edges):
    """A view of a graph: the edges ``[2, E']`` among ``num_nodes`` of its nodes, relabelled,
    each node keeping its in-degree in the whole graph, and how many layers' outputs are read
    at it. A receptive field (``Graph.receptive_subgraph``), a sampled batch (``from_batch``) or
    several replicas' fields side by side.

    Args:
        edge_index: ``[2, E']`` among the view's nodes ``0..M-1``.
        num_nodes: M.
        full_degree: each node's in-degree in the whole graph ``[M]``.
        depth: how many layers' outputs are read at each node ``[M]``.
        x: the view's rows of the features ``[M, F]``, if it carries them.
        depth_sorted: the nodes are in order of non-increasing ``depth`` (a sampled batch: the
            seeds, then each hop's new nodes), so the nodes a layer reads are a prefix of the
            rows and ``layer(l, trimmed=True)`` can drop the rest.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, *, full_degree: Tensor, depth: Tensor,
                 x: Tensor | None = None, depth_sorted: bool = False):
        super().__init__(edge_index, num_nodes)
        self.full_degree, self.depth, self.x, self.depth_sorted = full_degree, depth, x, depth_sorted

    @classmethod
    def from_batch(cls, batch: Data, in_degree: Tensor, x: Tensor, device: torch.device) -> "Subgraph":
        """A sampled batch of PyG's ``NeighborLoader`` on ``device``, whose layer-l output is read at
        the nodes within ``hops - l`` hops of the seeds, normalized with the whole graph's
        in-degrees ``in_degree`` ``[N]``: with full neighbourhoods a model's outputs at the seeds
        equal its whole-graph outputs there. ``x`` is the batch's rows of the features. Its nodes
        come seeds first, then each hop's new nodes, so it is ``depth_sorted``."""
        hops = len(batch.num_sampled_nodes) - 1
        depth = torch.repeat_interleave(torch.arange(hops, -1, -1), torch.tensor(batch.num_sampled_nodes))
        return cls(batch.edge_index.to(device), batch.num_nodes, x=x, full_degree=in_degree[batch.n_id],
                   depth=depth, depth_sorted=True)

    def layer(self, layer: int, trimmed: bool = False) -> "LayerRows":
        """The edges into the nodes whose layer-``layer`` output is read (``depth >= layer``). A
        message-passing layer run on them gives exact outputs at those nodes, which keep all
        their neighbours.

        ``trimmed=True`` on a ``depth_sorted`` view: the layer's adjacency is ``[R_l, R_{l-1}]``,
        the ``R_l`` nodes it reads by the ``R_{l-1}`` the layer below reads, so a model whose
        layer maps ``[R_{l-1}, F]`` rows to ``[R_l, H]`` computes no row that is never read (on
        a batch of 1,024 seeds at fan-outs 10, 10, a fifth of the first layer's rows). Elsewhere
        it is ``layer(l)``."""
        trimmed = trimmed and self.depth_sorted

        def select() -> LayerRows:
            read = self.depth.to(self.device) >= layer
            if not trimmed:
                return LayerRows(self.edge_index[:, read[self.edge_index[1]]], self.num_nodes,
                                 read=read.nonzero().view(-1), full_degree=self.full_degree)
            rows, cols = int(read.sum()), int((self.depth >= layer - 1).sum())
            # Depth-sorted, an edge into a read node comes from a node the layer below reads.
            edges = self.edge_index[:, self.edge_index[1] < rows]
            return LayerRows(edges, cols, read=torch.arange(rows, device=self.device),
                             full_degree=self.full_degree[:cols], num_rows=rows)

        return self.cached(("layer", layer, trimmed), select)


class LayerRows(_Edges):
    """The edges ``[2, E_l]`` into the nodes ``read`` ``[R]`` whose output one layer computes, of a
    ``Subgraph`` of ``num_nodes`` nodes with the whole graph's in-degrees ``full_degree``; with
    ``num_rows``, the adjacency keeps only its first ``num_rows`` rows (``Subgraph.layer``)."""

    def __init__(self, edge_index: Tensor, num_nodes: int, *, read: Tensor, full_degree: Tensor,
                 num_rows: int | None = None):
        super().__init__(edge_index, num_nodes)
        self.read, self.full_degree, self.num_rows = read, full_degree, num_rows


def as_graph(edge_index: Tensor | _Edges, x: Tensor) -> _Edges:
    """What a model's forward reads its edges from: ``edge_index`` itself if it is a ``Graph`` or a
    view, else a fresh ``Graph`` around the tensor with ``x``'s rows as nodes (what it builds is
    dropped after the call)."""
    if isinstance(edge_index, _Edges):
        return edge_index
    return Graph(edge_index.to(x.device), x.size(0))


def model_inputs(model, x: Tensor, edge_index: Tensor | _Edges | Any,
                 device: torch.device | str | None = None) -> tuple[Tensor, Tensor | _Edges | Any]:
    """``(x, edge_index)`` as ``model``'s forward takes them, moved to ``device`` if given (a
    ``Graph`` by ``Graph.on``, keeping its cache). srgnn's models declare ``accepts_graph = True``
    and take features as given (CSR where sparse) and a ``Graph``, a view, APPNP's ``TargetRows``
    or ``None`` as is; any other model, yours written on PyG layers, gets dense features and the
    ``[2, E]`` tensor (a graph's own features are densified once, kept in its cache)."""
    if device is not None:
        own_features = isinstance(edge_index, Graph) and x is edge_index.x
        if isinstance(edge_index, (Graph, Tensor)):
            edge_index = edge_index.on(device) if isinstance(edge_index, Graph) else edge_index.to(device)
        x = edge_index.x if own_features else x.to(device)
    if getattr(model, "accepts_graph", False):
        return x, edge_index
    if isinstance(edge_index, _Edges):
        if x is edge_index.x and x.is_sparse_csr:
            x = edge_index.cached("dense_x", x.to_dense)
        edge_index = edge_index.edge_index
    return (x.to_dense() if x.is_sparse_csr else x), edge_index


def graph_for(data: Data | Graph, device: torch.device | None = None, fitted: Graph | None = None) -> Graph:
    """The ``Graph`` a trainer runs on, for what a user passes: ``fitted`` (the one it trained on)
    when ``data`` is it or the ``Data`` it was built from, so that what it computed is reused; a
    ``Graph`` on ``device`` (default: where it is; a copy kept in its cache if it lives elsewhere);
    or one built from a ``Data`` (``Graph.from_data``, which validates it). Build a ``Graph`` once
    and pass it to every trainer on a graph, so its adjacency, SGC's features, DGI's embeddings and
    PPR factorizations are computed once for all of them."""
    if fitted is not None and (data is fitted or data is fitted.source):
        fitted.check_current()
        return fitted
    if isinstance(data, Graph):
        if data.data is None:
            raise ValueError("This Graph has no labels; build it with Graph.from_data(data), which keeps the Data.")
        data.check_current()
        return data if device is None else data.on(device)
    return Graph.from_data(data, device)


def _hop_distances(edge_index: Tensor, num_nodes: int, sources: Tensor, max_hops: int) -> Tensor:
    """Hops from each node to the nearest of ``sources`` along ``edge_index`` (source to
    target, as messages flow), ``[N]``; ``max_hops + 1`` beyond ``max_hops``. One sweep over
    the edges per hop (PyG's ``k_hop_subgraph`` gives the nodes within K hops, not their
    distances; calling it for every K took 160 ms for APPNP's 10 hops on PubMed)."""
    row, col = edge_index
    distance = torch.full((num_nodes,), max_hops + 1, dtype=torch.long, device=edge_index.device)
    distance[sources] = 0
    frontier = distance == 0
    for hop in range(1, max_hops + 1):
        reached = torch.zeros_like(frontier)
        reached[row[frontier[col]]] = True
        frontier = reached & (distance > hop)
        distance[frontier] = hop
    return distance
