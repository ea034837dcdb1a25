"""Mini-batch shift-robust training: each step is one batch of labelled nodes and one batch of the IID
sample, each with its neighbourhood sampled by PyG's ``NeighborLoader`` (``srgnn.training.loader``)
and the model's own forward run on it (``srgnn.graph.Subgraph.from_batch``). The shift term reads
the IID nodes' hidden layer alone, so their batch is sampled only as deep as that layer needs
(``hidden_receptive_field``: one hop of a two-layer GCN against two, about a tenth of the nodes at
fan-out 10), as the full-batch receptive subgraph does (``srgnn.training.subgraph``).

``Trainer(batch_size=..., num_neighbors=...)`` trains this way; evaluation stays one forward
over the whole graph without gradients, layer by layer over every node (each layer's
``[N, H]`` output is all it holds), as PyG's layer-wise GraphSAGE inference."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_int
from ..graph import Graph, Subgraph, compact_features, model_inputs
from .loader import neighbor_loader, with_fan_outs
from ..models.base import NodeClassifier
from ..robustness.preparation import ShiftSetup
from ..robustness.robust import ShiftRobust
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
    """The steps of one epoch: batches of labelled nodes with their sampled neighbourhoods, and
    the IID sample shuffled into as many batches, each sampled only as deep as the hidden layer
    (the last ``hidden_receptive_field`` fan-outs).

    The labelled batches come from ``batch_size`` and ``num_neighbors`` (``train_idx`` shuffled
    into batches, sampled by ``srgnn.training.loader.neighbor_loader``), or from ``loader``: your own
    PyG ``NeighborLoader`` over the training nodes, or any re-iterable sequence with ``len``
    of such batches (``n_id``, ``batch_size``, ``edge_index`` and ``num_sampled_nodes``, seeds
    first). Its batches are trained on as they come; their seeds must be training nodes. Their
    IID batches then take every neighbour, as deep as the hidden layer (for a model that
    declares no ``receptive_field``, as deep as the loader's batches).

    ``step_loss()`` is the next step's loss terms (``ShiftRobust.objective_terms`` on the batch,
    with the training batch's instance weights), ``steps_per_epoch`` how many an epoch has.
    Seeded by ``seed``: the shuffles and srgnn's neighbour samples."""

    def __init__(self, robust: ShiftRobust, setup: ShiftSetup, graph: Graph, train_idx: Tensor, seed: int,
                 device: torch.device, *, batch_size: int | None = None, num_neighbors: list[int] | None = None,
                 loader: Iterable[Data] | None = None):
        data = graph.data
        self.robust, self.weights, self.device, self.seed = robust, setup.weights, device, seed
        self.train_idx = train_idx.cpu()
        self.iid_idx = setup.iid_idx if setup.iid_idx is not None else torch.empty(0, dtype=torch.long)
        self.data, self.user_loader = data, loader
        hidden_hops = target_hops(robust.model, hidden_only=True)
        if loader is not None:
            if not isinstance(loader, Sized) or isinstance(loader, Iterator):
                raise TypeError("loader must be a PyG NeighborLoader, or a list of its batches: something each "
                                f"epoch can iterate again and whose len() is its steps; got {type(loader).__name__}.")
            self.steps_per_epoch = len(loader)
            self.position = torch.full((data.num_nodes,), -1, dtype=torch.long)
            self.position[self.train_idx] = torch.arange(self.train_idx.numel())
            self.iid_loader = (neighbor_loader(data, [-1] * hidden_hops, seed + 1)
                               if self.iid_idx.numel() and hidden_hops is not None else None)
        else:
            self.batch_size = check_int(batch_size, "batch_size")
            self.steps_per_epoch = math.ceil(self.train_idx.numel() / self.batch_size)
            self.loader = neighbor_loader(data, num_neighbors, seed)
            # The IID batch's first hop feeds the hidden layer, the layer num_neighbors[-hidden_hops] samples for.
            self.iid_loader = (with_fan_outs(self.loader, num_neighbors[len(num_neighbors) - hidden_hops:], seed + 1)
                               if self.iid_idx.numel() else None)
        self.generator = torch.Generator().manual_seed(seed)
        self.x = data.x.cpu()  # dense rows; each batch's are made CSR where sparse, as Graph.from_data does
        self.y = data.y.view(-1).cpu()
        self.in_degree = graph.in_degree().cpu()
        self._batches: list[tuple[Tensor, Tensor]] = []
        self._user_batches: Iterator[Data] | None = None

    def _epoch(self) -> list[tuple[Tensor | None, Tensor]]:
        """This epoch's (training positions, or ``None`` where the user's loader gives them; IID nodes) per step."""
        iid = self.iid_idx[torch.randperm(self.iid_idx.numel(), generator=self.generator)]
        if self.user_loader is not None:
            self._user_batches = iter(self.user_loader)
            return [(None, chunk) for chunk in iid.tensor_split(self.steps_per_epoch)]
        train = torch.randperm(self.train_idx.numel(), generator=self.generator).split(self.batch_size)
        return list(zip(train, iid.tensor_split(len(train))))

    def step_loss(self) -> dict[str, Tensor]:
        if not self._batches:
            self._batches = self._epoch()
        positions, iid = self._batches.pop(0)
        self.robust.train()
        batch = None  # the user's batch, where a loader of theirs gives the labelled nodes
        if positions is None:
            batch = next(self._user_batches)
            positions = self._seed_positions(batch)
            logits, hidden = self._run(batch, positions.numel())
        else:
            logits, hidden = self._forward(self.loader, self.train_idx[positions])
        train = self.train_idx[positions]
        if iid.numel():
            # Only the IID nodes' hidden layer is read; their batch is too shallow for logits.
            hidden = torch.cat([hidden, self._forward(self._iid_loader(batch), iid)[1]])
        local = torch.arange(hidden.size(0), device=self.device)
        return self.robust.objective_terms(logits, hidden, self.y[train].to(self.device), local[: train.numel()],
                                           local[train.numel():], weights=self.weights[positions].to(self.device))

    def _seed_positions(self, batch: Data) -> Tensor:
        """Positions in ``train_idx`` of a user batch's seeds, checked."""
        missing = [name for name in ("n_id", "batch_size", "edge_index", "num_sampled_nodes") if name not in batch]
        if missing:
            raise ValueError(f"A batch of the loader has no {', '.join(missing)}: pass a PyG NeighborLoader over the "
                             "training nodes (NeighborLoader(data, num_neighbors, input_nodes=train_idx, ...)) or "
                             "its batches.")
        positions = self.position[batch.n_id[: batch.batch_size].cpu()]
        if bool((positions < 0).any()):
            node = int(batch.n_id[: batch.batch_size][positions < 0][0])
            raise ValueError(f"The loader's seed node {node} is not a training node; build the loader with "
                             "input_nodes=train_idx.")
        return positions

    def _iid_loader(self, batch: Data | None):
        """The IID batches' loader; for a model without a declared receptive field, every
        neighbour as deep as the user's batches go."""
        if self.iid_loader is None and batch is not None:
            self.iid_loader = neighbor_loader(self.data, [-1] * (len(batch.num_sampled_nodes) - 1), self.seed + 1)
        return self.iid_loader

    def batch_inputs(self, batch: Data) -> tuple:
        """The model's forward inputs on a sampled ``batch`` (its features and ``Subgraph``)."""
        x = compact_features(self.x[batch.n_id.cpu()]).to(self.device)
        graph = Subgraph.from_batch(batch, self.in_degree, x, self.device)
        return model_inputs(self.robust.model, graph.x, graph)

    def _run(self, batch: Data, count: int) -> tuple[Tensor, Tensor]:
        """The model's logits and hidden layer at the first ``count`` nodes of ``batch`` (its seeds)."""
        logits, hidden = self.robust.model.forward_with_hidden(*self.batch_inputs(batch))
        return logits[:count], hidden[:count]

    def _forward(self, loader, seeds: Tensor) -> tuple[Tensor, Tensor]:
        """The model's logits and hidden layer at ``seeds``, on their sampled neighbourhood."""
        return self._run(loader(seeds), seeds.numel())
