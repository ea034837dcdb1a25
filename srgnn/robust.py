r"""The shift-robust wrapper: any srgnn model, trained with a distribution-shift penalty.

.. math::
    \mathcal L = \frac1n\sum_{i \in \text{train}} \beta_i\,\ell(z_i, y_i)
                 + \lambda\, d(h_{\text{train}}, h_{\text{IID}})

with :math:`h` the model's last hidden layer, :math:`d` CMD, MMD or a DANN domain
discriminator behind a gradient-reversal layer, the IID nodes an unlabelled uniform sample
(``srgnn.sampling.iid_sample``) and :math:`\beta` KMM weights on PPR rows (default for
the linear models APPNP and SGC) or ones.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from ._validation import check_choice, check_index, check_int, check_number
from .models.appnp import APPNP
from .models.base import NodeClassifier
from .models.pyg import as_node_classifier
from .graph import Graph, graph_input
from .ppr import graph_ppr_sq_distances
from .sampling import default_pool, iid_sample, push_sq_distances
from .shift import cmd, kmm_weights_from_sq_distances, label_shift_weights, mmd

REGULARIZERS = (None, "cmd", "mmd", "dann")
#: How the IID sample is drawn: ``"uniform"`` reads no label; ``"label-balanced"`` is the
#: SR-GNN paper's protocol and reads the labels of unlabelled nodes.
IID_SAMPLES = ("uniform", "label-balanced")
#: A shift penalty of your own: hidden rows of the training nodes ``[n, H]`` and of the IID
#: sample ``[m, H]`` -> a differentiable scalar.
Penalty = Callable[[Tensor, Tensor], Tensor]
INSTANCE_WEIGHTS = (None, "kmm", "auto")
#: Where KMM's PPR rows come from: exact solves, or push approximations (PPR-S).
KMM_PPR = ("exact", "push")
#: Largest graph whose exact PPR rows KMM computes: one sparse LU of the graph's system, whose
#: fill-in grows fast with N (PubMed's 19,717 nodes take about a second).
MAX_EXACT_PPR_NODES = 100_000


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.scale * grad, None


def kmm_node_weights(graph: Graph | Data, nodes: Tensor, iid_idx: Tensor, *, teleport: float = 0.1,
                     lower: float = 0.2, ppr: str = "exact") -> Tensor:
    """KMM weights ``[n]`` (float64) for ``nodes`` ``[n]``, labelled, that make their PPR rows
    look like those of ``iid_idx`` ``[m]``, an unlabelled sample; each class's weights sum to
    its count (``srgnn.shift.kmm_weights``). ``ppr``: ``"exact"`` rows or ``"push"``
    approximations (PPR-S). ``ShiftRobust`` weighs its training loss with them; weighting
    held-out labelled nodes the same way estimates quantities on the IID nodes instead
    (``srgnn.calibration.fit_temperature``'s ``weights``)."""
    data = graph.data if isinstance(graph, Graph) else graph
    check_choice(ppr, KMM_PPR, "ppr")
    nodes = check_index(nodes, data.num_nodes, "nodes").cpu()
    iid_idx = check_index(iid_idx, data.num_nodes, "iid_idx").cpu()
    n = nodes.numel()
    both = torch.cat([nodes, iid_idx])
    sq = (graph_ppr_sq_distances(graph, nodes, both, teleport) if ppr == "exact"
          else push_sq_distances(data, nodes, both, teleport))
    return kmm_weights_from_sq_distances(sq[:, :n], sq[:, n:], data.y.view(-1)[nodes].cpu(), lower=lower)


class ShiftRobust(nn.Module):
    r"""Wrap ``model`` (a ``NodeClassifier``) with SR-GNN's shift-robust loss.

    Args:
        model: the GNN; its ``forward_with_hidden`` gives the hidden layer regularized.
        regularizer: ``"cmd"`` (SR-GNN's default), ``"mmd"``, ``"dann"`` (the adversarial
            baseline), ``None``, or your own penalty: a callable ``d(h_train, h_iid) -> scalar``
            on ``[n, H]`` and ``[m, H]`` hidden rows (differentiable; ``ReplicaTrainer`` calls
            it once per replica).
        lam: weight of the regularizer.
        instance_weights: ``"kmm"``, ``None``, or ``"auto"`` (KMM for linear models).
        iid_size: size of the unlabelled IID sample; default ``max(n_train, 500)``.
        iid: ``"uniform"`` (default): the IID sample is drawn uniformly from the unlabelled nodes,
            reading no label. ``"label-balanced"``: the SR-GNN paper's protocol, n_train / C
            nodes of each class from the graph's candidate pool (``default_pool``), which
            **reads the true labels of unlabelled nodes** (a leak no real user has): only for
            reproducing the paper's figures (docs/reproduction.md). Training nodes are left out.
        moments: CMD order (5). kmm_lower: KMM lower bound B (0.2). kmm_teleport: the PPR
            teleport of the rows KMM matches (0.1; the authors' code uses 0.01 for every graph,
            while their published sets were sampled at 0.01 on Cora and 0.1 on CiteSeer and
            PubMed, ``srgnn.sampling.default_teleport``. On PubMed's and CiteSeer's validation
            nodes 0.1 beat 0.01 on the mean and on most paired sets for SR-SGC, SR-DGI and
            SR-APPNP alike:
            ``benchmarks.select_on_validation``, docs/reproduction.md).
        kmm_ppr: ``"exact"`` PPR rows (default; refused above ``MAX_EXACT_PPR_NODES`` nodes) or
            ``"push"``, push-approximated rows (``srgnn.sampling.push_sq_distances``), as the
            authors' large-graph code does.
        max_pull: cap the penalty's pull on the model: at each training step its weight is
            :math:`\lambda \min(1, r \lVert\partial \mathrm{CE}/\partial\theta\rVert /
            \lVert\lambda\,\partial d/\partial\theta\rVert)` (the factor detached), with
            :math:`\theta` the parameters the penalty reaches (those beneath the hidden layer) and
            :math:`r` = ``max_pull``: the penalty never pulls them more than ``r`` times as hard as
            the labels do. A penalty that outweighs the labels by far collapses the hidden layer to
            a constant, on which every distance is zero (docs/graphs.md). ``None``: no cap.
            ``"auto"`` (default): 1 for APPNP, none for the others. Chosen on validation nodes by a
            rule fixed before the runs (docs/graphs.md): for SR-APPNP the cap at 1 ends the
            collapse on raw-count features and is inert on the citation graphs, where its penalty
            never outpulls the labels. For SR-GCN no cap tried (1 or 4, with or without
            ``deconflict``) kept every training set within 10 points of GCN's; SR-SGC capped
            avoids its collapses but loses 4.6 points on PubMed's validation nodes. Both stay
            uncapped: pass ``max_pull=1`` where one collapses.
        label_shift: weight the training rows in the penalty by :math:`\hat q(y)/p(y)`, the IID
            sample's predicted class share over the training set's (``srgnn.shift.label_shift_weights``,
            from the current logits, detached), so that CMD or MMD compares the IID rows with the
            training rows in the IID sample's class mix. Localized sets take the same number of nodes
            per class, while real graphs' classes are unequal: aligning the two marginals as they
            are pulls classes into each other. ``"cmd"`` and ``"mmd"`` only. Off by default: it did
            not help on validation nodes (docs/graphs.md, third round). A model trained on
            localized labels predicts a class mix for the IID nodes farther from their true mix
            than the uniform one, so the weights move the training rows away from it.
        deconflict: at each step, remove the part of the penalty's pull on those parameters that
            opposes the labels' pull (``srgnn.robust.steer``). Off by default: alone it does not
            stop the collapse on raw counts, and with ``max_pull=1`` it scored below the cap
            alone on validation nodes (docs/graphs.md).

    Call ``setup(graph, train_idx, seed)`` before ``loss``; ``srgnn.Trainer`` does this.
    """

    def __init__(self, model: NodeClassifier, regularizer: str | Penalty | None = "cmd", lam: float = 1.0,
                 instance_weights: str | None = "auto", iid_size: int | None = None, moments: int = 5,
                 kmm_lower: float = 0.2, kmm_teleport: float = 0.1, iid: str = "uniform",
                 kmm_ppr: str = "exact", max_pull: float | str | None = "auto", deconflict: bool = False,
                 label_shift: bool = False):
        super().__init__()
        model = as_node_classifier(model, "ShiftRobust")
        if not callable(regularizer):
            check_choice(regularizer, REGULARIZERS, "regularizer")
        check_choice(instance_weights, INSTANCE_WEIGHTS, "instance_weights")
        check_choice(kmm_ppr, KMM_PPR, "kmm_ppr")
        self.kmm_ppr = kmm_ppr
        check_choice(iid, IID_SAMPLES, "iid")
        lam = check_number(lam, "lam")
        iid_size = None if iid_size is None else check_int(iid_size, "iid_size")
        moments = check_int(moments, "moments")
        kmm_lower = check_number(kmm_lower, "kmm_lower")
        if not 0.0 < check_number(kmm_teleport, "kmm_teleport") < 1.0:
            raise ValueError(f"kmm_teleport must lie in (0, 1); got {kmm_teleport!r}.")
        self.model, self.regularizer, self.lam = model, regularizer, lam
        if instance_weights == "auto":
            instance_weights = "kmm" if model.linear else None
        self.instance_weights, self.iid_size, self.moments = instance_weights, iid_size, moments
        self.kmm_lower, self.kmm_teleport, self.iid = kmm_lower, kmm_teleport, iid
        if max_pull == "auto":  # the cap where the rule of docs/graphs.md chose it: APPNP's
            max_pull = 1.0 if isinstance(model, APPNP) else None
        elif max_pull is not None and (isinstance(max_pull, str) or not check_number(max_pull, "max_pull") > 0):
            raise ValueError(f"max_pull must be a number > 0, 'auto' or None (no cap); got {max_pull!r}.")
        if not isinstance(deconflict, bool):
            raise TypeError(f"deconflict must be True or False; got {deconflict!r}.")
        if not isinstance(label_shift, bool):
            raise TypeError(f"label_shift must be True or False; got {label_shift!r}.")
        if label_shift and regularizer not in ("cmd", "mmd"):
            raise ValueError(f"label_shift=True weights the rows of 'cmd' or 'mmd'; got regularizer={regularizer!r}.")
        self.max_pull, self.deconflict, self.label_shift = max_pull, deconflict, label_shift
        self.discriminator: nn.Module | None = None

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(x, graph_input(self.model, edge_index))

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_hidden(x, graph_input(self.model, edge_index))

    def reset_parameters(self) -> None:
        self.model.reset_parameters()
        if self.discriminator is not None:
            for layer in self.discriminator:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()

    def setup(self, graph: Graph | Data, train_idx: Tensor, seed: int = 0, iid_idx: Tensor | None = None,
              hidden_channels: int | None = None) -> "ShiftRobust":
        """Draw the IID sample and compute instance weights for one training set. A ``Graph``
        (``Graph.from_data``) keeps the KMM weights and the PPR factorization behind them for
        the next model set up on it; a ``Data`` computes them afresh."""
        data = graph.data if isinstance(graph, Graph) else graph
        if data is None:
            raise ValueError("This Graph has no labels; build it with Graph.from_data(data), which keeps the Data.")
        train_idx = check_index(train_idx, data.num_nodes, "train_idx").cpu()
        needs_iid = self.regularizer is not None or self.instance_weights is not None
        if iid_idx is not None:
            iid_idx = check_index(iid_idx, data.num_nodes, "iid_idx").cpu()
            overlap = torch.isin(iid_idx, train_idx)
            if overlap.any():
                raise ValueError(f"{int(overlap.sum())} IID node(s) are also training nodes "
                                 f"(e.g. node {int(iid_idx[overlap][0])}); the IID sample must be unlabelled nodes.")
        elif needs_iid:
            if self.iid == "label-balanced":  # the paper's protocol: reads unlabelled nodes' labels
                iid_idx = iid_sample(data, self.iid_size or train_idx.numel(), seed, candidates=default_pool(data),
                                     balanced=True, exclude=train_idx)
            else:
                size = self.iid_size or max(train_idx.numel(), 500)
                size = min(size, data.num_nodes - train_idx.numel())
                iid_idx = iid_sample(data, size, seed, exclude=train_idx)
        self.iid_idx_ = iid_idx
        self.weights_ = torch.ones(train_idx.numel())
        if self.instance_weights == "kmm":
            # Label-free up to the training labels, so every model trained on one set with one
            # IID sample (SR-APPNP, SR-SGC, SR-DGI in a study) shares one PPR solve and QP.
            if self.kmm_ppr == "exact" and data.num_nodes > MAX_EXACT_PPR_NODES:
                raise ValueError(f"KMM on exact PPR rows of a {data.num_nodes:,}-node graph (above "
                                 f"{MAX_EXACT_PPR_NODES:,}) needs a sparse LU too large to build; pass "
                                 "kmm_ppr='push' for push-approximated rows (PPR-S), or instance_weights=None.")
            key = ("kmm", tuple(train_idx.tolist()), tuple(iid_idx.tolist()), tuple(data.y[train_idx].tolist()),
                   self.kmm_teleport, self.kmm_lower, self.kmm_ppr)

            def weights() -> Tensor:
                return kmm_node_weights(graph, train_idx, iid_idx, teleport=self.kmm_teleport, lower=self.kmm_lower,
                                        ppr=self.kmm_ppr)

            self.weights_ = (graph.cached(key, weights) if isinstance(graph, Graph) else weights()).float()
        if self.regularizer == "dann" and self.discriminator is None:
            if hidden_channels is None:
                raise ValueError("DANN needs hidden_channels to size its discriminator.")
            self.discriminator = nn.Sequential(nn.Linear(hidden_channels, hidden_channels), nn.ReLU(),
                                               nn.Linear(hidden_channels, 1))
        return self

    def penalty(self, hidden_train: Tensor, hidden_iid: Tensor, train_weights: Tensor | None = None) -> Tensor:
        """The shift term d(h_train, h_iid) (before multiplying by ``lam``); ``train_weights``
        ``[..., n]`` weight the training rows (``label_shift``; ``"cmd"`` and ``"mmd"`` only)."""
        if callable(self.regularizer):
            value = self.regularizer(hidden_train, hidden_iid)
            if not isinstance(value, Tensor) or value.numel() != 1:
                what = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)
                raise TypeError(f"The penalty {getattr(self.regularizer, '__name__', self.regularizer)!r} must return a "
                                f"differentiable scalar tensor computed from h_train and h_iid; it returned {what} "
                                "(a Python number carries no gradient; reduce a vector with .mean() or .sum()).")
            return value.reshape(())
        if self.regularizer == "cmd":
            return cmd(hidden_train, hidden_iid, self.moments, weights=train_weights)
        if self.regularizer == "mmd":
            return mmd(hidden_train, hidden_iid, weights=train_weights)
        both = _GradientReversal.apply(torch.cat([hidden_train, hidden_iid]), 1.0)
        domain = torch.cat([torch.ones(hidden_train.size(0)), torch.zeros(hidden_iid.size(0))]).to(both.device)
        return F.binary_cross_entropy_with_logits(self.discriminator(both).view(-1), domain)

    @property
    def has_penalty(self) -> bool:
        """Whether the loss has a shift term: a regularizer with a positive ``lam``."""
        return self.regularizer is not None and self.lam > 0

    def shift_term(self, hidden_train: Tensor, hidden_iid: Tensor, y_train: Tensor | None = None,
                   logits_iid: Tensor | None = None) -> Tensor:
        """``lam * d(h_train, h_iid)``, the one place the weight meets the penalty; the built-in
        penalties also take batches ``[R, n, H]`` and ``[R, m, H]`` (one term per replica, ``[R]``).
        With ``label_shift``, the training labels ``y_train`` ``[..., n]`` and the IID rows'
        logits ``logits_iid`` ``[..., m, C]`` give the training rows' weights."""
        weights = None
        if self.label_shift:
            if y_train is None or logits_iid is None:
                raise ValueError("label_shift=True needs y_train and logits_iid to weight the training rows.")
            weights = label_shift_weights(y_train, logits_iid)
        return self.lam * self.penalty(hidden_train, hidden_iid, weights)

    def loss(self, x: Tensor, edge_index: Tensor, y: Tensor, train_idx: Tensor,
             iid_idx: Tensor | None = None) -> Tensor:
        """Weighted cross-entropy over ``train_idx`` plus ``lam`` times the shift penalty
        between ``train_idx`` and ``iid_idx`` (default: the IID sample drawn by ``setup``;
        pass it relabelled when ``x`` is a subgraph)."""
        return sum(self.loss_terms(x, edge_index, y, train_idx, iid_idx).values())

    def loss_terms(self, x: Tensor, edge_index: Tensor, y: Tensor, train_idx: Tensor,
                   iid_idx: Tensor | None = None) -> dict[str, Tensor]:
        """``loss``'s terms by name (``objective_terms``), whose sum is the loss."""
        return self.objective_terms(*self.forward_with_hidden(x, edge_index), y, train_idx, iid_idx)

    def objective(self, logits: Tensor, hidden: Tensor, y: Tensor, train_idx: Tensor,
                  iid_idx: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
        """``loss`` from the model's outputs, ``logits`` ``[N, C]`` and ``hidden`` ``[N, H]``;
        ``weights`` ``[len(train_idx)]``, the instance weights of a batch of the training set
        (default: ``weights_``, those of the whole training set)."""
        return sum(self.objective_terms(logits, hidden, y, train_idx, iid_idx, weights).values())

    def objective_terms(self, logits: Tensor, hidden: Tensor, y: Tensor, train_idx: Tensor,
                        iid_idx: Tensor | None = None, weights: Tensor | None = None) -> dict[str, Tensor]:
        """``objective``'s terms: ``"cross-entropy"``, and ``"lam * penalty"`` where there is one;
        a trainer reads them to say which term went non-finite."""
        weights = (self.weights_ if weights is None else weights).to(logits.device)
        terms = {"cross-entropy": (weights * F.cross_entropy(logits[train_idx], y[train_idx], reduction="none")).mean()}
        if self.has_penalty:
            iid_idx = self.iid_idx_ if iid_idx is None else iid_idx
            iid_idx = iid_idx.to(hidden.device)
            weighted = self.shift_term(hidden[train_idx], hidden[iid_idx], y[train_idx],
                                       logits[iid_idx] if self.label_shift else None)
            if (self.max_pull is not None or self.deconflict) and weighted.requires_grad:
                params = [p for p in self.model.parameters() if p.requires_grad]
                weighted = steer(terms["cross-entropy"], weighted, params, self.max_pull, self.deconflict)
            terms["lam * penalty"] = weighted
        return terms


def steer(ce: Tensor, penalty: Tensor, params: list[Tensor], max_pull: float | None = None,
          deconflict: bool = False) -> Tensor:
    r"""The penalty term to add to the loss, steered against the labels' pull on ``params``
    (those it does not reach are ignored). ``ce`` and ``penalty`` are scalars, or ``[R]`` for R
    replicas whose parameters are stacked ``[R, ...]`` (``ReplicaTrainer``): one steer each.

    With :math:`g_c = \partial\,\mathrm{CE}/\partial\theta` and :math:`g_p` the penalty's, both
    per replica and the factors detached:

    - ``max_pull`` r: the penalty is scaled by :math:`s = \min(1, r\lVert g_c\rVert / \lVert g_p\rVert)`;
    - ``deconflict``: where :math:`s\,g_p \cdot g_c < 0`, the term adds :math:`-a\,\mathrm{CE}`
      with :math:`a = s\,g_p\cdot g_c / \lVert g_c\rVert^2`, so the gradient of CE plus the term is
      :math:`g_c + s\,g_p - a\,g_c`: the penalty's pull with its part against the labels' removed
      (one-sided PCGrad, Yu et al. 2020).
    """
    replicas = None if penalty.dim() == 0 else penalty.numel()
    pulls = torch.autograd.grad(penalty.sum(), params, retain_graph=True, allow_unused=True)
    reached = [(p, g) for p, g in zip(params, pulls) if g is not None]
    if not reached:
        return penalty
    ce_pulls = torch.autograd.grad(ce.sum(), [p for p, _ in reached], retain_graph=True, allow_unused=True)
    ce_pulls = [torch.zeros_like(p) if g is None else g for (p, _), g in zip(reached, ce_pulls)]

    def total(products) -> Tensor:
        summed = sum(x.reshape(replicas or 1, -1).sum(1) for x in products)
        return summed if replicas else summed[0]

    ce_sq = total(g * g for g in ce_pulls)
    scale = torch.ones_like(ce_sq)
    if max_pull is not None:
        penalty_norm = total(g * g for _, g in reached).sqrt()
        scale = (max_pull * ce_sq.sqrt() / penalty_norm.clamp_min(1e-12)).clamp(max=1.0)
    term = penalty * scale.detach()
    if deconflict:
        dot = scale * total(gp * gc for (_, gp), gc in zip(reached, ce_pulls))
        term = term - (dot / ce_sq.clamp_min(1e-30)).clamp(max=0.0).detach() * ce
    return term
