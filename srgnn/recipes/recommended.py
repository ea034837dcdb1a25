"""The recipe srgnn recommends for localized labels, chosen in docs/recipes.md by a rule
declared before its runs and read on validation nodes only: shift-robust APPNP (SR-APPNP),
self-trained. What it recovers on each graph, what it costs, and where it falls short, is
measured there.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..graph import Graph, graph_for
from ..models.appnp import APPNP
from ..robustness.robust import ShiftRobust
from ..training.trainer import check_training_set, classification_scores, num_classes
from .self_training import SelfTraining

#: Self-training's settings in the recipe: one round of 100 pseudo-labels per class.
SELF_TRAINING = {"rounds": 1, "per_class": 100}


class Recommended:
    """SR-APPNP (``ShiftRobust(APPNP(...), lam=0.1)``: KMM instance weights on PPR rows and 0.1
    times CMD against a uniform unlabelled sample) trained on the labelled nodes, then
    retrained, shift-robust again, with the 100 unlabelled nodes per class it is surest of as
    pseudo-labels (``SelfTraining``).

    Args:
        epochs: training epochs of each fit.
        seed: seeds both fits.
        device: where to train (default: ``$SRGNN_DEVICE``, else CUDA when available).

    Attributes: ``self_training_`` (the fitted ``SelfTraining``, with its pseudo-labels).
    """

    def __init__(self, *, epochs: int = 200, seed: int = 0, device: str | torch.device | None = None):
        self.epochs, self.seed, self.device = epochs, seed, device

    def fit(self, data: Data | Graph, train_idx: Tensor) -> "Recommended":
        """Train on the labels of ``train_idx`` ``[n]``; returns ``self``."""
        graph = graph_for(data)
        train_idx = check_training_set(graph, train_idx)
        model = ShiftRobust(APPNP(graph.x.size(1), num_classes(graph.data)), lam=0.1)
        self.self_training_ = SelfTraining(model, **SELF_TRAINING, epochs=self.epochs, seed=self.seed,
                                           device=self.device).fit(graph, train_idx)
        return self

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node, ``[N, C]``, on the CPU."""
        if not hasattr(self, "self_training_"):
            raise RuntimeError("Call fit() before logits(), predict() or evaluate().")
        return self.self_training_.logits(data)

    def predict(self, data: Data | Graph) -> Tensor:
        """Predicted class of every node, ``[N]``."""
        return self.logits(data).argmax(1)

    def evaluate(self, data: Data | Graph, idx: Tensor) -> dict[str, float]:
        """Micro-F1 (= accuracy), macro-F1 and cross-entropy on ``idx``."""
        return classification_scores(self.logits(data), data, idx)
