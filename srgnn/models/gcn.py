r"""Graph convolutional network (Kipf & Welling, ICLR 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice, check_num_layers, check_probability
from ..graph import Graph, as_graph
from ..kernels.ops import current_ops
from ..kernels.layers import SparseInputLinear
from ..kernels.propagation import spmm
from .base import NodeClassifier, check_channels


ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "elu": F.elu}
WEIGHT_INITS = ("uniform", "glorot")


class GCN(NodeClassifier):
    r"""Two-layer GCN, :math:`Z = \hat A\,\sigma(\hat A X W_1) W_2`, with
    :math:`\hat A = D^{-1/2}(A+I)D^{-1/2}` built once per graph (``srgnn.kernels.propagation``).

    ``x`` may be a sparse CSR tensor: the first product is then one SpMM and input dropout
    touches only the stored entries. The hidden layer is :math:`\sigma(\hat A X W_1)`.

    Args:
        in_channels: F. hidden_channels: H (32). out_channels: C. dropout: 0.5.
        num_layers: graph convolutions (2). batch_norm: BatchNorm1d before each hidden activation.
        activation: ``"tanh"`` (default: bounded, as in the SR-GNN authors' code, which suits the
            moment matching of CMD), ``"relu"`` or ``"elu"``.
        input_dropout: dropout on the input features: ``0.0`` (default), as in the SR-GNN
            authors' GCN (DGL ``GraphConv``); ``None`` uses ``dropout``, as Kipf & Welling do.
        hidden_after_dropout: return the hidden layer after its dropout (in train mode), where the
            authors' code reads it for CMD (default ``True``); ``False``: before dropout.
        weight_init: ``"glorot"`` (default; Xavier uniform, as DGL's ``GraphConv``, PyG's
            ``GCNConv`` and Kipf & Welling initialise) or ``"uniform"`` (``nn.Linear``'s).

    The defaults of ``activation``, ``input_dropout``, ``hidden_after_dropout`` and
    ``weight_init`` are the authors' GCN, chosen on validation nodes (docs/benchmarks.md,
    "GCN's defaults").

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` or a ``Graph`` -> logits ``[N, C]``, hidden ``[N, H]``.
    """

    accepts_graph = True

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32,
                 dropout: float = 0.5, num_layers: int = 2, batch_norm: bool = False,
                 activation: str = "tanh", input_dropout: float | None = 0.0,
                 hidden_after_dropout: bool = True, weight_init: str = "glorot"):
        super().__init__()
        check_channels(in_channels, out_channels, hidden_channels)
        dropout = check_probability(dropout, "dropout")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not supported; expected one of {sorted(ACTIVATIONS)}.")
        check_choice(weight_init, WEIGHT_INITS, "weight_init")
        self.out_channels = out_channels
        self.in_channels, self.dropout, self.activation = in_channels, dropout, ACTIVATIONS[activation]
        self.input_dropout = dropout if input_dropout is None else check_probability(input_dropout, "input_dropout")
        self.hidden_after_dropout, self.weight_init = hidden_after_dropout, weight_init
        check_num_layers(num_layers, "GCN")
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(SparseInputLinear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in sizes[1:])
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:-1]) if batch_norm else None

    @property
    def replica_batchable(self) -> bool:
        return self.norms is None

    @property
    def receptive_field(self) -> int | None:
        # BatchNorm's batch statistics are taken over every node of the graph.
        return None if self.norms is not None else len(self.lins)

    @property
    def hidden_receptive_field(self) -> int | None:
        return None if self.norms is not None else len(self.lins) - 1

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.weight_init == "glorot":
            for lin in self.lins:
                nn.init.xavier_uniform_(lin.weight)
        for bias in self.biases:
            nn.init.zeros_(bias)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph) -> tuple[Tensor, Tensor]:
        ops = current_ops()
        self.check_input(x, ops)
        graph = as_graph(edge_index, x)
        h = x
        for i, (lin, bias) in enumerate(zip(self.lins, self.biases)):
            h = ops.dropout(h, self.input_dropout if i == 0 else self.dropout, self.training)
            if i > 0 and self.hidden_after_dropout:
                hidden = h
            # On a receptive subgraph, the adjacency's rows where this layer's output is read;
            # on a sampled batch, only those rows ([R_l, R_{l-1}]), so h shrinks layer by layer.
            adj = graph.layer(i + 1, trimmed=True).adjacency()
            # A (X W) equals (A X) W: the SpMM goes on the narrower side of W. A widening layer
            # on dense, constant input (arxiv's 128 features -> 256) then also skips an SpMM in
            # the backward, since A X needs no gradient.
            if not h.is_sparse_csr and ops.in_features(h) < lin.out_features:
                h = ops.linear(spmm(adj, h), lin.weight) + ops.bias(bias)
            else:
                h = spmm(adj, ops.linear(h, lin.weight)) + ops.bias(bias)
            if i < len(self.lins) - 1:
                h = self.activation(self.norms[i](h) if self.norms is not None else h)
                if not self.hidden_after_dropout:
                    hidden = h
        return h, hidden
