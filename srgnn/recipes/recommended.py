"""The recipe srgnn recommends for localized labels, chosen in docs/recipes.md by a rule
declared before its runs and read on validation nodes only: shift-robust APPNP (SR-APPNP),
self-trained; given a small labelled sample drawn uniformly from the graph, also trained on its
labels and shifted to its class mix. What it recovers on each graph, what it costs, and where
it falls short, is measured there.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..graph import Graph, graph_for
from ..models.appnp import APPNP
from ..robustness.robust import ShiftRobust
from .._validation import check_index
from ..training.trainer import check_training_set, classification_scores, num_classes
from .class_mix import class_mix, shift_to_class_mix
from .self_training import SelfTraining

#: Self-training's settings in the recipe: one round of 100 pseudo-labels per class.
SELF_TRAINING = {"rounds": 1, "per_class": 100}


class Recommended:
    """SR-APPNP (``ShiftRobust(APPNP(...), lam=0.1)``: KMM instance weights on PPR rows and 0.1
    times CMD against a uniform unlabelled sample) trained on the labelled nodes, then
    retrained, shift-robust again, with the 100 unlabelled nodes per class it is surest of as
    pseudo-labels (``SelfTraining``).

    Given ``sample_idx``, nodes drawn uniformly from the graph and labelled (50 in
    docs/recipes.md), it trains on their labels too, and shifts its predictions from the class
    mix of all its labels to the sample's (``shift_to_class_mix``, both mixes Laplace-smoothed):
    localized labels come evenly from every class, a graph's classes rarely do.

    Args:
        epochs: training epochs of each fit.
        seed: seeds both fits.
        device: where to train (default: ``$SRGNN_DEVICE``, else CUDA when available).

    Attributes: ``self_training_`` (the fitted ``SelfTraining``, with its pseudo-labels);
    ``source_mix_`` and ``target_mix_`` ``[C]`` (the class mixes of the labels and of the
    sample; ``None`` without a sample).
    """

    def __init__(self, *, epochs: int = 200, seed: int = 0, device: str | torch.device | None = None):
        self.epochs, self.seed, self.device = epochs, seed, device

    def fit(self, data: Data | Graph, train_idx: Tensor, sample_idx: Tensor | None = None) -> "Recommended":
        """Train on the labels of ``train_idx`` ``[n]``, and of ``sample_idx`` ``[m]`` if given
        (nodes outside ``train_idx``, drawn uniformly from the graph, labelled in ``data.y``);
        returns ``self``."""
        graph = graph_for(data)
        train_idx = check_training_set(graph, train_idx)
        self.source_mix_ = self.target_mix_ = None
        labelled = train_idx
        if sample_idx is not None:
            sample_idx = check_index(sample_idx, graph.num_nodes, "sample_idx").cpu()
            if bool(torch.isin(sample_idx, train_idx).any()):
                raise ValueError("sample_idx must lie outside train_idx: it stands for the graph's class mix, so it "
                                 "must be drawn uniformly from the other nodes, not from the biased labels.")
            labelled = check_training_set(graph, torch.cat([train_idx, sample_idx]))
            y, classes = graph.data.y.view(-1).cpu(), num_classes(graph.data)
            self.source_mix_, self.target_mix_ = class_mix(y[labelled], classes), class_mix(y[sample_idx], classes)
        model = ShiftRobust(APPNP(graph.x.size(1), num_classes(graph.data)), lam=0.1)
        self.self_training_ = SelfTraining(model, **SELF_TRAINING, epochs=self.epochs, seed=self.seed,
                                           device=self.device).fit(graph, labelled)
        return self

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node, ``[N, C]``, on the CPU (log-probabilities under the sample's
        class mix when ``fit`` was given one)."""
        if not hasattr(self, "self_training_"):
            raise RuntimeError("Call fit() before logits(), predict() or evaluate().")
        logits = self.self_training_.logits(data)
        if self.target_mix_ is None:
            return logits
        return shift_to_class_mix(logits, self.source_mix_, self.target_mix_)

    def predict(self, data: Data | Graph) -> Tensor:
        """Predicted class of every node, ``[N]``."""
        return self.logits(data).argmax(1)

    def evaluate(self, data: Data | Graph, idx: Tensor) -> dict[str, float]:
        """Micro-F1 (= accuracy), macro-F1 and cross-entropy on ``idx``."""
        return classification_scores(self.logits(data), data, idx)
