r"""GraphSAGE with mean aggregation (Hamilton, Ying & Leskovec, NeurIPS 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import Graph, as_graph
from ..kernels.ops import current_ops
from ..kernels.layers import SparseInputLinear
from ..kernels.propagation import spmm
from .._validation import check_probability
from .base import NodeClassifier, check_channels


class GraphSAGE(NodeClassifier):
    r"""Two mean-aggregation layers, :math:`h_v' = W_1 h_v + W_2\,\mathrm{mean}_{u\in N(v)} h_u + b`
    (PyG's ``SAGEConv`` with its defaults; :math:`N(v)` are the sources of the edges into v,
    leaving out self-loops, which ``SAGEConv`` would count as neighbours).

    The mean is linear, so it is taken after the projection,
    :math:`\mathrm{mean}(h) W_2 = D^{-1}A\,(h W_2)`: a sparse CSR ``x`` is projected by one
    SpMM and only H-wide rows are aggregated.

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` or a ``Graph`` -> logits ``[N, C]``, hidden ``[N, H]``.
    """

    accepts_graph = True

    receptive_field = 2
    hidden_receptive_field = 1
    replica_batchable = True

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32, dropout: float = 0.5):
        super().__init__()
        check_channels(in_channels, out_channels, hidden_channels)
        self.out_channels = out_channels
        self.in_channels, self.dropout = in_channels, check_probability(dropout, "dropout")
        sizes = [(in_channels, hidden_channels), (hidden_channels, out_channels)]
        self.roots = nn.ModuleList(SparseInputLinear(a, b) for a, b in sizes)
        self.neighbours = nn.ModuleList(SparseInputLinear(a, b, bias=False) for a, b in sizes)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph) -> tuple[Tensor, Tensor]:
        ops = current_ops()
        self.check_input(x, ops)
        graph = as_graph(edge_index, x)
        h = x
        for i, (root, neighbour) in enumerate(zip(self.roots, self.neighbours)):
            h = ops.dropout(h, self.dropout, self.training)
            # On a receptive subgraph, the mean's rows where this layer's output is read; on a
            # sampled batch, only those rows ([R_l, R_{l-1}]), the first R_l of h's.
            mean = graph.layer(i + 1, trimmed=True).adjacency("mean")
            # Both projections in one product: one pass over a sparse x instead of two.
            both = torch.cat([root.weight, neighbour.weight], dim=-2)  # [2H, F], or [R, 2H, F] for replicas
            own, theirs = ops.linear(h, both).split(root.out_features, dim=1)
            h = own[: mean.matrix.size(0)] + ops.bias(root.bias) + spmm(mean, theirs.contiguous())
            if i == 0:
                h = hidden = F.relu(h)
        return h, hidden
