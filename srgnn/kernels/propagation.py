r"""Sparse propagation kernels: the normalized adjacency and the operators on it.

All operators run on torch sparse CSR, on the device of their input. Shapes: ``N`` nodes,
``F`` feature columns. Nothing here is cached: what is computed once per graph lives on a
``srgnn.graph.Graph``.

* ``normalized_adjacency``: :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` (``"sym"``),
  :math:`D^{-1}(A + I)` (``"row"``) or :math:`D^{-1}A` (``"mean"``), with its transpose
  (``Adjacency``), which SpMM's backward multiplies by.
* ``sgc_features``: :math:`\hat A^K X` (Wu et al., 2019).
* ``appnp_propagate``: :math:`H^{k+1} = (1 - \alpha)\hat A H^k + \alpha H^0`, K steps
  (Gasteiger et al., 2019).
* ``TargetRows`` / ``appnp_rows``: the rows of APPNP's operator at the few nodes a loss
  reads, so training multiplies by a ``[T, N]`` matrix instead of propagating K times.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Norm = Literal["sym", "row", "mean"]


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


@dataclass(frozen=True)
class Adjacency:
    """A normalized adjacency ``matrix`` (CSR ``[N, N]``, or ``[R, N]`` for a trimmed layer of a
    sampled batch, ``srgnn.graph.Subgraph.layer``) and its ``transposed`` (CSR; the same
    tensor when the matrix is symmetric), built together so SpMM's backward needs no transpose."""

    matrix: Tensor
    transposed: Tensor


def normalized_adjacency(edge_index: Tensor, num_nodes: int, norm: Norm = "sym",
                         device: torch.device | str | None = None, dtype: torch.dtype = torch.float32, *,
                         read: Tensor | None = None, full_degree: Tensor | None = None) -> Tensor:
    """A normalized adjacency as a CSR tensor ``[N, N]``: ``"sym"`` and ``"row"`` add
    self-loops (GCN); ``"mean"`` is :math:`D^{-1}A` without them (GraphSAGE's mean over
    neighbours; an isolated node's row is zero). As in PyG's source-to-target flow, row ``i``
    holds the edges into ``i`` (``edge_index[1] == i``) and degrees are in-degrees, so
    ``adj @ x`` aggregates each node's in-neighbours. Self-loops already present in
    ``edge_index`` are replaced, not doubled.

    For one layer of a receptive subgraph (``srgnn.graph.Subgraph.layer``): ``read`` ``[R]``, the
    nodes whose rows are wanted, get the self-loops alone (the other rows are zero), and
    ``full_degree`` ``[N]``, the whole graph's in-degrees, replaces the degrees counted here.
    Computed afresh at each call; ``Graph.adjacency`` keeps one per graph.
    """
    return adjacency_pair(edge_index, num_nodes, norm, device, dtype, read=read, full_degree=full_degree).matrix


def adjacency_pair(edge_index: Tensor, num_nodes: int, norm: Norm = "sym", device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32, *, read: Tensor | None = None,
                   full_degree: Tensor | None = None, num_rows: int | None = None) -> Adjacency:
    """``normalized_adjacency`` and its transpose, as an ``Adjacency``. ``num_rows``: keep only
    the first rows, ``[num_rows, N]``, when every edge's target (and ``read``) lies among them."""
    device = torch.device(device) if device is not None else edge_index.device
    if norm not in ("sym", "row", "mean"):
        raise ValueError(f"norm={norm!r} is not supported; expected 'sym', 'row' or 'mean'.")
    col, row = edge_index.to(device)  # row: the target, which aggregates
    keep = row != col
    row, col = row[keep], col[keep]
    num_edges = row.numel()
    if norm != "mean":
        loops = torch.arange(num_nodes, device=device) if read is None else read.to(device)
        row, col = torch.cat([row, loops]), torch.cat([col, loops])
    deg = torch.zeros(num_nodes, device=device, dtype=dtype).index_add_(0, row, torch.ones_like(row, dtype=dtype))
    if full_degree is not None:  # a subgraph: normalize with the whole graph's degrees
        full = full_degree.to(device, dtype)
        sampled = deg - int(norm != "mean")  # edges into each node here, self-loop aside
        deg = full + (norm != "mean")
    if norm == "sym":
        inv_sqrt = deg.rsqrt()
        value = inv_sqrt[row] * inv_sqrt[col]
    else:
        value = deg.clamp_min(1).reciprocal()[row]
    if full_degree is not None:
        # A node that kept k of its d in-neighbours (neighbour sampling) weighs each by d / k, an
        # unbiased estimate of its whole-graph sum; a node that kept them all, by exactly 1.
        target = row[:num_edges]
        value[:num_edges] *= full[target] / sampled[target]
    with quiet_sparse():
        shape = (num_nodes if num_rows is None else num_rows, num_nodes)
        adj = torch.sparse_coo_tensor(torch.stack([row, col]), value, shape).coalesce()
        adj = compact_csr(adj.to_sparse_csr())
        # Kept for spmm's backward, built once: an undirected graph's "sym" is its own transpose.
        transposed = compact_csr(adj.t().to_sparse_csr())
        same = (adj.shape == transposed.shape and torch.equal(transposed.crow_indices(), adj.crow_indices())
                and torch.equal(transposed.col_indices(), adj.col_indices())
                and torch.equal(transposed.values(), adj.values()))
    return Adjacency(adj, adj if same else transposed)


