"""Self-training (Li, Han & Wu, AAAI 2018; Sun, Lin & Zhu's multi-stage M3S, AAAI 2020): a model
trained on the labelled nodes labels the unlabelled nodes it is surest of, and a model trained on
both replaces it. Localized labels cover one neighbourhood per class; pseudo-labels reach the
rest of the graph, so the next model trains on a sample less biased than the first."""
from __future__ import annotations

import copy

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_choice, check_int
from ..graph import Graph, graph_for
from ..training.trainer import Trainer, check_training_set, classification_scores, num_classes


#: How the pseudo-labels are shared among the classes: the same number per class, or shares
#: that follow the classes the model predicts for the unlabelled nodes.
BALANCES = ("uniform", "predicted")


def most_confident(probs: Tensor, exclude: Tensor, per_class: int,
                   balance: str = "uniform") -> tuple[Tensor, Tensor]:
    """The nodes outside ``exclude`` that ``probs`` ``[N, C]`` is surest of, with their predicted
    classes: ``(nodes [m], classes [m])``. ``balance="uniform"``: up to ``per_class`` per class;
    ``"predicted"``: ``per_class * C`` in all, each class's share that of the unlabelled nodes
    predicted in it (rounded, at least one)."""
    confidence, predicted = probs.max(1)
    confidence = confidence.clone()
    confidence[exclude] = -1.0
    counts = torch.bincount(predicted[confidence >= 0], minlength=probs.size(1)).double()
    quotas = ([per_class] * probs.size(1) if balance == "uniform" else
              (per_class * probs.size(1) * counts / counts.sum()).round().clamp_min(1).long().tolist())
    nodes = []
    for c, quota in enumerate(quotas):
        candidates = ((predicted == c) & (confidence >= 0)).nonzero().view(-1)
        order = confidence[candidates].argsort(descending=True, stable=True)
        nodes.append(candidates[order[:quota]])
    nodes = torch.cat(nodes)
    return nodes, predicted[nodes]


class SelfTraining:
    """Train ``model`` on the labelled nodes, then ``rounds`` times: add the ``per_class`` unlabelled
    nodes per class that the last model is surest of, with its predicted classes as labels,
    and train ``model`` afresh on the labelled and pseudo-labelled nodes.

    Args:
        model: any model ``Trainer`` takes (an srgnn model, ``ShiftRobust(...)``, a PyG model);
            it is re-initialised at each round.
        rounds: pseudo-labelling rounds (0: the model alone).
        per_class: pseudo-labelled nodes per class and round (at most as many as it predicts).
        balance: ``"uniform"`` (``per_class`` for every class) or ``"predicted"`` (``per_class``
            times the classes in all, shared as the model's predictions on the unlabelled
            nodes are, for graphs whose classes are far from equal in size).
        **trainer_options: ``Trainer``'s options (``epochs``, ``seed``, ``device``, ...).

    Attributes: ``trainer_`` (the last round's ``Trainer``), ``pseudo_idx_`` ``[m]`` and
    ``pseudo_labels_`` ``[m]`` (the last round's pseudo-labelled nodes and their labels).
    """

    def __init__(self, model, *, rounds: int = 1, per_class: int = 100, balance: str = "uniform",
                 **trainer_options):
        check_choice(balance, BALANCES, "balance")
        self.model, self.trainer_options, self.balance = model, trainer_options, balance
        self.rounds = check_int(rounds, "rounds", minimum=0)
        self.per_class = check_int(per_class, "per_class")
        Trainer(model, **trainer_options)  # its options, checked now rather than after the first fit

    def fit(self, data: Data | Graph, train_idx: Tensor) -> "SelfTraining":
        """Train on ``train_idx``'s labels and the pseudo-labels; returns ``self``."""
        graph = graph_for(data)
        train_idx = check_training_set(graph, train_idx)
        self.trainer_ = Trainer(self.model, **self.trainer_options).fit(graph, train_idx)
        self.graph_ = graph
        self.pseudo_idx_, self.pseudo_labels_ = train_idx[:0], train_idx[:0]
        y_train = graph.data.y.view(-1).cpu()[train_idx]
        for _ in range(self.rounds):
            probs = self.trainer_.logits(graph).softmax(-1)
            self.pseudo_idx_, self.pseudo_labels_ = most_confident(probs, train_idx, self.per_class, self.balance)
            # Labels only where they are known or guessed (-1 elsewhere), so nothing else is read.
            labels = torch.full((graph.num_nodes,), -1, dtype=torch.long)
            labels[train_idx], labels[self.pseudo_idx_] = y_train, self.pseudo_labels_
            pseudo = copy.copy(graph.data)
            pseudo.y, pseudo.num_classes = labels.to(graph.data.y.device), num_classes(graph.data)
            pseudo_graph = graph.relabelled(pseudo)  # keeps the PPR factors KMM solved with
            self.trainer_ = Trainer(self.model, **self.trainer_options).fit(
                pseudo_graph, torch.cat([train_idx, self.pseudo_idx_]))
        return self

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node, ``[N, C]``, on the CPU."""
        if not hasattr(self, "trainer_"):
            raise RuntimeError("Call fit() before logits(), predict() or evaluate().")
        return self.trainer_.logits(graph_for(data, fitted=self.graph_))

    def predict(self, data: Data | Graph) -> Tensor:
        """Predicted class of every node, ``[N]``."""
        return self.logits(data).argmax(1)

    def evaluate(self, data: Data | Graph, idx: Tensor) -> dict[str, float]:
        """Micro-F1 (= accuracy), macro-F1 and cross-entropy on ``idx``."""
        return classification_scores(self.logits(data), data, idx)
