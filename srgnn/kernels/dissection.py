r"""Squared column norms of the inverse of a sparse SPD matrix by one level of nested dissection.

``LocalizedSampler`` needs :math:`\lVert M^{-1} e_v\rVert^2` for every pool node, with
:math:`M = I - (1-\alpha)\hat A`: one solve per node costs two passes over the whole LU
factor. On citation graphs that factor is a few thousand nodes (the hubs and the core,
eliminated last) joined by a dense trailing block, and removing those nodes, the separator
``S``, shatters the rest ``I`` into thousands of components of a few hundred nodes at most.
With :math:`M = \begin{pmatrix} A & B^\top \\ B & C\end{pmatrix}` in the order ``(I, S)``,
:math:`A` block diagonal, :math:`W = A^{-1}B^\top`, :math:`V = A^{-1}W` (both sparse: a row
is non-zero only at the separator nodes next to its component), the Schur complement
:math:`\Sigma = C - BW` (dense, ``[k, k]``) and :math:`H = \Sigma^{-1}(I + W^\top W)\Sigma^{-1}`,

.. math::
    \lVert M^{-1} e_v \rVert^2 = \lVert A^{-1} e_v\rVert^2 + 2\, V_v \Sigma^{-1} W_v^\top
    + W_v H W_v^\top \quad (v \in I), \qquad H_{vv} \quad (v \in S),

which is exact: small dense inverses per component, one dense ``[k, k]`` Cholesky factor and
BLAS-3 products, instead of one sparse triangular solve pair per node: faster on graphs whose
separator is small against their size (timings: docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

#: The largest separator tried: its dense ``[k, k]`` matrices take 8 k^2 bytes each.
MAX_SEPARATOR = 4096
#: Rows of ``W`` and ``V`` multiplied by the dense ``[k, k]`` matrices at a time.
ROW_CHUNK = 4096


@dataclass
class Dissection:
    """A split of the nodes of ``system`` (``M``) into a separator (the last ``k`` nodes of an
    elimination order) and the components of the rest, with its estimated cost in flops."""

    system: sp.csr_matrix  # [N, N]
    separator: np.ndarray  # [k] node ids
    interior: np.ndarray  # [N - k] node ids
    labels: np.ndarray  # [N - k] component of each interior node
    flops: float


def plan(system: sp.spmatrix, order: np.ndarray) -> Dissection | None:
    """The cheapest dissection whose separator is a suffix of ``order`` (a fill-reducing
    elimination order, such as SuperLU's) of at most ``MAX_SEPARATOR`` nodes; ``None`` if the
    graph has none (no small separator leaves components small enough to invert densely)."""
    n = system.shape[0]
    graph = system.tocsr()
    best = None
    size = 32
    while size < min(n, MAX_SEPARATOR + 1):
        separator, interior = order[n - size:], order[: n - size]
        _, labels = csgraph.connected_components(graph[interior][:, interior], directed=False)
        members = np.bincount(labels).astype(float)
        # Separator nodes next to each component: the distinct (component, separator) pairs.
        coupling = graph[separator][:, interior].tocoo()
        pairs = np.unique(labels[coupling.col] * size + coupling.row)
        w_nnz = float((members[pairs // size]).sum())
        flops = 6.0 * size ** 3 + 2.0 * (members ** 3).sum() + 4.0 * size * w_nnz
        if best is None or flops < best.flops:
            best = Dissection(graph, separator, interior, labels, flops)
        size = int(size * 1.25)
    return best


def _block_inverse(a: sp.csr_matrix, labels: np.ndarray) -> sp.csr_matrix:
    """The inverse of a block-diagonal ``a`` (blocks given by ``labels``), blocks of equal size
    inverted in one batched call."""
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows, cols, values = [], [], []
    for m in np.unique(sizes):
        idx = order[starts[:-1][sizes == m][:, None] + np.arange(m)]  # [components, m]
        blocks = np.stack([a[i][:, i].toarray() for i in idx]) if m > 1 else a.diagonal()[idx][:, :, None]
        rows.append(np.repeat(idx, m, axis=1).ravel())
        cols.append(np.tile(idx, (1, m)).ravel())
        values.append(np.linalg.inv(blocks).ravel())
    n = a.shape[0]
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def inverse_sq_column_norms(dissection: Dissection, nodes: np.ndarray) -> np.ndarray:
    r""":math:`\lVert M^{-1} e_v \rVert_2^2` for ``nodes`` ``[S]`` of the SPD ``M`` that
    ``dissection`` splits (``dissection.system``), exact to rounding; ``[S]`` float64."""
    graph = dissection.system
    separator, interior = dissection.separator, dissection.interior
    a = graph[interior][:, interior]
    b = graph[separator][:, interior]
    a_inv = _block_inverse(a, dissection.labels)
    w = (a_inv @ b.T).tocsr()  # [N - k, k]
    v = (a_inv @ w).tocsr()
    schur = graph[separator][:, separator].toarray() - (b @ w).toarray()
    gram = (w.T @ w).toarray()
    gram[np.diag_indices_from(gram)] += 1.0
    schur_inv = sla.cho_solve(sla.cho_factor(schur), np.eye(separator.size))
    h = schur_inv @ gram @ schur_inv

    n = graph.shape[0]
    place = np.full(n, -1)
    place[interior] = np.arange(interior.size)
    norms = np.empty(nodes.size)
    in_separator = place[nodes] < 0
    at = np.full(n, -1)
    at[separator] = np.arange(separator.size)
    norms[in_separator] = np.diag(h)[at[nodes[in_separator]]]
    inner = np.flatnonzero(~in_separator)
    own = np.asarray(a_inv.multiply(a_inv).sum(0)).ravel()  # ||A^-1 e_v||^2, A^-1 symmetric
    for chunk in np.array_split(inner, max(1, -(-inner.size // ROW_CHUNK))):
        rows = place[nodes[chunk]]
        w_rows = w[rows]
        cross = 2.0 * (v[rows] @ schur_inv) + w_rows @ h
        norms[chunk] = own[rows] + np.asarray(w_rows.multiply(cross).sum(1)).ravel()
    return norms
