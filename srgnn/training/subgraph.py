"""What one training step reads: the receptive field of the nodes a loss reads, cut from the
graph once per fit."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..graph import Graph, Subgraph, compact_features, graph_for, model_inputs
from ..models.base import NodeClassifier
from ..kernels.propagation import TargetRows
from ..robustness.robust import ShiftRobust


#: Train on the receptive field of the nodes the loss reads only when it is at most this share
#: of the graph; above it, slicing costs more than it saves.
MAX_RECEPTIVE_SHARE = 0.8


def target_hops(model: NodeClassifier, hidden_only: bool = False) -> int | None:
    """Hops of the receptive field of nodes whose logits (or, ``hidden_only``, whose hidden
    layer alone) the loss reads; ``None`` when outputs depend on the whole graph."""
    if model.receptive_field is None or not hidden_only or model.hidden_receptive_field is None:
        return model.receptive_field
    return model.hidden_receptive_field


def loss_subgraph(model: NodeClassifier, graph: Graph | Data, targets: list[Tensor], device: torch.device,
                  hidden_only: Sequence[bool] | None = None) -> tuple[Tensor, Subgraph | Graph | TargetRows | None,
                                                                       Tensor, list[Tensor]]:
    """What one training step needs: the model input, graph and labels of the receptive field
    of ``targets`` (the nodes the loss and early stopping read) on ``graph`` (from
    ``Graph.from_data``), and ``targets`` relabelled.

    A model with ``receptive_field = K`` hops gives the same outputs at the targets on their
    K-hop subgraph (``Graph.receptive_subgraph``) as on the whole graph, so every
    epoch skips the rest: on PubMed 60 localized nodes reach 3,200 of 19,717 nodes in 2 hops.
    Groups flagged in ``hidden_only`` (the IID sample, read by the shift term at the hidden
    layer only) need just ``hidden_receptive_field`` hops. A model whose outputs are per-node
    functions of whole-graph features (``NodeClassifier.node_features``: SGC, DGI) gets the
    targets' rows of those features and ``None`` for the graph. A model that propagates with a
    fixed linear operator (``NodeClassifier.target_rows``: APPNP) gets the whole graph's input
    and, in place of the graph, that operator's rows at the nodes whose logits are read.
    """
    hidden_only = hidden_only or [False] * len(targets)
    graph = graph_for(graph, device)
    data = graph.data
    hops, n = [target_hops(model, flag) for flag in hidden_only], data.num_nodes
    if None not in hops:
        subset, field = graph.on("cpu").receptive_subgraph([t.cpu() for t in targets], hops)
        if subset.numel() <= MAX_RECEPTIVE_SHARE * n:
            local = torch.full((n,), -1, dtype=torch.long)
            local[subset] = torch.arange(subset.numel())
            x = data.x[subset.to(data.x.device)]
            x = (compact_features(x) if model.accepts_graph else x).to(device)
            field = Subgraph(field.edge_index.to(device), field.num_nodes, x=x, full_degree=field.full_degree,
                             depth=field.depth)
            return x, field, data.y.view(-1)[subset.to(data.y.device)].to(device), [local[t.cpu()].to(device) for t in targets]
    x, edge_index = model_inputs(model, graph.x, graph)
    features = model.node_features(x, edge_index)
    if features is not None:  # outputs are per-node functions of whole-graph features
        subset, local = torch.cat([t.cpu() for t in targets]).unique(return_inverse=True)
        groups = local.split([t.numel() for t in targets])
        return (features[subset.to(features.device)], None, data.y.view(-1)[subset.to(data.y.device)].to(device),
                [g.to(device) for g in groups])
    targets = [t.to(device) for t in targets]
    read = [t for t, flag in zip(targets, hidden_only) if not flag]  # nodes whose logits the loss reads
    rows = model.target_rows(graph, torch.cat(read).unique()) if read else None
    return x, rows if rows is not None else edge_index, data.y.view(-1).to(device), targets


def robust_loss_subgraph(robust: ShiftRobust, graph: Graph | Data, train_idx: Tensor, iid_idx: Tensor | None,
                         device: torch.device) -> tuple[Tensor, Subgraph | Graph | TargetRows | None, Tensor,
                                                        list[Tensor | None]]:
    """``loss_subgraph`` for what ``ShiftRobust.loss`` reads: the logits of the training nodes
    and the hidden layer alone of the IID sample ``iid_idx`` (``None``: none). Returns
    ``x, edge_index, y, [train, iid]`` relabelled (``None`` for no IID sample)."""
    if iid_idx is None:
        x, edge_index, y, (train,) = loss_subgraph(robust.model, graph, [train_idx], device)
        return x, edge_index, y, [train, None]
    return loss_subgraph(robust.model, graph, [train_idx, iid_idx], device, [False, True])
