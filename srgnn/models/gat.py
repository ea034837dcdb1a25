"""Graph attention network (Velickovic et al., ICLR 2018), on PyG's ``GATConv``."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv

from .base import NodeClassifier, SparseInputLinear, dropout


class GAT(NodeClassifier):
    r"""A linear projection of the input to ``hidden_channels`` (one SpMM for a sparse CSR
    ``x``), then two ``GATConv`` layers; the first has ``heads`` heads of
    ``hidden_channels // heads`` units, concatenated, so the hidden layer is
    ``hidden_channels`` wide.

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` -> logits ``[N, C]``, hidden ``[N, H]``.
    """

    receptive_field = 2
    hidden_receptive_field = 1

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32,
                 dropout: float = 0.5, heads: int = 8):
        super().__init__()
        self.in_channels, self.dropout = in_channels, dropout
        self.project = SparseInputLinear(in_channels, hidden_channels, bias=False)
        self.conv1 = GATConv(hidden_channels, hidden_channels // heads, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden_channels // heads * heads, out_channels, heads=1, dropout=dropout)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        projected = self.project(dropout(x, self.dropout, self.training))
        hidden = F.elu(self.conv1(projected, edge_index))
        return self.conv2(dropout(hidden, self.dropout, self.training), edge_index), hidden
