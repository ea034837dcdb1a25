r"""Sparse propagation: the normalized adjacency, built once per graph, and the operators on it.

All operators run on torch sparse CSR, on the device of their input. Shapes: ``N`` nodes,
``F`` feature columns, ``S`` source nodes.

* ``normalized_adjacency``: :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` (``"sym"``) or
  :math:`D^{-1}(A + I)` (``"row"``), cached per graph, normalization and device.
* ``sgc_features``: :math:`\hat A^K X` (Wu et al., 2019), computed once and reused.
* ``appnp_propagate``: :math:`H^{k+1} = (1 - \alpha)\hat A H^k + \alpha H^0`, K steps
  (Gasteiger et al., 2019).
* ``TargetRows`` / ``appnp_rows``: the rows of APPNP's operator at the few nodes a loss
  reads, so training multiplies by a ``[T, N]`` matrix instead of propagating K times.
* ``ppr``: exact personalized PageRank columns
  :math:`\Pi E_S = \alpha (I - (1 - \alpha)\hat A)^{-1} E_S`.
* ``AttentionCSR`` / ``edge_aggregate``: sums of per-edge, per-head weighted rows at each
  node (GAT's attention heads), differentiable in the weights and the rows.
* ``receptive_subgraph``: the nodes a K-layer model's outputs at some target nodes depend
  on, with the full graph's degrees, so training can skip the rest of the graph;
  ``layer_edges``: the part of it each layer needs.
"""
from __future__ import annotations

import contextlib
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Literal, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor
from torch_geometric.utils import subgraph

from .dissection import Dissection, inverse_sq_column_norms, plan

Norm = Literal["sym", "row", "mean"]
_ADJ_CACHE: dict[tuple, Tensor] = {}
_LU_CACHE: dict[tuple, object] = {}  # SuperLU factors and their dissection plans
_GRAPH_CACHES: dict[tuple, dict] = {}


