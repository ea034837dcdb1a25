r"""Correct and Smooth (Huang et al., ICLR 2021) on any model's predictions, on PyG's
``CorrectAndSmooth``.

Correct: the training nodes' residuals :math:`E^{(0)} = Y - P` (zero rows elsewhere) spread
as in label propagation, :math:`E^{(k+1)} = \alpha_1 \hat A E^{(k)} + (1 - \alpha_1) E^{(0)}`,
and are added back, scaled so that each node's correction is as large as the training
residuals (``autoscale``). Smooth: the corrected predictions, with the training nodes reset
to their labels, spread the same way with :math:`\alpha_2`. :math:`\hat A = D^{-1/2} A D^{-1/2}`.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn.models import CorrectAndSmooth

from .._validation import check_fraction, check_int
from ..graph import Graph, graph_for
from ..training.trainer import check_training_set


def correct_and_smooth(probs: Tensor, data: Data | Graph, train_idx: Tensor, *, num_correction_layers: int = 50,
                       correction_alpha: float = 1.0, num_smoothing_layers: int = 50, smoothing_alpha: float = 0.8,
                       autoscale: bool = True) -> Tensor:
    """``probs`` ``[N, C]``, a model's class probabilities (softmax of its logits), corrected and
    smoothed with the labels of ``train_idx`` ``[n]``; ``[N, C]`` scores on the CPU. The
    defaults are those of the paper's and PyG's examples."""
    graph = graph_for(data)
    train_idx = check_training_set(graph, train_idx)
    probs = torch.as_tensor(probs).detach().float().cpu()
    if probs.dim() != 2 or probs.size(0) != graph.num_nodes:
        raise ValueError(f"probs must be [num_nodes={graph.num_nodes}, C] class probabilities; got "
                         f"{tuple(probs.shape)}.")
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(1), torch.ones(probs.size(0)), atol=1e-3):
        raise ValueError("probs must be class probabilities (rows of non-negative numbers summing to 1); pass "
                         "logits.softmax(-1).")
    post = CorrectAndSmooth(check_int(num_correction_layers, "num_correction_layers"),
                            check_fraction(correction_alpha, "correction_alpha"),
                            check_int(num_smoothing_layers, "num_smoothing_layers"),
                            check_fraction(smoothing_alpha, "smoothing_alpha"), autoscale=bool(autoscale))
    y_train = graph.data.y.view(-1).cpu()[train_idx]
    edge_index = graph.edge_index.cpu()
    with torch.no_grad():
        corrected = post.correct(probs, y_train, train_idx, edge_index)
        return post.smooth(corrected, y_train, train_idx, edge_index)
