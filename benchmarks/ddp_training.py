"""Mini-batch SR-GCN on the block model of ``benchmarks.synthetic_bias`` (169,343 nodes unless
told), trained data-parallel under torchrun by ``srgnn.distributed.DistributedTrainer``.

    torchrun --nproc_per_node 2 -m benchmarks.ddp_training [--nodes 169343] [--epochs 5]
             [--batch-size 1024] [--fan-outs 10,10] [--threads 1] [--checkpoint FILE]
    torchrun --nproc_per_node 1 -m benchmarks.ddp_training --threads 2    # one process, to compare

Every rank builds the same graph and PPR-S training set (seeded; the trainer checks that they
agree). Rank 0 prints each epoch's seconds and global loss, the mean epoch time after the first
epoch, and the Micro-F1 on the graph's test nodes outside the training set and the IID sample
(logits computed by every rank for its share of the nodes). Backend: NCCL where CUDA is
available, else gloo. Several machines: ``torchrun --nnodes N --nproc_per_node G
--rdzv-backend c10d --rdzv-endpoint HOST:29500 -m benchmarks.ddp_training`` on each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist

from benchmarks.synthetic_bias import GRAPH
from srgnn import Graph, ShiftRobust
from srgnn.cli import OneLineParser
from srgnn.distributed import DistributedTrainer
from srgnn.models import GCN
from srgnn.sampling import PushSampler
from srgnn.synthetic import shifted_block_model


def main(argv=None) -> None:
    parser = OneLineParser(prog="torchrun --nproc_per_node W -m benchmarks.ddp_training", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=169_343)
    parser.add_argument("--ratio", type=float, default=0.01, help="PPR-S labelled share")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--fan-outs", default="10,10")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--checkpoint", default=None, help="rank 0 saves here every epoch; a rerun resumes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    data = shifted_block_model(args.nodes, seed=0, **GRAPH)
    graph = Graph.from_data(data)
    train = PushSampler(data, args.ratio, candidates=torch.arange(data.num_nodes)).sample(seed=0)
    model = ShiftRobust(GCN(data.num_features, data.num_classes), "cmd", lam=1.0)
    trainer = DistributedTrainer(model, batch_size=args.batch_size, num_neighbors=[int(f) for f in args.fan_outs.split(",")],
                                 epochs=args.epochs, checkpoint=args.checkpoint)
    start = time.perf_counter()
    trainer.fit(graph, train)
    fit_seconds = time.perf_counter() - start
    logits = trainer.logits(graph)
    test = data.test_mask.clone()
    test[train] = False
    test[trainer.setup_.iid_idx] = False
    micro_f1 = float((logits[test].argmax(1) == data.y[test]).float().mean())
    steady = trainer.epoch_seconds_[1:] or trainer.epoch_seconds_
    summary = {"world_size": world_size, "threads_per_process": args.threads, "nodes": data.num_nodes,
               "labelled": train.numel(), "batch_size": args.batch_size, "fan_outs": args.fan_outs,
               "epoch_seconds": [round(s, 2) for s in trainer.epoch_seconds_],
               "mean_epoch_seconds_after_first": round(statistics.mean(steady), 2),
               "losses": [round(x, 4) for x in trainer.history_], "fit_seconds": round(fit_seconds, 1),
               "test_micro_f1": round(micro_f1, 4), "device": str(trainer.device)}
    if rank == 0:
        for epoch, (seconds, loss) in enumerate(zip(trainer.epoch_seconds_, trainer.history_)):
            print(f"epoch {epoch}: {seconds:.2f} s, loss {loss:.4f}", flush=True)
        print(json.dumps(summary), flush=True)
    dist.barrier()
    # Not destroy_process_group(): gloo's group destructor holds the GIL while joining a work
    # thread that may still need it (pytorch/pytorch#190489), which can hang the exit.
    os._exit(0)


if __name__ == "__main__":
    main()
