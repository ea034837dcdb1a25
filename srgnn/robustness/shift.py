r"""Distribution-shift measures between two node sets' representations.

``a`` is ``[n, d]`` (e.g. the training nodes), ``b`` is ``[m, d]`` (e.g. an IID sample).
``cmd`` and ``mmd`` also take batches ``[..., n, d]`` and ``[..., m, d]`` (one value per
batch entry, e.g. per replica of a replica-batched run).

* ``cmd``: central moment discrepancy (Zellinger et al., ICLR 2017),
  :math:`\lVert E a - E b\rVert_2 + \sum_{k=2}^{K} \lVert c_k(a) - c_k(b)\rVert_2`,
  with :math:`c_k` the k-th central moment per dimension; with ``bounds=(lo, hi)`` term k
  is divided by :math:`|hi - lo|^k` as in the original; with ``standardize=True`` both sets
  are first divided by their pooled spread :math:`s` (below), which makes CMD scale-free.
* ``mmd``: squared maximum mean discrepancy with a sum of RBF kernels.
* ``conditional_cmd``: CMD per class, between a class's labelled rows and the target rows
  weighted by their predicted probability of that class.
* ``label_shift_weights``: per-row weights that give labelled rows a target's predicted class mix.
* ``kmm_weights``: kernel-mean-matching instance weights (Huang et al., 2007) as SR-GNN
  uses them for linear GNNs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import clarabel
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_same_device


def _check_pair(a: Tensor, b: Tensor, batched: bool = True) -> None:
    if (a.dim() < 2 or a.dim() != b.dim() or a.shape[:-2] != b.shape[:-2] or a.size(-1) != b.size(-1)
            or (not batched and a.dim() != 2)):
        expected = "[..., n, d] and [..., m, d]" if batched else "[n, d] and [m, d]"
        raise ValueError(f"Expected {expected} inputs; got {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.size(-2) == 0 or b.size(-2) == 0:
        raise ValueError("Both node sets must be non-empty.")
    check_same_device(a=a, b=b)


def _l2(v: Tensor) -> Tensor:
    # sqrt with a zero-safe gradient: identical inputs give distance 0 and a zero gradient, not NaN.
    sq = (v * v).sum(-1)
    return torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), sq)


def cmd(a: Tensor, b: Tensor, moments: int = 5, bounds: tuple[float, float] | None = None,
        standardize: bool = False, weights: Tensor | None = None, weights_b: Tensor | None = None) -> Tensor:
    r"""Central moment discrepancy of order ``moments``; differentiable, shape ``a.shape[:-2]``.

    ``weights`` ``[..., n]`` (non-negative): ``a``'s moments are weighted means
    :math:`\sum_i w_i f(a_i) / \sum_i w_i`, e.g. ``label_shift_weights`` to compare ``b`` with
    ``a`` reweighted to ``b``'s class mix; ``weights_b`` ``[..., m]`` weight ``b``'s rows the
    same way. A batch entry whose weights are all zero gets moments 0 on that side.

    ``standardize``: divide ``a`` and ``b`` by :math:`s = (\frac1d\sum_j \mathrm{Var}_j + 10^{-8})^{1/2}`,
    the root of the per-dimension variance of the pooled rows of ``a`` and ``b``, averaged over
    the ``d`` dimensions (differentiated through). Then ``cmd(c * a, c * b) == cmd(a, b)`` for
    any ``c > 0``: term k of the plain CMD grows as :math:`c^k`, so on large activations the
    cheapest way to lower it is to shrink or saturate the representation, which loses the labels
    (docs/graphs.md); a scale-free CMD gives no such reward."""
    _check_pair(a, b)
    if moments < 1:
        raise ValueError(f"moments must be >= 1; got {moments}.")
    for name, w, rows in (("weights", weights, a), ("weights_b", weights_b, b)):
        if w is not None and w.shape != rows.shape[:-1]:
            raise ValueError(f"{name} must be {tuple(rows.shape[:-1])}, one per row; got {tuple(w.shape)}.")
    if standardize and bounds is not None:
        raise ValueError("Pass bounds or standardize=True, not both: each sets CMD's scale.")
    if standardize:
        spread = torch.cat([a, b], -2).var(-2, unbiased=False).mean(-1).add(1e-8).sqrt()[..., None, None]
        a, b = a / spread, b / spread
    scale = 1.0
    if bounds is not None:
        lo, hi = bounds
        if hi <= lo:
            raise ValueError(f"bounds must satisfy lo < hi; got {bounds}.")
        scale = 1.0 / (hi - lo)
    mean_a, mean_b = _weighted_mean(weights), _weighted_mean(weights_b)
    centre_a, centre_b = mean_a(a), mean_b(b)
    total = scale * _l2((centre_a - centre_b).squeeze(-2))
    centred_a, centred_b = a - centre_a, b - centre_b
    for k in range(2, moments + 1):
        total = total + scale ** k * _l2((mean_a(centred_a ** k) - mean_b(centred_b ** k)).squeeze(-2))
    return total


def _weighted_mean(weights: Tensor | None) -> Callable[[Tensor], Tensor]:
    """The mean over rows ``[..., n, d] -> [..., 1, d]``, weighted by ``weights`` ``[..., n]`` if given."""
    if weights is None:
        return lambda v: v.mean(-2, keepdim=True)
    share = (weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)).unsqueeze(-1)  # [..., n, 1]
    return lambda v: (share.to(v.dtype) * v).sum(-2, keepdim=True)


def conditional_cmd(a: Tensor, b: Tensor, labels: Tensor, target_logits: Tensor, moments: int = 5) -> Tensor:
    r"""Class-conditional CMD: :math:`\sum_c p_c\,\mathrm{CMD}(a_{y=c},\ b \text{ weighted by } \hat p(c \mid b))`.

    ``a`` ``[..., n, d]`` labelled rows with ``labels`` ``[..., n]``, :math:`p_c` their class
    shares; ``b`` ``[..., m, d]`` target rows with ``target_logits`` ``[..., m, C]``, whose softmax
    (detached: an estimate, not a path for gradients) gives each row's weight in each class.
    What it aligns is :math:`p(h \mid y)`, not the marginal :math:`p(h)`: a labelled set whose
    class mix differs from the target's is not pulled towards the target's mix, which would move
    classes into each other. Returns ``a.shape[:-2]``; classes without labelled rows add nothing."""
    _check_pair(a, b)
    if labels.shape != a.shape[:-1] or target_logits.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"labels must be {tuple(a.shape[:-1])} and target_logits {tuple(b.shape[:-1])} + (C,); "
                         f"got {tuple(labels.shape)} and {tuple(target_logits.shape)}.")
    classes = target_logits.size(-1)
    members = F.one_hot(labels, classes).to(a.dtype).movedim(-1, -2)  # [..., C, n]
    target = target_logits.detach().softmax(-1).to(b.dtype).movedim(-1, -2)  # [..., C, m]
    share = members.mean(-1)  # [..., C]

    def per_class(rows: Tensor) -> Tensor:  # [..., r, d] -> [..., C, r, d], classes as a batch dimension
        return rows.unsqueeze(-3).expand(*rows.shape[:-2], classes, *rows.shape[-2:])
    return (share * cmd(per_class(a), per_class(b), moments, weights=members, weights_b=target)).sum(-1)


def label_shift_weights(labels: Tensor, target_logits: Tensor) -> Tensor:
    r"""Per-row weights :math:`w_i = \hat q(y_i) / p(y_i)` that give labelled rows the class mix
    the target rows are predicted to have (label shift; cf. Tachet des Combes et al., NeurIPS 2020).

    ``labels`` ``[..., n]`` of the labelled rows, :math:`p` their class shares; ``target_logits``
    ``[..., m, C]``, :math:`\hat q` their mean softmax, detached (an estimate, not a path for
    gradients). Returns ``[..., n]``, mean 1 over the rows of each batch entry."""
    if target_logits.shape[:-2] != labels.shape[:-1]:
        raise ValueError(f"labels [..., n] and target_logits [..., m, C] disagree on the batch: "
                         f"{tuple(labels.shape)} and {tuple(target_logits.shape)}.")
    classes = target_logits.size(-1)
    target = target_logits.detach().softmax(-1).mean(-2)  # [..., C]
    source = F.one_hot(labels, classes).to(target.dtype).mean(-2)  # [..., C]; > 0 at every label present
    ratio = target / source.clamp_min(1e-12)
    return ratio.gather(-1, labels)


def rbf_kernel(a: Tensor, b: Tensor, gammas: Sequence[float]) -> Tensor:
    r""":math:`\sum_\gamma \exp(-\gamma \lVert a_i - b_j\rVert^2)`, ``[..., n, m]``."""
    return _rbf(torch.cdist(a, b).pow(2), gammas)


def _rbf(sq_distances: Tensor, gammas: Sequence[float]) -> Tensor:
    return sum(torch.exp(-g * sq_distances) for g in gammas)


def mmd(a: Tensor, b: Tensor, gammas: Sequence[float] = (1.0, 0.1, 1e-3), weights: Tensor | None = None) -> Tensor:
    """Biased (V-statistic) squared MMD with a multi-bandwidth RBF kernel; differentiable, >= 0,
    shape ``a.shape[:-2]``. ``weights`` ``[..., n]`` (mean 1, e.g. ``kmm_weights``) reweight
    ``a``'s nodes."""
    _check_pair(a, b)
    if weights is None:
        weights = a.new_ones(a.shape[:-1])
    if weights.shape != a.shape[:-1]:
        raise ValueError(f"weights must be [..., n] = {tuple(a.shape[:-1])}; got {tuple(weights.shape)}.")
    w = (weights / a.size(-2)).unsqueeze(-1).to(a.dtype)  # [..., n, 1]
    value = ((w.transpose(-2, -1) @ rbf_kernel(a, a, gammas) @ w).view(a.shape[:-2])
             + rbf_kernel(b, b, gammas).mean((-2, -1))
             - 2 * (w.transpose(-2, -1) @ rbf_kernel(a, b, gammas)).mean(-1).view(a.shape[:-2]))
    return value.clamp_min(0.0)


