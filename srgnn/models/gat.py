"""Graph attention network (Velickovic et al., ICLR 2018), on PyG's ``GATConv``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv
from torch_geometric.utils import softmax

from ..kernels.attention import edge_aggregate
from ..graph import Graph, as_graph
from ..kernels.layers import SparseInputLinear, dropout
from .._validation import check_int, check_probability
from .base import NodeClassifier, check_channels


class SparseGATConv(GATConv):
    r"""PyG's ``GATConv`` (its parameters, initialisation and attention) with the aggregation
    over all heads as one CSR SpMM, differentiable in the attention weights:

    .. math::
        \alpha^{(h)}_{ij} = \mathrm{softmax}_j\bigl(\mathrm{LeakyReLU}(a_{src}^{(h)\top} W x_j
        + a_{dst}^{(h)\top} W x_i)\bigr),\qquad
        x'_i = \big\Vert_h \sum_{j \in N(i) \cup \{i\}} \alpha^{(h)}_{ij} W^{(h)} x_j + b.

    The messages are summed at their destinations by one SpMM with an ``[N, E]`` incidence
    matrix (``srgnn.kernels.attention.edge_aggregate``), forward and backward, on node-major
    ``[N, heads C]`` rows without transposes, and attention dropout draws its mask with
    ``keep_mask``. Supports ``GATConv``'s defaults beyond ``heads``, ``concat`` and
    ``dropout`` (no edge features, no residual). The masks differ from ``GATConv``'s; in eval
    mode (or with ``dropout=0``) outputs and gradients equal it to float tolerance.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]`` or a ``Graph`` -> ``[N, heads C]`` (concat) or ``[N, C]``.
    """

    def forward(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        heads, channels, n = self.heads, self.out_channels, x.size(0)
        structure = as_graph(edge_index, x).attention()
        projected = self.lin(x)  # [N, heads C]
        score_src, score_dst = (projected @ self._score_weight()).split(heads, dim=1)  # [N, heads] each
        scores = F.leaky_relu(score_src.index_select(0, structure.src) + score_dst.index_select(0, structure.dst),
                              self.negative_slope)  # [E, heads], edges sorted by destination
        alpha = dropout(softmax(scores, ptr=structure.crow), self.dropout, self.training)
        out = edge_aggregate(structure, alpha, projected)  # [N, heads C]
        out = out if self.concat else out.view(n, heads, channels).mean(1)
        return out + self.bias if self.bias is not None else out

    def _score_weight(self) -> Tensor:
        """``[heads C, 2 heads]``: ``att_src`` and ``att_dst`` as block-diagonal columns, so one
        matmul scores every head's source and destination side (a broadcast multiply and sum
        costs twice as much, forward and backward)."""
        heads = self.heads
        eye = torch.eye(heads, dtype=self.att_src.dtype, device=self.att_src.device)
        att = torch.cat([self.att_src, self.att_dst])  # [2, heads, C]
        # weight[(h, c), (side, k)] = att[side, h, c] if h == k else 0
        return (att.unsqueeze(-1) * eye.unsqueeze(1)).permute(1, 2, 0, 3).reshape(-1, 2 * heads)


class GAT(NodeClassifier):
    r"""A linear projection of the input to ``hidden_channels`` (one SpMM for a sparse CSR
    ``x``), then two graph attention layers (``SparseGATConv``); the first has ``heads`` heads of
    ``hidden_channels // heads`` units, concatenated, so the hidden layer is
    ``hidden_channels`` wide.

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` or a ``Graph`` -> logits ``[N, C]``, hidden ``[N, H]``.
    """

    accepts_graph = True

    receptive_field = 2
    hidden_receptive_field = 1

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32,
                 dropout: float = 0.5, heads: int = 8):
        super().__init__()
        check_channels(in_channels, out_channels, hidden_channels)
        dropout, heads = check_probability(dropout, "dropout"), check_int(heads, "heads")
        if hidden_channels < heads:
            raise ValueError(f"GAT splits hidden_channels={hidden_channels} over heads={heads}; give it at least "
                             "one channel a head (hidden_channels >= heads).")
        self.out_channels = out_channels
        self.in_channels, self.dropout = in_channels, dropout
        self.project = SparseInputLinear(in_channels, hidden_channels, bias=False)
        self.conv1 = SparseGATConv(hidden_channels, hidden_channels // heads, heads=heads, dropout=dropout)
        self.conv2 = SparseGATConv(hidden_channels // heads * heads, out_channels, heads=1, dropout=dropout)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        graph = as_graph(edge_index, x)
        projected = self.project(dropout(x, self.dropout, self.training))
        # On a receptive subgraph each layer runs on the edges into the nodes that read it.
        hidden = F.elu(self.conv1(projected, graph.layer(1)))
        return self.conv2(dropout(hidden, self.dropout, self.training), graph.layer(2)), hidden
