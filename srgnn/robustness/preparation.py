"""Preparing one training set for a shift-robust fit: the shapes of lazy parameters (a penalty
sized by the hidden layer), the unlabelled IID sample its penalty compares with, and the
instance weights of its cross-entropy (KMM on PPR rows, or ones).

The result, a ``ShiftSetup``, belongs to the fit: the trainer holds it (``Trainer.setup_``) and
passes it to the loss; nothing is written onto the model, so one model object can be fitted by
two trainers on two training sets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.parameter import is_lazy
from torch_geometric.data import Data

from .._validation import check_choice, check_index
from ..graph import Graph, graph_for, model_inputs
from ..ppr import graph_ppr_sq_distances
from .robust import KMM_PPR, ShiftRobust
from ..sampling import default_pool, iid_sample, push_sq_distances
from .renode import renode_weights
from .shift import kmm_weights_from_sq_distances

#: Largest graph whose exact PPR rows KMM computes: one sparse LU of the graph's system, whose
#: fill-in grows fast with N (PubMed's 19,717 nodes take about a second).
MAX_EXACT_PPR_NODES = 100_000


@dataclass(frozen=True)
class ShiftSetup:
    """What a shift-robust loss reads besides the graph, for one training set.

    Attributes:
        iid_idx: ``[m]`` the unlabelled IID sample, or ``None`` where nothing reads one.
        weights: ``[n]`` float32 instance weights of the training nodes, in ``train_idx``'s order
            (KMM's, or ones).
    """

    iid_idx: Tensor | None
    weights: Tensor


def kmm_node_weights(graph: Graph | Data, nodes: Tensor, iid_idx: Tensor, *, teleport: float = 0.1,
                     lower: float = 0.2, ppr: str = "exact") -> Tensor:
    """KMM weights ``[n]`` (float64) for ``nodes`` ``[n]``, labelled, that make their PPR rows
    look like those of ``iid_idx`` ``[m]``, an unlabelled sample; each class's weights sum to
    its count (``srgnn.robustness.shift.kmm_weights``). ``ppr``: ``"exact"`` rows or ``"push"``
    approximations (PPR-S). ``ShiftRobust`` weighs its training loss with them; weighting
    held-out labelled nodes the same way estimates quantities on the IID nodes instead
    (``srgnn.estimation.calibration.fit_temperature``'s ``weights``)."""
    graph = graph_for(graph)
    data = graph.data
    check_choice(ppr, KMM_PPR, "ppr")
    return _kmm_node_weights(graph, check_index(nodes, data.num_nodes, "nodes").cpu(),
                             check_index(iid_idx, data.num_nodes, "iid_idx").cpu(), teleport, lower, ppr)


def _kmm_node_weights(graph: Graph, nodes: Tensor, iid_idx: Tensor, teleport: float, lower: float,
                      ppr: str) -> Tensor:
    """``kmm_node_weights`` on inputs already validated (CPU index tensors)."""
    data = graph.data
    n = nodes.numel()
    both = torch.cat([nodes, iid_idx])
    sq = (graph_ppr_sq_distances(graph, nodes, both, teleport) if ppr == "exact"
          else push_sq_distances(data, nodes, both, teleport))
    return kmm_weights_from_sq_distances(sq[:, :n], sq[:, n:], data.y.view(-1)[nodes].cpu(), lower=lower)


def materialize(robust: ShiftRobust, graph: Graph) -> None:
    """Give lazy parameters (a PyG model's ``in_channels=-1``, a penalty's ``nn.LazyLinear``) their
    shapes, with one forward pass of the model and one call of the penalty, before an optimizer
    is built on them. The random streams are left as they were, so that a fit depends on its
    seed alone, not on whether its model was fitted before (``reset_parameters`` then draws
    every initial weight)."""
    if not any(is_lazy(p) for p in robust.parameters()):
        return
    device = next(robust.parameters()).device
    graph = graph.on(device)
    with torch.random.fork_rng([device] if device.type == "cuda" else []), torch.no_grad():
        hidden = robust.forward_with_hidden(*model_inputs(robust.model, graph.x, graph))[1]
        if robust.regularizer is not None:
            robust.penalty(hidden[:1], hidden[:1])


def check_iid_sample(iid_idx: Tensor, train_idx: Tensor, num_nodes: int) -> Tensor:
    """Validate a user's IID sample at the public boundary: node indices, none of them a training
    node (``train_idx``, validated); returns it as a CPU index tensor."""
    iid_idx = check_index(iid_idx, num_nodes, "iid_idx").cpu()
    overlap = torch.isin(iid_idx, train_idx.cpu())
    if overlap.any():
        raise ValueError(f"{int(overlap.sum())} IID node(s) are also training nodes "
                         f"(e.g. node {int(iid_idx[overlap][0])}); the IID sample must be unlabelled nodes.")
    return iid_idx


def prepare(robust: ShiftRobust, graph: Graph | Data, train_idx: Tensor, seed: int = 0,
            iid_idx: Tensor | None = None) -> ShiftSetup:
    """Give ``robust``'s lazy parameters their shapes (``materialize``), draw the IID sample
    (unless ``iid_idx`` is given) and compute the instance weights that ``robust``'s options ask
    for, for the training set ``train_idx`` ``[n]``. A ``Graph``
    (``Graph.from_data``) keeps the KMM weights and the PPR factorization behind them for the
    next fit on it; a ``Data`` computes them afresh. The trainers, which validate their inputs
    where they take them, call ``shift_setup``."""
    graph = graph_for(graph)
    data = graph.data
    train_idx = check_index(train_idx, data.num_nodes, "train_idx").cpu()
    iid_idx = None if iid_idx is None else check_iid_sample(iid_idx, train_idx, data.num_nodes)
    return shift_setup(robust, graph, train_idx, seed, iid_idx)


def shift_setup(robust: ShiftRobust, graph: Graph, train_idx: Tensor, seed: int,
                iid_idx: Tensor | None) -> ShiftSetup:
    """``prepare`` on inputs already validated: a ``Graph`` with labels (``graph_for``), and
    ``train_idx`` and ``iid_idx`` CPU index tensors, disjoint (``check_iid_sample``)."""
    data = graph.data
    train_idx = train_idx.cpu()
    materialize(robust, graph)
    needs_iid = robust.regularizer is not None or robust.instance_weights == "kmm"
    if iid_idx is None and needs_iid:
        if robust.iid == "label-balanced":  # the paper's protocol: reads unlabelled nodes' labels
            iid_idx = iid_sample(data, robust.iid_size or train_idx.numel(), seed, candidates=default_pool(data),
                                 balanced=True, exclude=train_idx)
        else:
            size = robust.iid_size or max(train_idx.numel(), 500)
            size = min(size, data.num_nodes - train_idx.numel())
            iid_idx = iid_sample(data, size, seed, exclude=train_idx)
    weights = torch.ones(train_idx.numel())
    if robust.instance_weights == "kmm":
        # Label-free up to the training labels, so every model trained on one set with one
        # IID sample (SR-APPNP, SR-SGC, SR-DGI in a study) shares one PPR solve and QP.
        if robust.kmm_ppr == "exact" and data.num_nodes > MAX_EXACT_PPR_NODES:
            raise ValueError(f"KMM on exact PPR rows of a {data.num_nodes:,}-node graph (above "
                             f"{MAX_EXACT_PPR_NODES:,}) needs a sparse LU too large to build; pass "
                             "kmm_ppr='push' for push-approximated rows (PPR-S), or instance_weights=None.")
        key = ("kmm", tuple(train_idx.tolist()), tuple(iid_idx.tolist()), tuple(data.y[train_idx].tolist()),
               robust.kmm_teleport, robust.kmm_lower, robust.kmm_ppr)

        def kmm() -> Tensor:
            return _kmm_node_weights(graph, train_idx, iid_idx, robust.kmm_teleport, robust.kmm_lower,
                                     robust.kmm_ppr)

        weights = graph.cached(key, kmm).float()
    elif robust.instance_weights == "renode":  # reads the training labels and the graph only
        key = ("renode", tuple(train_idx.tolist()), tuple(data.y[train_idx].tolist()))
        weights = graph.cached(key, lambda: renode_weights(graph, train_idx))
    return ShiftSetup(iid_idx, weights)