@contextlib.contextmanager
def quiet_sparse():
    """Silence torch's "sparse CSR support is in beta" warning, raised on every construction."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        yield


def compact_csr(csr: Tensor) -> Tensor:
    """``csr`` with 32-bit indices when its sizes allow: the CPU's sparse kernels (MKL) take
    32-bit indices, and torch converts 64-bit ones on every product (on PubMed's features,
    a 2 ms copy per SpMM, as long as the SpMM itself)."""
    if csr.crow_indices().dtype == torch.int32 or max(*csr.shape, csr.values().numel()) >= 2 ** 31:
        return csr
    with quiet_sparse():
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape)


def _graph_key(edge_index: Tensor, num_nodes: int) -> tuple:
    # Keyed on the tensor's identity and version: an in-place edit of edge_index misses the cache.
    return (id(edge_index), edge_index._version, num_nodes)


def _forget(key: tuple) -> None:
    for cache in (_ADJ_CACHE, _LU_CACHE, _GRAPH_CACHES):
        for k in [k for k in cache if k[: len(key)] == key]:
            del cache[k]


def graph_cache(edge_index: Tensor, num_nodes: int) -> dict:
    """A dict for results derived from one graph (e.g. KMM weights of a training set), emptied
    when ``edge_index`` is freed and missed after an in-place edit of it."""
    key = _graph_key(edge_index, num_nodes)
    if key not in _GRAPH_CACHES:
        _GRAPH_CACHES[key] = {}
        weakref.finalize(edge_index, _forget, key[:1])
    return _GRAPH_CACHES[key]


def cached_for_input(edge_index: Tensor, x: Tensor, key: tuple, compute: Callable[[], Tensor]) -> Tensor:
    """``compute()`` (a label-free result of the graph and its features ``x``, e.g. SGC's
    propagated features or DGI's embeddings) cached in ``graph_cache`` under ``key`` for this
    very ``x``: the entry keeps a weak reference to ``x`` and its version, so another or an
    edited ``x`` computes again, and it is freed with the graph."""
    cache = graph_cache(edge_index, x.size(0))
    entry = cache.get(key)
    if entry is not None and entry[0]() is x and entry[1] == x._version:
        return entry[2]
    result = compute()
    cache[key] = (weakref.ref(x), x._version, result)
    return result


def normalized_adjacency(edge_index: Tensor, num_nodes: int, norm: Norm = "sym",
                         device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalized adjacency as a CSR tensor ``[N, N]``: ``"sym"`` and ``"row"`` add
    self-loops (GCN); ``"mean"`` is :math:`D^{-1}A` without them (GraphSAGE's mean over
    neighbours; an isolated node's row is zero). As in PyG's source-to-target flow, row ``i``
    holds the edges into ``i`` (``edge_index[1] == i``) and degrees are in-degrees, so
    ``adj @ x`` aggregates each node's in-neighbours.

    Built once per (graph, norm, device, dtype) and cached for the lifetime of ``edge_index``;
    self-loops already present in ``edge_index`` are replaced, not doubled. Edges from
    ``layer_edges`` give the rows at the nodes whose layer output is read (``.read``) and zero
    rows elsewhere, with the whole graph's values there.
    """
    device = torch.device(device) if device is not None else edge_index.device
    key = _graph_key(edge_index, num_nodes) + (norm, str(device), dtype)
    cached = _ADJ_CACHE.get(key)
    if cached is not None:
        return cached
    if norm not in ("sym", "row", "mean"):
        raise ValueError(f"norm={norm!r} is not supported; expected 'sym', 'row' or 'mean'.")
    col, row = edge_index.to(device)  # row: the target, which aggregates
    keep = row != col
    row, col = row[keep], col[keep]
    read = getattr(edge_index, "read", None)
    if norm != "mean":
        loops = torch.arange(num_nodes, device=device) if read is None else read.to(device)
        row, col = torch.cat([row, loops]), torch.cat([col, loops])
    deg = torch.zeros(num_nodes, device=device, dtype=dtype).index_add_(0, row, torch.ones_like(row, dtype=dtype))
    full_degree = getattr(edge_index, "full_degree", None)
    if full_degree is not None:  # a receptive_subgraph: normalize with the whole graph's degrees
        deg = full_degree.to(device, dtype) + (norm != "mean")
    if norm == "sym":
        inv_sqrt = deg.rsqrt()
        value = inv_sqrt[row] * inv_sqrt[col]
    else:
        value = deg.clamp_min(1).reciprocal()[row]
    with quiet_sparse():
        adj = torch.sparse_coo_tensor(torch.stack([row, col]), value, (num_nodes, num_nodes)).coalesce()
        adj = compact_csr(adj.to_sparse_csr())
        # Kept for spmm's backward, built once: an undirected graph's "sym" is its own transpose.
        transposed = compact_csr(adj.t().to_sparse_csr())
        same = (torch.equal(transposed.crow_indices(), adj.crow_indices())
                and torch.equal(transposed.col_indices(), adj.col_indices())
                and torch.equal(transposed.values(), adj.values()))
        adj.transposed = adj if same else transposed
    _ADJ_CACHE[key] = adj
    weakref.finalize(edge_index, _forget, _graph_key(edge_index, num_nodes)[:1])
    return adj


def csr_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for a sparse CSR ``a`` ``[N, M]`` and a dense ``b`` ``[M, K]`` -> ``[N, K]``,
    for use outside autograd (in a custom ``Function`` or on inputs that need no gradient).

    On the CPU, torch's ``a @ b`` zero-fills a result, then copies it into the buffer that MKL
    overwrites. ``addmm`` into an empty buffer with ``beta=0`` skips both passes and gives the
    same values (PubMed's features times ``[500, 32]``: 1.25 against 1.55 ms; a 3,209-node
    receptive field's adjacency times ``[3209, 32]``: 0.05 against 0.07 ms)."""
    if a.device.type != "cpu" or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
        return a @ b
    out = torch.empty(a.size(0), b.size(1), dtype=b.dtype)
    return torch.addmm(out, a, b, beta=0, out=out)


class _SpMM(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by a transpose built once, not per call."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj_t = adj.transposed
        return csr_matmul(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, csr_matmul(ctx.adj_t, grad)


def spmm(adj: Tensor, x: Tensor) -> Tensor:
    """Sparse ``[N, N]`` times dense ``[N, F]``; differentiable in ``x``. Adjacencies from
    ``normalized_adjacency`` carry their transpose, which makes the backward one more SpMM
    instead of torch's generic sparse backward (a sort per call)."""
    if hasattr(adj, "transposed") and x.requires_grad:
        return _SpMM.apply(adj, x)
    return csr_matmul(adj, x) if adj.layout == torch.sparse_csr else adj @ x


def sgc_features(adj: Tensor, x: Tensor, k: int = 2) -> Tensor:
    r""":math:`\hat A^K X`, shape ``[N, F]``. Compute once per graph and reuse across runs."""
    for _ in range(k):
        x = spmm(adj, x)
    return x


def appnp_propagate(adj: Tensor, h: Tensor, alpha: float = 0.1, k: int = 10) -> Tensor:
    r"""K steps of :math:`H \leftarrow (1 - \alpha)\hat A H + \alpha H^0`; ``[N, C] -> [N, C]``."""
    out = h
    for _ in range(k):
        out = (1.0 - alpha) * spmm(adj, out) + alpha * h
    return out


def appnp_rows(adj: Tensor, targets: Tensor, alpha: float = 0.1, k: int = 10) -> Tensor:
    r"""Rows ``targets`` of APPNP's K-step operator :math:`P`, dense ``[T, N]``, so that
    ``appnp_propagate(adj, h)[targets] == appnp_rows(adj, targets) @ h``.

    :math:`P` is a polynomial in :math:`\hat A`, so :math:`P^\top E_T` is the same K steps on
    :math:`\hat A^\top` (``adj.transposed``, which is ``adj`` for the symmetric norm) started
    from the targets' indicator columns: K SpMMs of T columns, once per training set."""
    indicator = torch.zeros(adj.size(0), targets.numel(), dtype=adj.dtype, device=adj.device)
    indicator[targets, torch.arange(targets.numel(), device=adj.device)] = 1.0
    return appnp_propagate(adj.transposed, indicator, alpha, k).T.contiguous()


class TargetRows:
    """The rows ``rows`` ``[T, N]`` of a linear propagation at nodes ``targets`` ``[T]``.

    A model that propagates its per-node predictions with a fixed operator (APPNP) takes this
    in place of ``edge_index`` while training: ``apply`` gives the propagated logits at the
    targets, the only rows the loss reads. On PubMed, 60 training nodes' rows cost one
    ``[60, N] @ [N, C]`` product per step instead of 10 SpMMs forward and 10 backward.
    """

    def __init__(self, rows: Tensor, targets: Tensor):
        self.rows, self.targets = rows, targets

    def apply(self, h: Tensor) -> Tensor:
        """``[N, C]`` -> ``[N, C]``: the propagated rows at the targets, zero elsewhere."""
        return _RowsAtTargets.apply(self.rows, self.targets, h)


class _RowsAtTargets(torch.autograd.Function):
    """``rows @ h`` ``[T, C]`` placed at ``targets`` in an ``[N, C]`` zero matrix; the backward
    multiplies as :math:`(G^\top P)^\top`, the same sums as :math:`P^\top G` and twice as
    fast on the CPU (PubMed, ``[60, 19717]`` rows: 0.25 against 0.56 ms)."""

    @staticmethod
    def forward(ctx, rows: Tensor, targets: Tensor, h: Tensor) -> Tensor:
        ctx.save_for_backward(rows, targets)
        return h.new_zeros(h.shape).index_copy_(0, targets, rows @ h)

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, targets = ctx.saved_tensors
        return None, None, (grad.index_select(0, targets).T @ rows).T.contiguous()


class AttentionCSR:
    """A graph's edges plus one self-loop per node (existing loops replaced, as PyG's
    ``GATConv`` does), sorted by destination, with the two ``[N, E]`` incidence matrices that
    sum per-edge rows at their destinations and at their sources. Built once per graph and
    device (``of``). Edges from ``layer_edges`` get self-loops only at the nodes whose output
    is read (``edge_index.read``): an unread node's loop is all of its row (on PubMed's 2-hop
    field, 3,209 loops against 281 edges into the second layer's 60 read nodes).

    Attributes: ``src``, ``dst`` ``[E]`` and ``crow`` ``[N + 1]`` (row pointers by destination).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int):
        n, device = num_nodes, edge_index.device
        src, dst = edge_index
        keep = src != dst
        read = getattr(edge_index, "read", None)
        loops = torch.arange(n, device=device) if read is None else read.to(device)
        src, dst = torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])
        order = torch.argsort(dst * n + src)
        self.src, self.dst = src[order], dst[order]
        self.num_nodes = n
        self.crow = row_pointers(self.dst, n)
        edges = self.src.numel()
        index_type = torch.int32 if max(n, edges) < 2 ** 31 else torch.int64
        by_source = torch.argsort(self.src, stable=True)
        # (row pointers, edge of each entry): edges are already in destination order
        self._into_dst = (self.crow.to(index_type), torch.arange(edges, device=device, dtype=index_type))
        self._into_src = (row_pointers(self.src, n).to(index_type), by_source.to(index_type))
        self._incidence: dict[tuple, Tensor] = {}

    @classmethod
    def of(cls, edge_index: Tensor, num_nodes: int) -> "AttentionCSR":
        cache = graph_cache(edge_index, num_nodes)
        key = ("attention_csr", str(edge_index.device))
        if key not in cache:
            cache[key] = cls(edge_index, num_nodes)
        return cache[key]

    def incidence(self, at: Literal["dst", "src"], dtype: torch.dtype) -> Tensor:
        """``[N, E]`` CSR of ones: row i holds the edges into i (``"dst"``) or out of i (``"src"``)."""
        key = (at, dtype)
        if key not in self._incidence:
            crow, col = self._into_dst if at == "dst" else self._into_src
            with quiet_sparse():
                self._incidence[key] = torch.sparse_csr_tensor(
                    crow, col, torch.ones(col.numel(), dtype=dtype, device=col.device), (self.num_nodes, col.numel()))
        return self._incidence[key]


def row_pointers(rows: Tensor, num_rows: int) -> Tensor:
    """CSR row pointers ``[num_rows + 1]`` of entries with row indices ``rows`` (in any order)."""
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=num_rows).cumsum(0)
    return crow


def transpose_plan(rows: Tensor, cols: Tensor, num_rows: int, num_cols: int) -> tuple[Tensor, Tensor, Tensor]:
    """The transpose of a sparse matrix with entries at ``(rows, cols)`` ``[E]``, in CSR
    order: its row pointers ``[num_cols + 1]``, column indices ``[E]`` and the permutation
    ``[E]`` that takes the entries' values to it (``values[perm]``). Ties keep their order."""
    perm = torch.argsort(cols.long() * num_rows + rows.long(), stable=True)
    return row_pointers(cols, num_cols), rows[perm], perm


class _EdgeAggregate(torch.autograd.Function):
    """Per head, the attention-weighted sum of the source rows over each node's in-edges.

    Every step is a gather, an elementwise product over contiguous ``[E, heads C]`` rows, a
    small matmul or an SpMM with ``heads C`` columns. Spreading ``alpha`` over each head's
    channels and summing the channels back are matmuls with a 0/1 ``[heads, heads C]``
    matrix: torch broadcasts and reduces over a last dimension of 4 several times slower
    (PubMed GAT layer 1, 6k edges, 8 heads of 4: 105 and 158 us against about 20 us each)."""

    @staticmethod
    def forward(ctx, structure: AttentionCSR, alpha: Tensor, x: Tensor) -> Tensor:
        heads = alpha.size(1)
        spread = torch.eye(heads, dtype=x.dtype, device=x.device).repeat_interleave(x.size(1) // heads, dim=1)
        messages = x.index_select(0, structure.src)  # [E, heads C]
        weights = alpha @ spread  # [E, heads C]: alpha[e, h] on each of head h's channels
        ctx.structure = structure
        ctx.save_for_backward(messages, weights, spread)
        return csr_matmul(structure.incidence("dst", x.dtype), messages * weights)

    @staticmethod
    def backward(ctx, grad: Tensor):
        messages, weights, spread = ctx.saved_tensors
        structure = ctx.structure
        grad_rows = grad.contiguous().index_select(0, structure.dst)  # d out[dst_e] for each edge e
        grad_alpha = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_alpha = (grad_rows * messages) @ spread.T
        if ctx.needs_input_grad[2]:
            grad_x = csr_matmul(structure.incidence("src", grad.dtype), grad_rows * weights)
        return None, grad_alpha, grad_x


def edge_aggregate(structure: AttentionCSR, alpha: Tensor, x: Tensor) -> Tensor:
    r""":math:`out_i^{(h)} = \sum_{e = (j, i)} \alpha_e^{(h)} x_j^{(h)}` for ``alpha``
    ``[E, heads]`` (in ``structure``'s edge order) and ``x`` ``[N, heads C]`` (head-major
    columns) -> ``[N, heads C]``; differentiable in ``alpha`` and ``x``."""
    return _EdgeAggregate.apply(structure, alpha, x)


def receptive_subgraph(edge_index: Tensor, num_nodes: int, targets: Tensor | Sequence[Tensor],
                       hops: int | Sequence[int]) -> tuple[Tensor, Tensor]:
    """The ``hops``-hop neighbourhood of ``targets``: its nodes ``subset`` ``[M]`` (sorted) and
    the edges among them, relabelled to ``0..M-1`` (``[2, E']``). ``targets`` may be several
    groups with one hop count each (the union of their neighbourhoods).

    The returned ``edge_index`` carries the full graph's degrees (``.full_degree``), which
    ``normalized_adjacency`` uses, so a ``hops``-layer message-passing model (GCN, GraphSAGE,
    GAT) run on the subgraph gives exactly the full graph's outputs at the targets: every node
    within ``hops - 1`` of a target keeps all its neighbours. Training reads only those outputs.

    It also carries ``.depth`` ``[M]``: how many layers' outputs are needed at each node, the
    largest ``hops - distance`` over the groups. Layer l's output is read only at nodes of depth
    >= l, so a model may skip the rest (``layer_edges``): on PubMed, 60 localized nodes' 2-hop
    subgraph has 21,034 edges, of which 5,867 end at depth >= 1 and 281 at depth 2.
    """
    if isinstance(targets, Tensor):
        targets, hops = [targets], [hops]
    if len(targets) != len(hops):
        raise ValueError(f"Pass one hop count per target group; got {len(targets)} groups and {len(hops)} counts.")
    # depth = hops - distance, largest over the groups; -1 outside every neighbourhood.
    depth = torch.stack([group_hops - _hop_distances(edge_index, num_nodes, group, group_hops)
                         for group, group_hops in zip(targets, hops)]).amax(0)
    subset = (depth >= 0).nonzero().view(-1)
    sub_edge_index, _ = subgraph(subset, edge_index, relabel_nodes=True, num_nodes=num_nodes)
    cache = graph_cache(edge_index, num_nodes)  # the degrees are the same for every target set
    if "degree" not in cache:  # in-degrees, without self-loops, as normalized_adjacency counts them
        source, target = edge_index
        cache["degree"] = torch.bincount(target[source != target], minlength=num_nodes)
    sub_edge_index.full_degree = cache["degree"][subset]
    sub_edge_index.depth = depth[subset]
    return subset, sub_edge_index


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


def layer_edges(edge_index: Tensor, layer: int) -> Tensor:
    """The edges of a ``receptive_subgraph`` into the nodes whose layer-``layer`` output is
    read (target ``edge_index[1]``, PyG's source-to-target flow, of ``depth >= layer``), cached
    per subgraph; ``edge_index`` itself for another graph. A message-passing layer run on them
    gives exact outputs at those nodes, which keep all their neighbours. The result carries
    those nodes as ``.read`` ``[R]`` (sorted) and the whole graph's degrees (``.full_degree``),
    so ``normalized_adjacency`` of it has that layer's rows with the whole graph's values."""
    depth = getattr(edge_index, "depth", None)
    if depth is None:
        return edge_index
    cache = graph_cache(edge_index, depth.numel())
    key = ("layer_edges", layer)
    if key not in cache:
        read = depth.to(edge_index.device) >= layer
        edges = edge_index[:, read[edge_index[1]]]
        edges.read, edges.full_degree = read.nonzero().view(-1), edge_index.full_degree
        cache[key] = edges
    return cache[key]


def _scipy_adjacency(adj: Tensor) -> sp.csr_matrix:
    adj = adj.detach().cpu()
    return sp.csr_matrix((adj.values().double().numpy(), adj.col_indices().numpy(),
                          adj.crow_indices().numpy()), shape=adj.shape)


def _system(adj: Tensor, teleport: float) -> sp.csc_matrix:
    r""":math:`I - (1 - \alpha)\hat A` as a scipy CSC matrix, float64."""
    return (sp.identity(adj.shape[0], format="csc") - (1.0 - teleport) * _scipy_adjacency(adj)).tocsc()


def _lu(adj: Tensor, teleport: float, key: tuple | None) -> spla.SuperLU:
    cache_key = None if key is None else key + ("lu", teleport)
    if cache_key is not None and cache_key in _LU_CACHE:
        return _LU_CACHE[cache_key]
    # The system is symmetric for "sym": a symmetric ordering keeps the fill-in small.
    lu = spla.splu(_system(adj, teleport), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    if cache_key is not None:
        _LU_CACHE[cache_key] = lu
    return lu


def _dissection(adj: Tensor, teleport: float, key: tuple | None, lu: spla.SuperLU) -> Dissection | None:
    """``dissection.plan`` on the LU's elimination order, cached beside the LU."""
    cache_key = None if key is None else key + ("dissection", teleport)
    if cache_key is not None and cache_key in _LU_CACHE:
        return _LU_CACHE[cache_key]
    system = _system(adj, teleport)
    # The dissection's algebra needs a symmetric system ("sym" normalization, not "row").
    symmetric = abs(system - system.T).max() <= 1e-12
    # SuperLU's perm_c maps a node to its place in the elimination order.
    found = plan(system, np.argsort(lu.perm_c)) if symmetric else None
    if cache_key is not None:
        _LU_CACHE[cache_key] = found
    return found


#: Right-hand sides per SuperLU solve. Its multi-column solve slows down per column as the
#: block widens (PubMed: 1.0 ms a column at 16 columns, 2.2 ms at 1,024), so wide systems
#: are solved in narrow blocks, spread over torch's intra-op threads (SuperLU releases the
#: GIL), with BLAS single-threaded inside each: its threads only add overhead on blocks this
#: small (2.3x slower on PubMed with two).
LU_BLOCK = 16


def _lu_blocks(lu: spla.SuperLU, num_cols: int, rhs_block: Callable[[int, int], np.ndarray],
               take: Callable[[int, int, np.ndarray], None]) -> None:
    """Solve ``lu`` for ``num_cols`` right-hand sides in blocks of ``LU_BLOCK``:
    ``rhs_block(start, stop)`` gives a block ``[N, stop - start]`` and ``take(start, stop,
    solution)`` receives its solution, so no ``[N, num_cols]`` array need exist."""
    def solve(start: int) -> None:
        stop = min(start + LU_BLOCK, num_cols)
        take(start, stop, lu.solve(np.ascontiguousarray(rhs_block(start, stop))))

    starts = range(0, num_cols, LU_BLOCK)
    workers = min(torch.get_num_threads(), len(starts))
    with threadpool_limits(1, user_api="blas"):
        if workers <= 1:
            for start in starts:
                solve(start)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(solve, starts))


def _unit_blocks(n: int, sources: Tensor) -> tuple[int, Callable[[int, int], np.ndarray]]:
    """``_lu_blocks``'s inputs for the indicator columns of ``sources``: their count and a
    block maker, so the ``[N, S]`` indicator matrix is never built."""
    rows = torch.as_tensor(sources).long().view(-1).cpu().numpy()

    def block(start: int, stop: int) -> np.ndarray:
        out = np.zeros((n, stop - start))
        out[rows[start:stop], np.arange(stop - start)] = 1.0
        return out

    return rows.size, block


def _cg(adj: Tensor, rhs: Tensor, teleport: float, tol: float, max_iter: int) -> Tensor:
    """Column-wise conjugate gradients on the SPD system ``(I - (1 - a)A) X = rhs``."""
    def apply(v: Tensor) -> Tensor:
        return v - (1.0 - teleport) * spmm(adj, v)

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = (r * r).sum(0)
    stop = (tol * rhs.norm(dim=0)) ** 2
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        ap = apply(p)
        step = rr / (p * ap).sum(0).clamp_min(1e-300)
        x += step * p
        r -= step * ap
        rr_new = (r * r).sum(0)
        p = r + (rr_new / rr.clamp_min(1e-300)) * p
        rr = rr_new
    return x


def _direct_by_default(adj: Tensor) -> bool:
    """``ppr``'s ``"auto"``: factor graphs of up to 100,000 nodes on the CPU, else CG."""
    return adj.shape[0] <= 100_000 and adj.device.type == "cpu"


def ppr(adj: Tensor, sources: Tensor | None = None, teleport: float = 0.01, *,
        rhs: Tensor | None = None, solver: Literal["auto", "direct", "cg"] = "auto",
        tol: float = 1e-8, max_iter: int = 2000, cache_key: tuple | None = None) -> Tensor:
    r"""Exact personalized PageRank columns :math:`\alpha (I - (1-\alpha)\hat A)^{-1} B`.

    ``B`` is the indicator of ``sources`` (``[S]`` node ids) or the dense ``rhs`` ``[N, S]``.
    For the symmetric :math:`\hat A` the PPR matrix is symmetric, so column ``s`` is also
    node ``s``'s PPR vector (its row).

    Solvers, both exact up to ``tol`` (no truncation, no dense N x N matrix):

    * ``"direct"``: a sparse LU factorization (SuperLU, symmetric minimum-degree ordering),
      factored once per graph and teleport and cached; float64 to machine precision. Columns
      are solved in blocks of ``LU_BLOCK`` over torch's intra-op threads.
    * ``"cg"``: conjugate gradients on the SPD system, on the input's device. The system's
      condition number is at most :math:`(2 - \alpha)/\alpha`, so the error falls by
      :math:`(\sqrt\kappa - 1)/(\sqrt\kappa + 1)` per step (about 0.87 at teleport 0.01);
      the relative residual of every column is below ``tol`` on return, which bounds the
      relative 2-norm error by :math:`\kappa \cdot` ``tol``.

    ``"auto"`` factors graphs of up to 100,000 nodes on the CPU and runs CG otherwise.

    Returns:
        ``[N, S]`` float tensor on ``adj``'s device.
    """
    if not 0.0 < teleport < 1.0:
        raise ValueError(f"teleport must lie in (0, 1); got {teleport}.")
    n = adj.shape[0]
    if rhs is None and sources is None:
        raise ValueError("Pass either sources or rhs.")
    if solver == "auto":
        solver = "direct" if _direct_by_default(adj) else "cg"
    if solver == "direct":
        if rhs is None:
            num_cols, rhs_block = _unit_blocks(n, sources)
        else:
            dense = rhs.detach().cpu().double().numpy()
            num_cols, rhs_block = dense.shape[1], lambda a, b: dense[:, a:b]
        solution = np.empty((n, num_cols))

        def take(start: int, stop: int, block: np.ndarray) -> None:
            solution[:, start:stop] = teleport * block

        _lu_blocks(_lu(adj, teleport, cache_key), num_cols, rhs_block, take)
        return torch.from_numpy(solution).to(adj.device)
    if solver == "cg":
        if rhs is None:
            sources = torch.as_tensor(sources, device=adj.device).long().view(-1)
            rhs = torch.zeros(n, sources.numel(), device=adj.device, dtype=torch.float64)
            rhs[sources, torch.arange(sources.numel(), device=adj.device)] = 1.0
        return teleport * _cg(adj, rhs.to(adj.dtype), teleport, tol, max_iter)
    raise ValueError(f"solver={solver!r} is not supported; expected 'auto', 'direct' or 'cg'.")


#: Dense BLAS-3 flops per second over sparse triangular-solve flops (PubMed, two threads:
#: about 27 GFLOP/s in ``inverse_sq_column_norms`` against 10 in SuperLU's column solves).
DENSE_SPEEDUP = 3.0


def _cheaper_dissection(adj: Tensor, teleport: float, key: tuple | None,
                        count: int) -> tuple[spla.SuperLU, Dissection | None]:
    """The cached LU, and the nested dissection if it gives ``count`` squared norms for fewer
    estimated seconds than ``count`` column solves (else ``None``)."""
    lu = _lu(adj, teleport, key)
    split = _dissection(adj, teleport, key, lu)
    cheaper = split is not None and split.flops < DENSE_SPEEDUP * 2.0 * lu.nnz * count
    return lu, split if cheaper else None


def ppr_gram(adj: Tensor, sources: Tensor, teleport: float = 0.01, *, cache_key: tuple | None = None) -> Tensor:
    r"""Columns ``sources`` of :math:`G = \Pi^\top \Pi`, ``[N, S]``, by two solves per source
    (:math:`\Pi` is symmetric for the ``"sym"`` adjacency): :math:`G_{vs}` is the inner product
    of the PPR vectors of ``v`` and ``s``, so :math:`G_{ss} + G_{vv} - 2 G_{sv}` is their squared
    distance."""
    return ppr(adj, rhs=ppr(adj, sources, teleport, cache_key=cache_key), teleport=teleport, cache_key=cache_key)


def ppr_sq_norms(adj: Tensor, sources: Tensor, teleport: float = 0.01, *, cache_key: tuple | None = None,
                 chunk: int = 1024) -> Tensor:
    r"""Squared 2-norms :math:`\lVert \Pi e_s \rVert_2^2` of the PPR columns of ``sources``
    ``[S]``, as float64 ``[S]`` on the CPU, without holding the ``[N, S]`` columns.

    With the direct solver (``"sym"`` adjacency, symmetric system), by
    ``srgnn.dissection.inverse_sq_column_norms`` when the graph has a small separator and
    that is estimated cheaper, else column by column: each block of columns is reduced as soon
    as it is solved. With CG, ``chunk`` columns at a time. All three are exact to rounding.
    """
    sources = torch.as_tensor(sources).long().view(-1).cpu()
    n = adj.shape[0]
    if not _direct_by_default(adj):
        return torch.cat([(ppr(adj, part, teleport, cache_key=cache_key) ** 2).sum(0).cpu()
                          for part in sources.split(chunk)])
    lu, split = _cheaper_dissection(adj, teleport, cache_key, sources.numel())
    if split is not None:
        norms = inverse_sq_column_norms(split, sources.numpy())
        return torch.from_numpy(teleport ** 2 * norms)
    num_cols, rhs_block = _unit_blocks(n, sources)
    norms = np.empty(num_cols)

    def take(start: int, stop: int, block: np.ndarray) -> None:
        norms[start:stop] = teleport ** 2 * np.einsum("ij,ij->j", block, block)

    _lu_blocks(lu, num_cols, rhs_block, take)
    return torch.from_numpy(norms)


def graph_ppr(data, sources: Tensor, teleport: float = 0.01, **kwargs) -> Tensor:
    """``ppr`` on a ``Data``'s symmetric normalized adjacency; ``[N, S]`` (cached factorization)."""
    adj = normalized_adjacency(data.edge_index, data.num_nodes, "sym", dtype=torch.float64)
    return ppr(adj, sources, teleport, cache_key=_graph_key(data.edge_index, data.num_nodes), **kwargs)


def _every_sq_norm(data, adj: Tensor, teleport: float) -> Tensor | None:
    """Every node's ``ppr_sq_norms`` ``[N]``, computed once per graph and teleport where nested
    dissection makes them cheaper than a column solve per node (PubMed: 1.7 s for all 19,717
    against 0.47 s for 500 by column solves, so from the fourth KMM set on); else ``None``."""
    cache = graph_cache(data.edge_index, data.num_nodes)
    name = ("ppr_sq_norms", teleport)
    if name not in cache:
        key = _graph_key(data.edge_index, data.num_nodes)
        cheap = _direct_by_default(adj) and _cheaper_dissection(adj, teleport, key, data.num_nodes)[1] is not None
        cache[name] = ppr_sq_norms(adj, torch.arange(data.num_nodes), teleport, cache_key=key) if cheap else None
    return cache[name]


def graph_ppr_sq_distances(data, sources: Tensor, targets: Tensor, teleport: float = 0.01) -> Tensor:
    r"""Squared distances :math:`\lVert \pi_s - \pi_t \rVert_2^2` between the PPR vectors of
    ``sources`` ``[S]`` and ``targets`` ``[T]`` on a ``Data``'s symmetric normalized adjacency,
    ``[S, T]`` float64 on the CPU.

    :math:`\Pi` is symmetric, so with :math:`G = \Pi^2` the distance is
    :math:`G_{ss} + G_{tt} - 2 G_{st}`: ``ppr_gram`` gives :math:`G e_s` by two solves per source, and
    ``ppr_sq_norms`` the targets' :math:`G_{tt}`, so the targets' ``[N, T]`` PPR columns are never
    solved for (KMM on PubMed, 60 training and 500 IID nodes: 120 column solves instead of 560).
    """
    sources = torch.as_tensor(sources).long().view(-1).cpu()
    targets = torch.as_tensor(targets).long().view(-1).cpu()
    key = _graph_key(data.edge_index, data.num_nodes)
    adj = normalized_adjacency(data.edge_index, data.num_nodes, "sym", dtype=torch.float64)
    gram = ppr_gram(adj, sources, teleport, cache_key=key).cpu()  # [N, S]
    source_norms = gram[sources, torch.arange(sources.numel())]
    target_norms = _every_sq_norm(data, adj, teleport)
    target_norms = ppr_sq_norms(adj, targets, teleport, cache_key=key) if target_norms is None else target_norms[targets]
    sq = (source_norms[:, None] + target_norms[None, :] - 2.0 * gram[targets].T).clamp_min_(0.0)
    return sq.masked_fill_(sources[:, None] == targets[None, :], 0.0)  # a vector's distance to itself
