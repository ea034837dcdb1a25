r"""Data-parallel mini-batch training of one model across processes and machines: PyTorch's
``DistributedDataParallel`` under ``torchrun``, gloo on CPUs and NCCL on GPUs.

    torchrun --nproc_per_node 2 -m benchmarks.ddp_training --nodes 169000

Every rank holds the whole graph and draws the same global batches, one seeded shuffle per epoch
as ``Trainer(batch_size=...)`` draws them; each rank takes its share of each step's labelled
batch and IID batch (``srgnn.distributed.gather.shard``). Rank r's loss is

.. math::
    \mathcal L_r = \frac{W}{B}\sum_{i \in \text{share}_r} \beta_i\,\ell(z_i, y_i)
                   + \lambda\, d\big(\mathrm{gather}(h_\text{train}), \mathrm{gather}(h_\text{IID})\big)

with W ranks and B labelled nodes in the step. DDP averages the gradients over the ranks, and the
gather's backward sums what every rank's penalty sends each rank's rows, so the step's gradient
is that of one process on the union of the shares, CMD and MMD included (neither is a sum over
nodes, so a per-rank penalty would not be).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Data

from .._validation import check_int, check_seed
from ..graph import Graph, graph_for, model_inputs
from ..robustness.preparation import ShiftSetup, check_iid_sample, materialize, shift_setup
from ..robustness.robust import ShiftRobust
from ..training.loop import make_optimizer, run_epochs
from ..training.minibatch import MiniBatches, check_fan_outs
from ..training.subgraph import loss_subgraph
from ..training.trainer import (as_shift_robust, check_output_classes, check_training_set, optimizer_settings,
                                resolve_device)
from .agreement import check_same_inputs, fingerprint
from .gather import gather_rows, process_group, shard, shard_sizes


class _PairForward(nn.Module):
    """One DDP forward per step: the model on the labelled batch (logits and hidden layer) and,
    where there is one, on the IID batch (hidden layer)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, train_inputs: tuple, iid_inputs: tuple | None) -> tuple[Tensor, Tensor, Tensor | None]:
        logits, hidden = self.model.forward_with_hidden(*train_inputs)
        hidden_iid = None if iid_inputs is None else self.model.forward_with_hidden(*iid_inputs)[1]
        return logits, hidden, hidden_iid


