r"""Label propagation (Zhou et al., NIPS 2003), on PyG's ``LabelPropagation``.

.. math::
    Y^{(k+1)} = \alpha\,\hat A\,Y^{(k)} + (1 - \alpha)\,Y^{(0)}, \qquad
    \hat A = D^{-1/2} A D^{-1/2},

with :math:`Y^{(0)}` ``[N, C]`` the one-hot labels of the training nodes and zero rows
elsewhere. Features are not read: what it knows is where the labels sit in the graph.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn.models import LabelPropagation

from .._validation import check_fraction, check_int
from ..graph import Graph, graph_for
from ..training.trainer import check_training_set, num_classes


def one_hot_labels(graph: Graph, train_idx: Tensor) -> Tensor:
    """``[N, C]`` float: the one-hot label of each node of ``train_idx`` (validated), zero rows
    elsewhere; no other node's label is read."""
    y = graph.data.y.view(-1).cpu()
    seeds = torch.zeros(graph.num_nodes, num_classes(graph.data))
    seeds[train_idx, y[train_idx]] = 1.0
    return seeds


def propagate_labels(data: Data | Graph, train_idx: Tensor, *, num_layers: int = 50, alpha: float = 0.9) -> Tensor:
    """Class scores ``[N, C]`` (each in [0, 1]) of every node, from the labels of ``train_idx``
    ``[n]`` alone spread ``num_layers`` times with weight ``alpha``. A node no label reaches
    scores 0 for every class. On the CPU."""
    graph = graph_for(data)
    train_idx = check_training_set(graph, train_idx)
    num_layers = check_int(num_layers, "num_layers")
    alpha = check_fraction(alpha, "alpha")
    mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
    mask[train_idx] = True
    with torch.no_grad():
        return LabelPropagation(num_layers, alpha)(one_hot_labels(graph, train_idx), graph.edge_index.cpu(), mask)