def kmm_weights(source: Tensor, target: Tensor, labels: Tensor, lower: float = 0.2, *,
                upper: float | None = None, gammas: Sequence[float] = (1.0, 0.1, 1e-3)) -> Tensor:
    r"""Kernel mean matching: instance weights that make the source look like the target.

    Solves the QP :math:`\min_\beta \tfrac12 \beta^\top K\beta - \kappa^\top\beta` with
    :math:`K_{ij} = k(s_i, s_j)`, :math:`\kappa_i = \tfrac{n}{m}\sum_j k(s_i, t_j)`, subject to
    ``lower`` :math:`\le \beta_i \le` ``upper`` and, for every class, the weights of its
    nodes summing to its count, so the class balance of the training set is kept.
    The QP goes to Clarabel, an interior-point conic solver.

    Args:
        source: ``[n, d]``, e.g. PPR rows of the training nodes.
        target: ``[m, d]``, e.g. PPR rows of an IID sample.
        labels: ``[n]`` class of each source node.

    Returns:
        ``beta`` ``[n]`` on ``source``'s device. ``mmd(source, target, weights=beta)`` is the
        squared MMD it leaves; it is not computed here, since its target-target kernel costs
        more than the QP.
    """
    _check_pair(source, target, batched=False)
    if not (torch.isfinite(source).all() and torch.isfinite(target).all()):
        raise ValueError("kmm_weights: source and target hold NaN or infinite values; KMM matches finite features "
                         "only (impute them first, e.g. torch.nan_to_num).")
    s, t = source.detach().double(), target.detach().double()
    beta = kmm_weights_from_sq_distances(torch.cdist(s, s).pow(2), torch.cdist(s, t).pow(2), labels, lower,
                                         upper=upper, gammas=gammas)
    return beta.to(source.dtype).to(source.device)


