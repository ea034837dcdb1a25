r"""Exact personalized PageRank on a normalized adjacency, without a dense N x N matrix.

* ``ppr``: PPR columns :math:`\Pi E_S = \alpha (I - (1 - \alpha)\hat A)^{-1} E_S`, by a sparse
  LU (SuperLU) or conjugate gradients.
* ``ppr_sq_norms``, ``ppr_gram``: their squared norms and inner products, for PPR-vector
  distances (``LocalizedSampler``) and KMM (``graph_ppr_sq_distances``).

Factorizations are kept only in a dict the caller passes (``factors``), such as a
``srgnn.graph.Graph``'s cache or a sampler's own.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Literal, TypeVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor
from torch_geometric.data import Data

from .kernels.dissection import Dissection, inverse_sq_column_norms, plan
from .graph import Graph
from .kernels.propagation import normalized_adjacency, spmm

T = TypeVar("T")


def _scipy_adjacency(adj: Tensor) -> sp.csr_matrix:
    adj = adj.detach().cpu()
    return sp.csr_matrix((adj.values().double().numpy(), adj.col_indices().numpy(),
                          adj.crow_indices().numpy()), shape=adj.shape)


def _system(adj: Tensor, teleport: float) -> sp.csc_matrix:
    r""":math:`I - (1 - \alpha)\hat A` as a scipy CSC matrix, float64."""
    return (sp.identity(adj.shape[0], format="csc") - (1.0 - teleport) * _scipy_adjacency(adj)).tocsc()


def _kept(factors: dict | None, key: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, kept in the caller's ``factors`` dict under ``key`` when one is given."""
    if factors is None:
        return compute()
    if key not in factors:
        factors[key] = compute()
    return factors[key]


def _lu(adj: Tensor, teleport: float, factors: dict | None) -> spla.SuperLU:
    # The system is symmetric for "sym": a symmetric ordering keeps the fill-in small.
    return _kept(factors, ("lu", teleport), lambda: spla.splu(
        _system(adj, teleport), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}))