class ShardedBatches(MiniBatches):
    """``MiniBatches`` whose every step this rank runs on its share of the global batch, through
    ``forward`` (the DDP-wrapped ``_PairForward``); ``step_loss()`` gives this rank's loss terms
    (module docstring). The global batches are ``MiniBatches``' own, from the same seed."""

    def __init__(self, robust: ShiftRobust, setup: ShiftSetup, graph: Graph, train_idx: Tensor, seed: int,
                 device: torch.device, forward: nn.Module, *, batch_size: int, num_neighbors: list[int]):
        super().__init__(robust, setup, graph, train_idx, seed, device, batch_size=batch_size,
                         num_neighbors=num_neighbors)
        self.forward, self.rank, self.world_size = forward, dist.get_rank(), dist.get_world_size()
        n, m, steps = self.train_idx.numel(), self.iid_idx.numel(), self.steps_per_epoch
        smallest = {"labelled": n - (steps - 1) * self.batch_size, "IID": m // steps if m else self.world_size}
        short = {name: size for name, size in smallest.items() if size < self.world_size}
        if short:
            raise ValueError(
                f"A step's {' and '.join(f'{name} batch of {size} node(s)' for name, size in short.items())} cannot be "
                f"shared by {self.world_size} ranks: each rank needs at least one node of each (the last labelled "
                f"batch holds what is left of {n} nodes after batches of {self.batch_size}; the IID sample of {m} is "
                "split over the same steps). Use fewer ranks, a batch_size that leaves a larger last batch, or a "
                "larger IID sample (ShiftRobust(iid_size=...)).")

    def state(self) -> dict[str, Tensor]:
        """The random streams a resumed run continues from: the shuffles and the neighbour samples."""
        streams = {"shuffle": self.generator.get_state()}
        for name, loader in (("train_sampler", self.loader), ("iid_sampler", self.iid_loader)):
            generator = getattr(getattr(loader, "node_sampler", None), "generator", None)
            if generator is not None:
                streams[name] = generator.get_state()
        return streams

    def load_state(self, streams: dict[str, Tensor]) -> None:
        self.generator.set_state(streams["shuffle"])
        for name, loader in (("train_sampler", self.loader), ("iid_sampler", self.iid_loader)):
            if name in streams:
                loader.node_sampler.generator.set_state(streams[name])

    def step_loss(self) -> dict[str, Tensor]:
        if not self._batches:
            self._batches = self._epoch()
        positions, iid = self._batches.pop(0)
        train_sizes, iid_sizes = (shard_sizes(t.numel(), self.world_size) for t in (positions, iid))
        global_count = positions.numel()
        positions, iid = shard(positions, self.rank, self.world_size), shard(iid, self.rank, self.world_size)
        train = self.train_idx[positions]
        self.robust.train()
        iid_inputs = self.batch_inputs(self.iid_loader(iid)) if iid.numel() else None
        logits, hidden, hidden_iid = self.forward(self.batch_inputs(self.loader(train)), iid_inputs)
        logits, hidden = logits[: train.numel()], hidden[: train.numel()]
        per_node = F.cross_entropy(logits, self.y[train].to(self.device), reduction="none")
        weights = self.weights[positions].to(self.device)
        terms = {"cross-entropy": (weights * per_node).sum() * (self.world_size / global_count)}
        if self.robust.has_penalty:
            terms["lam * penalty"] = self.robust.shift_term(gather_rows(hidden, train_sizes),
                                                            gather_rows(hidden_iid[: iid.numel()], iid_sizes))
        return terms


class DistributedTrainer:
    """Train one model on one graph with several processes (DDP), each on its share of every
    mini-batch; call ``fit`` in every process of the group, with the same inputs.

    Args:
        model: a ``ShiftRobust`` or any model ``Trainer`` takes. Its penalty must be computable
            on the gathered rows: ``"cmd"``, ``"mmd"`` or a function; not ``max_pull`` or
            ``deconflict`` (they compare whole-batch gradients per step), the penalties that read
            the IID logits (``label_shift``, ``conditional``), or a penalty with parameters.
        batch_size: labelled nodes per global step, shared by the ranks (remainder rule:
            ``srgnn.distributed.gather.shard``). num_neighbors: per-layer fan-outs (``None``:
            every neighbour).
        epochs, lr, weight_decay, seed: as ``Trainer``'s.
        device: this rank's device; default ``cuda:$LOCAL_RANK`` where CUDA is available, else the CPU.
        checkpoint: a file that rank 0 writes every ``checkpoint_every`` epochs (model,
            optimizer, random streams, losses so far). A fit that finds it resumes after its
            epoch; one whose graph, labelled nodes or settings differ refuses it.

    After ``fit``: ``model_`` (on every rank, the same weights), ``history_`` (the global loss per
    epoch, resumed epochs included), ``epoch_seconds_`` (each epoch this call ran), ``setup_``
    (the IID sample and the instance weights, solved on rank 0 and broadcast).
    """

    def __init__(self, model: nn.Module, *, batch_size: int, num_neighbors: list[int] | None = None,
                 epochs: int = 200, lr: float | None = None, weight_decay: float | None = None, seed: int = 0,
                 device: str | torch.device | None = None, checkpoint: str | os.PathLike | None = None,
                 checkpoint_every: int = 1):
        self.model = as_shift_robust(model, "DistributedTrainer")
        robust = self.model
        refused = [name for name, on in (("max_pull", robust.max_pull is not None), ("deconflict", robust.deconflict),
                                         ("label_shift", robust.label_shift), ("conditional", robust.conditional),
                                         ("a penalty with parameters", bool(robust.penalty_parameters())))
                   if on]
        if refused:
            raise ValueError(f"DistributedTrainer cannot train this ShiftRobust's {', '.join(refused)}: they need the "
                             "whole batch's gradients or IID logits in one process, or parameters DDP does not hold. "
                             "Build it with max_pull=None, deconflict=False, label_shift=False, conditional=False and "
                             "'cmd', 'mmd' or a function as the penalty.")
        self.batch_size = check_int(batch_size, "batch_size")
        self.num_neighbors = check_fan_outs(num_neighbors, robust.model)
        self.epochs, self.seed = check_int(epochs, "epochs"), check_seed(seed)
        self.checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
        self.lr, self.weight_decay = optimizer_settings(robust.model, lr, weight_decay)
        if device is None and torch.cuda.is_available():
            device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
        self.device = resolve_device(device or "cpu")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)

    def _identity(self, inputs: dict[str, Tensor | None]) -> list[int]:
        """What a checkpoint must match to be resumed: the inputs' hashes and the batch settings
        (not the epochs: a resumed run may train longer)."""
        settings = torch.tensor([self.batch_size, self.seed, *self.num_neighbors], dtype=torch.long)
        return [fingerprint(value) for value in inputs.values()] + [fingerprint(settings)]

    def fit(self, data: Data | Graph, train_idx: Tensor, iid_idx: Tensor | None = None) -> "DistributedTrainer":
        """Train on ``train_idx`` ``[n]``, this rank on its shares; returns ``self``."""
        rank, world_size = process_group()
        graph = graph_for(data, self.device)
        train_idx = check_training_set(graph, train_idx)
        data = graph.data
        iid_idx = None if iid_idx is None else check_iid_sample(iid_idx, train_idx, data.num_nodes)
        robust = self.model.to(self.device)
        check_output_classes(robust.model, data)
        inputs = {"graph edges": data.edge_index, "features": data.x, "labels": data.y, "training sets": train_idx,
                  "IID samples": iid_idx}
        collective_device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        check_same_inputs(inputs, collective_device)
        torch.manual_seed(self.seed)
        materialize(robust, graph)
        # KMM's QP is solved once, on rank 0; the others receive its result.
        shared = [None]
        if rank == 0:
            setup = shift_setup(robust, graph, train_idx, self.seed, iid_idx)
            shared = [ShiftSetup(None if setup.iid_idx is None else setup.iid_idx.cpu(), setup.weights.cpu())]
        dist.broadcast_object_list(shared, src=0, device=collective_device)
        self.setup_ = shared[0]
        robust.reset_parameters()
        forward = DistributedDataParallel(_PairForward(robust.model))  # broadcasts rank 0's weights
        batches = ShardedBatches(robust, self.setup_, graph, train_idx, self.seed, self.device, forward,
                                 batch_size=self.batch_size, num_neighbors=self.num_neighbors)
        optimizer = make_optimizer(robust.parameters(), self.lr, self.weight_decay, self.device)
        identity, losses, start = self._identity(inputs), [], 0
        if self.checkpoint is not None and self.checkpoint.exists():
            start, losses = self._resume(identity, robust, optimizer, batches)
        step_losses: list[Tensor] = []
        self.epoch_seconds_: list[float] = []
        clock = time.perf_counter()

        def step_loss() -> dict[str, Tensor]:
            terms = batches.step_loss()
            step_losses.append(sum(terms.values()).detach())
            return terms

        def after_epoch(epoch: int) -> bool:
            nonlocal clock
            # This epoch's loss of the union batch: the mean over ranks (each holds the same penalty).
            mean = torch.stack(step_losses[-batches.steps_per_epoch:]).mean().to(collective_device)
            dist.all_reduce(mean)
            losses.append(float(mean) / world_size)
            done = start + epoch + 1
            if self.checkpoint is not None and rank == 0 and (done % self.checkpoint_every == 0 or done == self.epochs):
                self._save(identity, done, robust, optimizer, batches, losses)
            self.epoch_seconds_.append(time.perf_counter() - clock)
            clock = time.perf_counter()
            return False

        if start < self.epochs:
            run_epochs(step_loss, optimizer, self.epochs - start, after_epoch, batches.steps_per_epoch)
        dist.barrier()  # no rank reads a checkpoint rank 0 is still writing
        self.history_, self.model_, self.graph_ = losses, robust.model.eval(), graph
        return self

    def _save(self, identity: list[int], epochs_done: int, robust: ShiftRobust, optimizer: torch.optim.Optimizer,
              batches: ShardedBatches, losses: list[float]) -> None:
        state = {"identity": identity, "epochs_done": epochs_done, "model": robust.state_dict(),
                 "optimizer": optimizer.state_dict(), "streams": batches.state(), "torch_rng": torch.get_rng_state(),
                 "losses": losses}
        partial = self.checkpoint.with_name(self.checkpoint.name + ".partial")
        torch.save(state, partial)
        os.replace(partial, self.checkpoint)  # a run stopped mid-write keeps the previous checkpoint

    def _resume(self, identity: list[int], robust: ShiftRobust, optimizer: torch.optim.Optimizer,
                batches: ShardedBatches) -> tuple[int, list[float]]:
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if state["identity"] != identity:
            raise ValueError(f"The checkpoint {self.checkpoint} is of another run (another graph, labelled nodes or "
                             "batch settings); pass another checkpoint path, or delete it to start over.")
        robust.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batches.load_state(state["streams"])
        torch.set_rng_state(state["torch_rng"].cpu())
        return state["epochs_done"], list(state["losses"])

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node ``[N, C]``, on the CPU of every rank. Each rank computes its share
        of the nodes (``shard``) on their receptive field, by the model's own forward, and the
        shares are gathered."""
        if not hasattr(self, "model_"):
            raise RuntimeError("Call fit() before logits().")
        rank, world_size = process_group()
        graph = graph_for(data, self.device, self.graph_)
        nodes = shard(torch.arange(graph.data.num_nodes), rank, world_size)
        x, edge_index, _, (local,) = loss_subgraph(self.model_, graph, [nodes], self.device)
        with torch.no_grad():
            mine = self.model_(*model_inputs(self.model_, x, edge_index))[local]
        return gather_rows(mine, shard_sizes(graph.data.num_nodes, world_size)).cpu()
