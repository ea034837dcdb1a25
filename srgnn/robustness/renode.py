r"""ReNode (Chen et al., NeurIPS 2021): training nodes weighted by their topological conflict.

With :math:`\pi_v` ``[N]`` the PPR vector of labelled node :math:`v` and
:math:`P_c = \frac1{|L_c|}\sum_{i \in L_c} \pi_i` the mean over class :math:`c`'s labelled nodes,
node :math:`v`'s conflict is

.. math::
    T_v = \sum_x \pi_v(x) \Big[\tfrac1{C-1}\sum_{c \ne y_v} P_c(x) - P_{y_v}(x)\Big],

high where other classes' labels reach the same nodes as its own. Ranked by conflict
(rank 0 the lowest), node :math:`v` weighs
:math:`w_{min} + \tfrac12 (w_{max} - w_{min})(1 + \cos(\pi\, r_v / n))`: the labelled nodes far
from a class boundary count most.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..graph import Graph
from ..ppr import graph_ppr


def renode_weights(graph: Graph, train_idx: Tensor, *, teleport: float = 0.15, w_min: float = 0.5,
                   w_max: float = 1.5) -> Tensor:
    """ReNode weights ``[n]`` (float32, in ``[w_min, w_max]``) of the labelled nodes ``train_idx``
    ``[n]`` (validated, CPU) of ``graph``, from their exact PPR vectors at ``teleport``; reads
    their labels only."""
    y = graph.data.y.view(-1).cpu()[train_idx]
    classes = int(y.max()) + 1
    pi = graph_ppr(graph, train_idx, teleport).double()  # [N, n], column v is pi_v
    one_hot = torch.nn.functional.one_hot(y, classes).double()
    class_mean = pi @ (one_hot / one_hot.sum(0).clamp_min(1))  # [N, C]: P_c
    reach = pi.T @ class_mean  # [n, C]: sum_x pi_v(x) P_c(x)
    own = reach.gather(1, y.view(-1, 1)).view(-1)
    conflict = (reach.sum(1) - own) / max(classes - 1, 1) - own
    rank = torch.empty(y.numel(), dtype=torch.float64)
    rank[conflict.argsort(stable=True)] = torch.arange(y.numel(), dtype=torch.float64)
    return (w_min + 0.5 * (w_max - w_min) * (1 + torch.cos(math.pi * rank / y.numel()))).float()