def _dissection(adj: Tensor, teleport: float, factors: dict | None, lu: spla.SuperLU) -> Dissection | None:
    """``dissection.plan`` on the LU's elimination order, kept beside the LU."""
    def compute() -> Dissection | None:
        system = _system(adj, teleport)
        # The dissection's algebra needs a symmetric system ("sym" normalization, not "row").
        symmetric = abs(system - system.T).max() <= 1e-12
        # SuperLU's perm_c maps a node to its place in the elimination order.
        return plan(system, np.argsort(lu.perm_c)) if symmetric else None

    return _kept(factors, ("dissection", teleport), compute)


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
        tol: float = 1e-8, max_iter: int = 2000, factors: dict | None = None) -> Tensor:
    r"""Exact personalized PageRank columns :math:`\alpha (I - (1-\alpha)\hat A)^{-1} B`.

    ``B`` is the indicator of ``sources`` (``[S]`` node ids) or the dense ``rhs`` ``[N, S]``.
    For the symmetric :math:`\hat A` the PPR matrix is symmetric, so column ``s`` is also
    node ``s``'s PPR vector (its row).

    Solvers, both exact up to ``tol`` (no truncation, no dense N x N matrix):

    * ``"direct"``: a sparse LU factorization (SuperLU, symmetric minimum-degree ordering),
      factored once per teleport and kept in ``factors`` (a dict the caller owns, such as
      ``Graph.cache``) when one is given; float64 to machine precision. Columns are solved in
      blocks of ``LU_BLOCK`` over torch's intra-op threads.
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

        _lu_blocks(_lu(adj, teleport, factors), num_cols, rhs_block, take)
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


def _cheaper_dissection(adj: Tensor, teleport: float, factors: dict | None,
                        count: int) -> tuple[spla.SuperLU, Dissection | None]:
    """The cached LU, and the nested dissection if it gives ``count`` squared norms for fewer
    estimated seconds than ``count`` column solves (else ``None``)."""
    lu = _lu(adj, teleport, factors)
    split = _dissection(adj, teleport, factors, lu)
    cheaper = split is not None and split.flops < DENSE_SPEEDUP * 2.0 * lu.nnz * count
    return lu, split if cheaper else None


def ppr_gram(adj: Tensor, sources: Tensor, teleport: float = 0.01, *, factors: dict | None = None) -> Tensor:
    r"""Columns ``sources`` of :math:`G = \Pi^\top \Pi`, ``[N, S]``, by two solves per source
    (:math:`\Pi` is symmetric for the ``"sym"`` adjacency): :math:`G_{vs}` is the inner product
    of the PPR vectors of ``v`` and ``s``, so :math:`G_{ss} + G_{vv} - 2 G_{sv}` is their squared
    distance."""
    return ppr(adj, rhs=ppr(adj, sources, teleport, factors=factors), teleport=teleport, factors=factors)


def ppr_sq_norms(adj: Tensor, sources: Tensor, teleport: float = 0.01, *, factors: dict | None = None,
                 chunk: int = 1024) -> Tensor:
    r"""Squared 2-norms :math:`\lVert \Pi e_s \rVert_2^2` of the PPR columns of ``sources``
    ``[S]``, as float64 ``[S]`` on the CPU, without holding the ``[N, S]`` columns.

    With the direct solver (``"sym"`` adjacency, symmetric system), by
    ``srgnn.kernels.dissection.inverse_sq_column_norms`` when the graph has a small separator and
    that is estimated cheaper, else column by column: each block of columns is reduced as soon
    as it is solved. With CG, ``chunk`` columns at a time. All three are exact to rounding.
    """
    sources = torch.as_tensor(sources).long().view(-1).cpu()
    n = adj.shape[0]
    if not _direct_by_default(adj):
        return torch.cat([(ppr(adj, part, teleport, factors=factors) ** 2).sum(0).cpu()
                          for part in sources.split(chunk)])
    lu, split = _cheaper_dissection(adj, teleport, factors, sources.numel())
    if split is not None:
        norms = inverse_sq_column_norms(split, sources.numpy())
        return torch.from_numpy(teleport ** 2 * norms)
    num_cols, rhs_block = _unit_blocks(n, sources)
    norms = np.empty(num_cols)

    def take(start: int, stop: int, block: np.ndarray) -> None:
        norms[start:stop] = teleport ** 2 * np.einsum("ij,ij->j", block, block)

    _lu_blocks(lu, num_cols, rhs_block, take)
    return torch.from_numpy(norms)


def sym_adjacency(graph: Graph | Data) -> tuple[Tensor, dict | None]:
    """The float64 symmetric adjacency on the CPU and the dict to keep its factors in: a
    ``Graph``'s (its CPU copy's cache), or none for a ``Data`` (computed afresh)."""
    if isinstance(graph, Graph):
        cpu = graph.on("cpu")
        return cpu.adjacency("sym", torch.float64).matrix, cpu.cache
    return normalized_adjacency(graph.edge_index, graph.num_nodes, "sym", "cpu", torch.float64), None


def graph_ppr(graph: Graph | Data, sources: Tensor, teleport: float = 0.01, **kwargs) -> Tensor:
    """``ppr`` on a graph's symmetric normalized adjacency; ``[N, S]`` (a ``Graph`` keeps the
    factorization in its cache)."""
    adj, factors = sym_adjacency(graph)
    return ppr(adj, sources, teleport, factors=factors, **kwargs)


def every_sq_norm(adj: Tensor, factors: dict | None, teleport: float) -> Tensor | None:
    """Every node's ``ppr_sq_norms`` ``[N]``, kept in ``factors`` once per graph and teleport,
    where nested dissection makes them cheaper than a column solve per node; else ``None``.
    KMM and ``LocalizedSampler`` on one ``Graph`` read the same ones."""
    n = adj.shape[0]

    def compute() -> Tensor | None:
        cheap = _direct_by_default(adj) and _cheaper_dissection(adj, teleport, factors, n)[1] is not None
        return ppr_sq_norms(adj, torch.arange(n), teleport, factors=factors) if cheap else None

    return _kept(factors, ("ppr_sq_norms", teleport), compute) if factors is not None else None


def graph_ppr_sq_distances(graph: Graph | Data, sources: Tensor, targets: Tensor, teleport: float = 0.01) -> Tensor:
    r"""Squared distances :math:`\lVert \pi_s - \pi_t \rVert_2^2` between the PPR vectors of
    ``sources`` ``[S]`` and ``targets`` ``[T]`` on a graph's symmetric normalized adjacency,
    ``[S, T]`` float64 on the CPU.

    :math:`\Pi` is symmetric, so with :math:`G = \Pi^2` the distance is
    :math:`G_{ss} + G_{tt} - 2 G_{st}`: ``ppr_gram`` gives :math:`G e_s` by two solves per source, and
    ``ppr_sq_norms`` the targets' :math:`G_{tt}`, so the targets' ``[N, T]`` PPR columns are never
    solved for (KMM on PubMed, 60 training and 500 IID nodes: 120 column solves instead of 560).
    """
    sources = torch.as_tensor(sources).long().view(-1).cpu()
    targets = torch.as_tensor(targets).long().view(-1).cpu()
    adj, factors = sym_adjacency(graph)
    gram = ppr_gram(adj, sources, teleport, factors=factors).cpu()  # [N, S]
    source_norms = gram[sources, torch.arange(sources.numel())]
    target_norms = every_sq_norm(adj, factors, teleport)
    target_norms = (ppr_sq_norms(adj, targets, teleport, factors=factors) if target_norms is None
                    else target_norms[targets])
    sq = (source_norms[:, None] + target_norms[None, :] - 2.0 * gram[targets].T).clamp_min_(0.0)
    return sq.masked_fill_(sources[:, None] == targets[None, :], 0.0)  # a vector's distance to itself
