r"""The shift-robust loss: any model's cross-entropy plus a distribution-shift penalty.

.. math::
    \mathcal L = \frac1n\sum_{i \in \text{train}} \beta_i\,\ell(z_i, y_i)
                 + \lambda\, d(h_{\text{train}}, h_{\text{IID}})

with :math:`h` the model's last hidden layer, :math:`d` CMD, MMD or a DANN domain
discriminator behind a gradient-reversal layer, the IID nodes an unlabelled uniform sample
(``srgnn.sampling.iid_sample``) and :math:`\beta` KMM weights on PPR rows (default for
the linear models APPNP and SGC) or ones. The IID sample and :math:`\beta` of a training set
come from ``srgnn.robustness.preparation.prepare``; the trainer holds them and passes them in.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import reset

from .._validation import check_choice, check_int, check_number
from .adversarial import DomainDiscriminator
from ..models.appnp import APPNP
from ..models.base import NodeClassifier
from ..models.pyg import as_node_classifier
from ..graph import model_inputs
from .shift import cmd, conditional_cmd, label_shift_weights, mmd

REGULARIZERS = (None, "cmd", "mmd", "dann")
#: How the IID sample is drawn: ``"uniform"`` reads no label; ``"label-balanced"`` is the
#: SR-GNN paper's protocol and reads the labels of unlabelled nodes.
IID_SAMPLES = ("uniform", "label-balanced")
#: A shift penalty of your own: hidden rows of the training nodes ``[n, H]`` and of the IID
#: sample ``[m, H]`` -> a differentiable scalar. An ``nn.Module`` penalty may have parameters
#: (lazy ones, e.g. ``nn.LazyLinear``, take their shapes from the hidden layer): they train
#: with the model (``srgnn.robustness.adversarial.DomainDiscriminator`` is one).
Penalty = Callable[[Tensor, Tensor], Tensor]
INSTANCE_WEIGHTS = (None, "kmm", "renode", "auto")
#: Where KMM's PPR rows come from: exact solves, or push approximations (PPR-S).
KMM_PPR = ("exact", "push")


class ShiftRobust(nn.Module):
    r"""Wrap ``model`` (a ``NodeClassifier``) with SR-GNN's shift-robust loss.

    Args:
        model: the GNN; its ``forward_with_hidden`` gives the hidden layer regularized.
        regularizer: ``"cmd"`` (SR-GNN's default), ``"mmd"``, ``"dann"`` (the adversarial
            baseline), ``None``, or your own penalty: a callable ``d(h_train, h_iid) -> scalar``
            on ``[n, H]`` and ``[m, H]`` hidden rows (differentiable; ``ReplicaTrainer`` calls
            it once per replica).
        lam: weight of the regularizer.
        instance_weights: ``"kmm"``, ``"renode"`` (topological-conflict weights of the training
            nodes, ``srgnn.robustness.renode``), ``None``, or ``"auto"`` (KMM for linear models).
        iid_size: size of the unlabelled IID sample; default ``max(n_train, 500)``.
        iid: ``"uniform"`` (default): the IID sample is drawn uniformly from the unlabelled nodes,
            reading no label. ``"label-balanced"``: the SR-GNN paper's protocol, n_train / C
            nodes of each class from the graph's candidate pool (``default_pool``), which
            **reads the true labels of unlabelled nodes** (a leak no real user has): only for
            reproducing the paper's figures (docs/reproduction.md). Training nodes are left out.
        moments: CMD order (5). kmm_lower: KMM lower bound B (0.2). kmm_teleport: the PPR
            teleport of the rows KMM matches (0.1, chosen over the authors' 0.01 on validation
            nodes: docs/reproduction.md).
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
            ``"auto"`` (default): 1 for APPNP, none for the others, as chosen on validation nodes
            (docs/graphs.md): for SR-APPNP the cap ends the collapse on raw-count features and
            is inert on the citation graphs; for SR-GCN and SR-SGC it did not pass. Pass
            ``max_pull=1`` where one of them collapses.
        label_shift: weight the training rows in the penalty by :math:`\hat q(y)/p(y)`, the IID
            sample's predicted class share over the training set's (``srgnn.robustness.shift.label_shift_weights``,
            from the current logits, detached), so that CMD or MMD compares the IID rows with the
            training rows in the IID sample's class mix. Localized sets take the same number of nodes
            per class, while real graphs' classes are unequal: aligning the two marginals as they
            are pulls classes into each other. ``"cmd"`` and ``"mmd"`` only. Off by default: it did
            not help on validation nodes (docs/graphs.md, third round). A model trained on
            localized labels predicts a class mix for the IID nodes farther from their true mix
            than the uniform one, so the weights move the training rows away from it.
        deconflict: at each step, remove the part of the penalty's pull on those parameters that
            opposes the labels' pull (``srgnn.robustness.robust.steer``). Off by default: alone it does not
            stop the collapse on raw counts, and with ``max_pull=1`` it scored below the cap
            alone on validation nodes (docs/graphs.md).
        conditional: compare each class with itself (``srgnn.robustness.shift.conditional_cmd``):
            the training rows of class c against the IID rows weighted by the model's current
            probability of c (detached), summed over classes by the training set's class shares.
            It aligns :math:`p(h \mid y)` and leaves the class mix alone, where the marginal CMD
            pulls a uniform localized set towards the graph's unequal mix. ``"cmd"`` only. Off by
            default: it did not help on validation nodes (docs/graphs.md, fourth round), since the
            higher moments of a class's few labelled rows are mostly sampling noise and the IID
            rows it pulls them towards are the biased model's own guesses.

    ``srgnn.Trainer`` prepares each training set (``srgnn.robustness.preparation.prepare``: the IID sample
    and the instance weights) and holds the result; this module holds only the options, the
    model and a penalty's own parameters.
    """

    def __init__(self, model: NodeClassifier, regularizer: str | Penalty | None = "cmd", lam: float = 1.0,
                 instance_weights: str | None = "auto", iid_size: int | None = None, moments: int = 5,
                 kmm_lower: float = 0.2, kmm_teleport: float = 0.1, iid: str = "uniform",
                 kmm_ppr: str = "exact", max_pull: float | str | None = "auto", deconflict: bool = False,
                 label_shift: bool = False, conditional: bool = False):
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
        for name, flag in (("label_shift", label_shift), ("conditional", conditional)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False; got {flag!r}.")
        if label_shift and regularizer not in ("cmd", "mmd"):
            raise ValueError(f"label_shift=True weights the rows of 'cmd' or 'mmd'; got regularizer={regularizer!r}.")
        if conditional and (regularizer != "cmd" or label_shift):
            raise ValueError("conditional=True compares the classes one by one with 'cmd', which needs no class mix: "
                             f"pass regularizer='cmd' and label_shift=False; got {regularizer!r}, {label_shift}.")
        self.max_pull, self.deconflict = max_pull, deconflict
        self.label_shift, self.conditional = label_shift, conditional
        # DANN's penalty, a module with parameters of its own (lazy: sized by the hidden layer)
        self.discriminator = DomainDiscriminator() if regularizer == "dann" else None

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(*model_inputs(self.model, x, edge_index))

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_hidden(*model_inputs(self.model, x, edge_index))

    def reset_parameters(self) -> None:
        self.model.reset_parameters()
        for penalty in (self.discriminator, self.regularizer):
            if isinstance(penalty, nn.Module):
                reset(penalty)  # PyG's: its reset_parameters, or each child's

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
        return self.discriminator(hidden_train, hidden_iid)

    def penalty_parameters(self) -> list[nn.Parameter]:
        """The penalty's own parameters (DANN's discriminator's, a module penalty's), which train
        with the model's."""
        return [p for penalty in (self.discriminator, self.regularizer) if isinstance(penalty, nn.Module)
                for p in penalty.parameters()]

    @property
    def reads_iid_logits(self) -> bool:
        """Whether the shift term reads the training labels and the IID rows' logits
        (``label_shift``, ``conditional``), which mini-batch training does not compute."""
        return self.label_shift or self.conditional

    @property
    def has_penalty(self) -> bool:
        """Whether the loss has a shift term: a regularizer with a positive ``lam``."""
        return self.regularizer is not None and self.lam > 0

    def shift_term(self, hidden_train: Tensor, hidden_iid: Tensor, y_train: Tensor | None = None,
                   logits_iid: Tensor | None = None) -> Tensor:
        """``lam * d(h_train, h_iid)``, the one place the weight meets the penalty; the built-in
        penalties also take batches ``[R, n, H]`` and ``[R, m, H]`` (one term per replica, ``[R]``).
        With ``label_shift`` or ``conditional`` (``reads_iid_logits``), the training labels
        ``y_train`` ``[..., n]`` and the IID rows' logits ``logits_iid`` ``[..., m, C]`` enter it."""
        if self.reads_iid_logits and (y_train is None or logits_iid is None):
            raise ValueError("label_shift=True and conditional=True need y_train and logits_iid.")
        if self.conditional:
            return self.lam * conditional_cmd(hidden_train, hidden_iid, y_train, logits_iid, self.moments)
        weights = label_shift_weights(y_train, logits_iid) if self.label_shift else None
        return self.lam * self.penalty(hidden_train, hidden_iid, weights)

    def loss(self, x: Tensor, edge_index: Tensor, y: Tensor, train_idx: Tensor, iid_idx: Tensor | None = None,
             weights: Tensor | None = None) -> Tensor:
        """Cross-entropy over ``train_idx`` ``[n]`` weighted by ``weights`` ``[n]`` (default ones)
        plus ``lam`` times the shift penalty between ``train_idx`` and ``iid_idx`` ``[m]`` (both
        relabelled when ``x`` is a subgraph; ``srgnn.robustness.preparation.prepare`` draws them)."""
        return sum(self.loss_terms(x, edge_index, y, train_idx, iid_idx, weights).values())

    def loss_terms(self, x: Tensor, edge_index: Tensor, y: Tensor, train_idx: Tensor,
                   iid_idx: Tensor | None = None, weights: Tensor | None = None) -> dict[str, Tensor]:
        """``loss``'s terms by name (``objective_terms``), whose sum is the loss."""
        return self.objective_terms(*self.forward_with_hidden(x, edge_index), y, train_idx, iid_idx, weights)

    def objective(self, logits: Tensor, hidden: Tensor, y: Tensor, train_idx: Tensor,
                  iid_idx: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
        """``loss`` from the model's outputs, ``logits`` ``[N, C]`` and ``hidden`` ``[N, H]``."""
        return sum(self.objective_terms(logits, hidden, y, train_idx, iid_idx, weights).values())

    def objective_terms(self, logits: Tensor, hidden: Tensor, y: Tensor, train_idx: Tensor,
                        iid_idx: Tensor | None = None, weights: Tensor | None = None) -> dict[str, Tensor]:
        """``objective``'s terms: ``"cross-entropy"``, and ``"lam * penalty"`` where there is one;
        a trainer reads them to say which term went non-finite."""
        per_node = F.cross_entropy(logits[train_idx], y[train_idx], reduction="none")
        terms = {"cross-entropy": (per_node if weights is None else weights.to(logits.device) * per_node).mean()}
        if self.has_penalty:
            if iid_idx is None:
                raise ValueError("This loss has a shift penalty, which compares the training nodes with an IID "
                                 "sample: pass iid_idx (srgnn.robustness.preparation.prepare draws one).")
            iid_idx = iid_idx.to(hidden.device)
            weighted = self.shift_term(hidden[train_idx], hidden[iid_idx], y[train_idx],
                                       logits[iid_idx] if self.reads_iid_logits else None)
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
