"""Mini-batch shift-robust training: each step is one batch of labelled nodes and one batch of
the IID sample, each with its neighbourhood sampled by PyG's ``NeighborLoader``
(``srgnn.loader``) and the model's own forward run on it (``batch_graph``). The shift term reads
the IID nodes' hidden layer alone, so their batch is sampled only as deep as that layer needs
(``hidden_receptive_field``: one hop of a two-layer GCN against two, about a tenth of the nodes
at fan-out 10), as the full-batch receptive subgraph does (``srgnn.subgraph``).

``Trainer(batch_size=..., num_neighbors=...)`` trains this way; evaluation stays one forward
over the whole graph without gradients, layer by layer over every node (each layer's
``[N, H]`` output is all it holds), as PyG's layer-wise GraphSAGE inference."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._validation import check_int
from .graph import Graph, graph_input, model_input
from .loader import batch_graph, neighbor_loader, with_fan_outs
from .models.base import NodeClassifier
from .preparation import ShiftSetup
from .robust import ShiftRobust
from .subgraph import target_hops


def check_fan_outs(num_neighbors: Sequence[int] | None, model: NodeClassifier) -> list[int]:
    """Per-layer fan-outs for ``model``: one per message-passing layer (``receptive_field``),
    each ``-1`` (every neighbour) or >= 1; ``None`` means every neighbour at every layer."""
    hops = model.receptive_field
    if hops is None:
        raise ValueError(f"{type(model).__name__}'s outputs depend on the whole graph (BatchNorm, or "
                         "precomputed features), so it cannot train on sampled neighbourhoods; train it "
                         "full-batch (batch_size=None).")
    if num_neighbors is None:
        return [-1] * hops
    fan_outs = list(num_neighbors)
    if len(fan_outs) != hops:
        raise ValueError(f"num_neighbors={fan_outs} has {len(fan_outs)} fan-out(s), but "
                         f"{type(model).__name__} has {hops} message-passing layer(s); give one per layer, "
                         f"e.g. num_neighbors={[10] * hops} (-1 keeps every neighbour).")
    for fan_out in fan_outs:
        if isinstance(fan_out, bool) or not isinstance(fan_out, int) or (fan_out < 1 and fan_out != -1):
            raise ValueError(f"num_neighbors={fan_outs}: each fan-out must be an int >= 1, or -1 for every "
                             "neighbour.")
    return fan_outs


class MiniBatches:
    """The steps of one epoch: ``train_idx`` shuffled into batches of ``batch_size``, the IID
    sample shuffled into as many batches. A training batch is sampled with ``num_neighbors``;
    an IID batch with the fan-outs of the layers below the hidden one, the last
    ``hidden_receptive_field`` of them.

    ``step_loss()`` is the next step's loss terms (``ShiftRobust.objective_terms`` on the batch, with the
    training batch's KMM weights), ``steps_per_epoch`` how many an epoch has. Seeded by ``seed``:
    the shuffles and the neighbour samples."""

    def __init__(self, robust: ShiftRobust, setup: ShiftSetup, graph: Graph, train_idx: Tensor, batch_size: int,
                 num_neighbors: list[int], seed: int, device: torch.device):
        data = graph.data
        self.robust, self.weights, self.device = robust, setup.weights, device
        self.train_idx = train_idx.cpu()
        self.iid_idx = setup.iid_idx if setup.iid_idx is not None else torch.empty(0, dtype=torch.long)
        self.batch_size = check_int(batch_size, "batch_size")
        self.steps_per_epoch = math.ceil(self.train_idx.numel() / self.batch_size)
        self.loader = neighbor_loader(data, num_neighbors, seed)
        hidden_hops = target_hops(robust.model, hidden_only=True)
        # The IID batch's first hop feeds the hidden layer, the layer num_neighbors[-hidden_hops] samples for.
        self.iid_loader = (with_fan_outs(self.loader, num_neighbors[len(num_neighbors) - hidden_hops:], seed + 1)
                           if self.iid_idx.numel() else None)
        self.generator = torch.Generator().manual_seed(seed)
        self.x = data.x.cpu()  # dense rows; each batch's are made CSR where sparse, as Graph.from_data does
        self.y = data.y.view(-1).cpu()
        self.in_degree = graph.in_degree().cpu()
        self._batches: list[tuple[Tensor, Tensor]] = []

    def _epoch(self) -> list[tuple[Tensor, Tensor]]:
        """This epoch's (training positions, IID nodes) per step."""
        train = torch.randperm(self.train_idx.numel(), generator=self.generator).split(self.batch_size)
        iid = self.iid_idx[torch.randperm(self.iid_idx.numel(), generator=self.generator)]
        return list(zip(train, iid.tensor_split(len(train))))

    def step_loss(self) -> dict[str, Tensor]:
        if not self._batches:
            self._batches = self._epoch()
        positions, iid = self._batches.pop(0)
        train = self.train_idx[positions]
        self.robust.train()
        logits, hidden = self._forward(self.loader, train)
        if iid.numel():
            # Only the IID nodes' hidden layer is read; their batch is too shallow for logits.
            hidden = torch.cat([hidden, self._forward(self.iid_loader, iid)[1]])
        local = torch.arange(hidden.size(0), device=self.device)
        return self.robust.objective_terms(logits, hidden, self.y[train].to(self.device), local[: train.numel()],
                                     local[train.numel():], weights=self.weights[positions].to(self.device))

    def _forward(self, loader, seeds: Tensor) -> tuple[Tensor, Tensor]:
        """The model's logits and hidden layer at ``seeds``, on their sampled neighbourhood."""
        batch = loader(seeds)
        x = model_input(self.x[batch.n_id]).to(self.device)
        graph = batch_graph(batch, self.in_degree, x, self.device)
        logits, hidden = self.robust.model.forward_with_hidden(x, graph_input(self.robust.model, graph))
        return logits[: seeds.numel()], hidden[: seeds.numel()]

