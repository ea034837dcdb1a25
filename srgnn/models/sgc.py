r"""Simple graph convolution (Wu et al., ICML 2019)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..graph import Graph, as_graph
from ..kernels.propagation import sgc_features
from ..kernels.layers import SparseInputLinear
from .._validation import check_int
from .base import NodeClassifier, check_channels


class SGC(NodeClassifier):
    r""":math:`Z = \hat A^K X W`: a logistic regression on K-step propagated features.

    :math:`\hat A^K X` is computed once per ``srgnn.graph.Graph`` and kept on it
    (``cached=True``) when ``x`` is that graph's own features; given a plain ``edge_index``, it is
    computed at each call. The model is linear, so its only learned representation is the logits, which
    double as the hidden layer.

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` -> logits ``[N, C]``, hidden ``[N, C]``;
        or x ``[M, F]`` rows of ``node_features`` with ``edge_index=None`` -> ``[M, C]``.
    """

    accepts_graph = True

    linear = True
    # A logistic regression on small (row-normalized, propagated) features needs large weights:
    # with the GCN settings (0.01, 5e-4) it reached 45% (SGC) / 66% (DGI) on IID Cora sets,
    # with these 75% / 80%.
    optimizer_defaults = {"lr": 0.2, "weight_decay": 5e-5}

    def __init__(self, in_channels: int, out_channels: int, k: int = 2, cached: bool = True):
        super().__init__()
        check_channels(in_channels, out_channels)
        self.out_channels = out_channels
        self.in_channels, self.k, self.cached = in_channels, check_int(k, "k", minimum=0), cached
        self.lin = SparseInputLinear(in_channels, out_channels)

    def propagated(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        graph = as_graph(edge_index, x)

        def propagate() -> Tensor:
            with torch.no_grad():
                return sgc_features(graph.adjacency(), x.to_dense() if x.is_sparse_csr else x, self.k)

        if not self.cached:
            return propagate()
        # Kept on the Graph for every SGC on it, so a study propagates once (64 ms a PubMed run otherwise).
        return graph.features(x, ("sgc", self.k), propagate)

    def node_features(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        return self.propagated(x, edge_index)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph | None) -> tuple[Tensor, Tensor]:
        r"""``edge_index=None``: ``x`` is already :math:`\hat A^K X` (rows of ``node_features``)."""
        self.check_input(x)
        logits = self.lin(x if edge_index is None else self.propagated(x, edge_index))
        return logits, logits