def kmm_weights_from_sq_distances(source_sq: Tensor, cross_sq: Tensor, labels: Tensor, lower: float = 0.2, *,
                                  upper: float | None = None,
                                  gammas: Sequence[float] = (1.0, 0.1, 1e-3)) -> Tensor:
    r"""``kmm_weights`` from squared distances instead of feature rows: ``source_sq`` ``[n, n]``
    among the source nodes and ``cross_sq`` ``[n, m]`` from each source to each target node
    (for PPR rows, ``srgnn.ppr.graph_ppr_sq_distances`` gives them without the
    targets' rows). Returns ``beta`` ``[n]`` (float64) on ``cross_sq``'s device."""
    if source_sq.dim() != 2 or cross_sq.dim() != 2 or source_sq.shape != (cross_sq.size(0),) * 2 or cross_sq.size(1) == 0:
        raise ValueError(f"Expected source_sq [n, n] and cross_sq [n, m] with m > 0; got {tuple(source_sq.shape)} "
                         f"and {tuple(cross_sq.shape)}.")
    labels = torch.as_tensor(labels, device=cross_sq.device).view(-1)
    if labels.numel() != cross_sq.size(0):
        raise ValueError(f"labels has {labels.numel()} entries for {cross_sq.size(0)} source nodes.")
    if lower < 0 or lower > 1 or (upper is not None and (upper < 1 or upper < lower)):
        raise ValueError(
            f"KMM bounds lower={lower}, upper={upper} are infeasible: each class's weights must sum to "
            "its node count, so the bounds must satisfy 0 <= lower <= 1 <= upper. Use e.g. lower=0.2.")
    n, m = cross_sq.shape
    kernel = _rbf(source_sq.double(), gammas).cpu().numpy()
    kappa = (n / m) * _rbf(cross_sq.double(), gammas).sum(1).cpu().numpy()
    classes, y = np.unique(labels.cpu().numpy(), return_inverse=True)
    # Clarabel's standard form: min 1/2 b'Pb + q'b with Ab + slack = rhs, slack in the cones;
    # the class sums go to the zero cone, the bounds -b <= -lower (and b <= upper) to R+.
    class_sums = sp.csc_matrix((np.ones(n), (y, np.arange(n))), shape=(classes.size, n))
    rows, rhs = [class_sums, -sp.identity(n)], [np.bincount(y).astype(float), np.full(n, -lower)]
    if upper is not None:
        rows, rhs = rows + [sp.identity(n)], rhs + [np.full(n, upper)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    # The kernel of near-identical PPR rows is nearly singular: a loose stop leaves weights
    # several hundredths off along its flat directions (Cora: 0.07 at the default 1e-8).
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-10
    solution = clarabel.DefaultSolver(
        sp.triu(sp.csc_matrix(kernel)).tocsc(), -kappa, sp.vstack(rows).tocsc(), np.concatenate(rhs),
        [clarabel.ZeroConeT(classes.size), clarabel.NonnegativeConeT(len(rows[1:]) * n)], settings).solve()
    if solution.status not in (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved):
        raise RuntimeError(f"The KMM QP did not converge ({solution.status}); try a larger lower bound.")
    beta = np.clip(np.asarray(solution.x), lower, upper if upper is not None else np.inf)
    return torch.as_tensor(beta, dtype=torch.float64, device=cross_sq.device)
