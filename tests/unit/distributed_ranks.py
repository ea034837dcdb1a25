"""What each rank of a spawned gloo process group runs in tests/unit/test_distributed.py (a
module of its own: spawned processes import the function they run)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from srgnn import Graph, ShiftRobust
from srgnn.data import load_dataset
from srgnn.distributed import DistributedTrainer, RanksDisagreeError
from srgnn.distributed.trainer import ShardedBatches, _PairForward
from srgnn.models import GCN
from srgnn.robustness.preparation import shift_setup
from srgnn.sampling import load_published_splits
from tests.helpers import SEEDS_DIR

#: Every neighbour at both layers, and no dropout: the batches and the forward are then the same
#: in one process and in several, so what differs is only how the loss is split.
FAN_OUTS = [-1, -1]
BATCH = 64


def cora_and_set() -> tuple[Graph, torch.Tensor]:
    data = load_dataset("cora")
    return Graph.from_data(data), load_published_splits(SEEDS_DIR / "localized_seeds_cora.p", num_nodes=2708)[0]


def sr_gcn(graph: Graph, regularizer: str) -> ShiftRobust:
    data = graph.data
    torch.manual_seed(0)
    return ShiftRobust(GCN(data.num_features, data.num_classes, dropout=0.0), regularizer, lam=1.0)


def leave() -> None:
    """End this rank without tearing its process group down. gloo's group destructor holds the
    GIL while joining a work thread that may still need it to free a finished collective's
    tensors: an upstream race (pytorch/pytorch#190489) that hung the suite twice in 2 full runs."""
    sys.stdout.flush()
    os._exit(0)


def _join(rank: int, world_size: int, rendezvous: str) -> None:
    os.environ["SRGNN_DEVICE"] = "cpu"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)


def one_step(rank: int, world_size: int, rendezvous: str, out: str) -> None:
    """Each rank's share of the first step, for CMD and MMD: the global loss and this rank's
    gradients after DDP's average."""
    _join(rank, world_size, rendezvous)
    graph, train = cora_and_set()
    found = {}
    for regularizer in ("cmd", "mmd"):
        robust = sr_gcn(graph, regularizer)
        robust.reset_parameters()
        setup = shift_setup(robust, graph, train, 0, None)
        forward = DistributedDataParallel(_PairForward(robust.model))
        batches = ShardedBatches(robust, setup, graph, train, 0, torch.device("cpu"), forward, batch_size=BATCH,
                                 num_neighbors=FAN_OUTS)
        loss = sum(batches.step_loss().values())
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        found[regularizer] = {"loss": total / world_size,
                              "grads": {n: p.grad.clone() for n, p in robust.model.named_parameters()}}
    torch.save(found, Path(out) / f"rank{rank}.pt")
    leave()


def fits(rank: int, world_size: int, rendezvous: str, out: str) -> None:
    """A few epochs straight, the same in two halves through a checkpoint, and the refusals."""
    _join(rank, world_size, rendezvous)
    graph, train = cora_and_set()
    found = {}

    def trainer(epochs: int, checkpoint: str | None = None) -> DistributedTrainer:
        return DistributedTrainer(sr_gcn(graph, "cmd"), batch_size=BATCH, num_neighbors=FAN_OUTS, epochs=epochs,
                                  checkpoint=checkpoint)

    straight = trainer(4).fit(graph, train)
    found["logits"], found["history"] = straight.logits(graph), straight.history_
    checkpoint = str(Path(out) / "run.ckpt")
    trainer(2, checkpoint).fit(graph, train)
    resumed = trainer(4, checkpoint).fit(graph, train)
    found["resumed_logits"], found["resumed_history"] = resumed.logits(graph), resumed.history_
    for name, attempt in {
        "disagree": lambda: trainer(1).fit(graph, train if rank == 0 else train[1:]),
        "small_batch": lambda: DistributedTrainer(sr_gcn(graph, "cmd"), batch_size=139, epochs=1).fit(graph, train),
        "other_run": lambda: trainer(1, checkpoint).fit(graph, train[1:]),
    }.items():
        try:
            attempt()
            found[name] = None
        except (RanksDisagreeError, ValueError) as err:
            found[name] = f"{type(err).__name__}: {err}"
    torch.save(found, Path(out) / f"rank{rank}.pt")
    leave()
