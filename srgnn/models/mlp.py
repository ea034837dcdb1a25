"""Multi-layer perceptron on node features alone (the graph-free baseline)."""
from __future__ import annotations

from torch import Tensor, nn

from .._validation import check_num_layers, check_probability

from ..kernels.ops import current_ops
from ..kernels.layers import SparseInputLinear
from .base import NodeClassifier, check_channels


class MLP(NodeClassifier):
    r""":math:`Z = \sigma(X W_1) W_2`; ``edge_index`` is ignored. Accepts sparse CSR ``x``.

    Shapes:
        x ``[N, F]`` -> logits ``[N, C]``, hidden ``[N, H]``.
    """

    accepts_graph = True

    receptive_field = 0
    hidden_receptive_field = 0
    replica_batchable = True

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32,
                 dropout: float = 0.5, num_layers: int = 2):
        super().__init__()
        check_channels(in_channels, out_channels, hidden_channels)
        self.out_channels = out_channels
        self.in_channels, self.dropout = in_channels, check_probability(dropout, "dropout")
        check_num_layers(num_layers, "MLP")
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(SparseInputLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ops = current_ops()
        self.check_input(x, ops)
        h = ops.dropout(x, self.dropout, self.training)
        for lin in self.lins[:-1]:
            hidden, h = ops.relu_dropout(ops.linear(h, lin.weight), lin.bias, self.dropout, self.training)
        last = self.lins[-1]
        return self.propagate(ops.linear(h, last.weight, last.bias), edge_index), hidden

    def propagate(self, logits: Tensor, edge_index: Tensor | None) -> Tensor:
        """What follows the MLP, ``[N, C]`` -> ``[N, C]``: nothing here (APPNP propagates)."""
        return logits
