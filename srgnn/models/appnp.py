r"""APPNP: predict then propagate (Gasteiger, Bojchevski & Günnemann, ICLR 2019)."""
from __future__ import annotations

from torch import Tensor

from ..graph import Graph, as_graph
from ..kernels.propagation import TargetRows, appnp_propagate, appnp_rows
from .._validation import check_int, check_number
from .mlp import MLP


class APPNP(MLP):
    r"""An MLP's logits :math:`H^0` propagated K times by personalized PageRank,
    :math:`H^{k+1} = (1-\alpha)\hat A H^k + \alpha H^0`.

    A linear GNN in the paper's sense: propagation has no parameters, so SR-GNN uses KMM
    instance weights for it. The hidden layer is the MLP's.

    Args:
        alpha: teleport (0.1). k: propagation steps (10). Other arguments as ``MLP``.

    Shapes:
        x ``[N, F]`` (dense or CSR), edge_index ``[2, E]`` or a ``Graph`` -> logits ``[N, C]``, hidden ``[N, H]``;
        with a ``TargetRows`` (from ``target_rows``) in place of ``edge_index``, the logits
        are exact at its targets and zero elsewhere.
    """

    linear = True
    # Its 10 hops reach nearly the whole graph: replicas would not shrink it (LockstepTrainer
    # batches APPNPs that share a seed instead).
    replica_batchable = False

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 32,
                 dropout: float = 0.5, alpha: float = 0.1, k: int = 10):
        super().__init__(in_channels, out_channels, hidden_channels, dropout)
        if not 0.0 < check_number(alpha, "alpha", strict=True) <= 1.0:
            raise ValueError(f"alpha is APPNP's teleport probability and must lie in (0, 1] (0.1 is usual); "
                             f"got {alpha!r}.")
        self.alpha, self.k = float(alpha), check_int(k, "k")
        self.receptive_field = k

    def target_rows(self, graph: Graph, targets: Tensor) -> TargetRows | None:
        adj, num_nodes = graph.adjacency(), graph.num_nodes
        # A dense [T, N] product against 2K sparse ones (forward and backward) with the same
        # column count: the dense one ran faster up to about 4x the multiply-adds (per run:
        # Cora, T=140, 0.80 s against 0.92 s; PubMed, T=60, 5.9 s against 7.6 s).
        if targets.numel() * num_nodes > 4 * self.k * adj.matrix.values().numel():
            return None
        return TargetRows(appnp_rows(adj, targets, self.alpha, self.k), targets)

    def propagate(self, logits: Tensor, edge_index: Tensor | Graph | TargetRows) -> Tensor:
        """The MLP's logits ``[N, C]`` propagated K times (at the targets of a ``TargetRows``)."""
        if isinstance(edge_index, TargetRows):
            return edge_index.apply(logits)
        return appnp_propagate(as_graph(edge_index, logits).adjacency(), logits, self.alpha, self.k)