def csr_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for a sparse CSR ``a`` ``[N, M]`` and a dense ``b`` ``[M, K]`` -> ``[N, K]``,
    for use outside autograd (in a custom ``Function`` or on inputs that need no gradient).

    On the CPU, torch's ``a @ b`` zero-fills a result, then copies it into the buffer that MKL
    overwrites. ``addmm`` into an empty buffer with ``beta=0`` skips both passes and gives the
    same values."""
    if a.device.type != "cpu" or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
        return a @ b
    out = torch.empty(a.size(0), b.size(1), dtype=b.dtype)
    return torch.addmm(out, a, b, beta=0, out=out)


class _SpMM(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by a transpose built once, not per call."""

    @staticmethod
    def forward(ctx, matrix: Tensor, transposed: Tensor, x: Tensor) -> Tensor:
        ctx.transposed = transposed
        return csr_matmul(matrix, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, csr_matmul(ctx.transposed, grad)


def spmm(adj: Adjacency | Tensor, x: Tensor) -> Tensor:
    """Sparse ``[N, N]`` times dense ``[N, F]``; differentiable in ``x``. An ``Adjacency``
    carries its transpose, which makes the backward one more SpMM instead of torch's generic
    sparse backward (a sort per call)."""
    if isinstance(adj, Adjacency):
        if x.requires_grad:
            return _SpMM.apply(adj.matrix, adj.transposed, x)
        adj = adj.matrix
    return csr_matmul(adj, x) if adj.layout == torch.sparse_csr else adj @ x


def sgc_features(adj: Adjacency | Tensor, x: Tensor, k: int = 2) -> Tensor:
    r""":math:`\hat A^K X`, shape ``[N, F]``."""
    for _ in range(k):
        x = spmm(adj, x)
    return x


def appnp_propagate(adj: Adjacency | Tensor, h: Tensor, alpha: float = 0.1, k: int = 10) -> Tensor:
    r"""K steps of :math:`H \leftarrow (1 - \alpha)\hat A H + \alpha H^0`; ``[N, C] -> [N, C]``."""
    out = h
    for _ in range(k):
        out = (1.0 - alpha) * spmm(adj, out) + alpha * h
    return out


def appnp_rows(adj: Adjacency, targets: Tensor, alpha: float = 0.1, k: int = 10) -> Tensor:
    r"""Rows ``targets`` of APPNP's K-step operator :math:`P`, dense ``[T, N]``, so that
    ``appnp_propagate(adj, h)[targets] == appnp_rows(adj, targets) @ h``.

    :math:`P` is a polynomial in :math:`\hat A`, so :math:`P^\top E_T` is the same K steps on
    :math:`\hat A^\top` (``adj.transposed``, which is ``adj.matrix`` for the symmetric norm) started
    from the targets' indicator columns: K SpMMs of T columns, once per training set."""
    matrix = adj.matrix
    indicator = torch.zeros(matrix.size(0), targets.numel(), dtype=matrix.dtype, device=matrix.device)
    indicator[targets, torch.arange(targets.numel(), device=matrix.device)] = 1.0
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


