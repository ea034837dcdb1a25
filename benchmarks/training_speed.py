"""Epoch time of srgnn's GCN against a plain PyG ``GCNConv`` loop, on the whole graph and on
the receptive field of the nodes the loss reads (what ``srgnn.Trainer`` trains on), and the
shift-robust regularizer's overhead over a plain srgnn epoch, measured side by side in one process.

    python -m benchmarks.training_speed [--dataset pubmed] [--epochs 50]
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.study import train_plain_pyg_gcn
from srgnn.cli import OneLineParser
from srgnn import ShiftRobust
from srgnn.data import load_dataset
from srgnn.models import GCN
from srgnn.sampling import LocalizedSampler
from srgnn.graph import Graph
from srgnn.robustness.preparation import prepare
from srgnn.training.subgraph import robust_loss_subgraph


def srgnn_epochs(model, data, train, epochs: int, receptive_field: bool = False) -> float:
    """Seconds per epoch of srgnn's loss and step, on the whole graph or on the receptive
    field of the training and IID nodes."""
    robust = model if isinstance(model, ShiftRobust) else ShiftRobust(model, None, instance_weights=None)
    graph = Graph.from_data(data)
    setup = prepare(robust, graph, train, seed=0)
    x, edge_index, y, (train, iid) = graph.x, graph, data.y, (train, setup.iid_idx)
    if receptive_field:  # what the Trainer trains on
        x, edge_index, y, (train, iid) = robust_loss_subgraph(robust, graph, train, setup.iid_idx, torch.device("cpu"))
    optimizer = torch.optim.Adam(robust.parameters(), lr=0.01, weight_decay=5e-4)
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        robust.loss(x, edge_index, y, train, iid, setup.weights).backward()
        optimizer.step()
    return (time.perf_counter() - start) / epochs


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pubmed")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset)
    train = LocalizedSampler(data).sample(0)
    f, c = data.num_features, data.num_classes
    plain_pyg = train_plain_pyg_gcn(data, train, args.epochs)
    print(f"{args.dataset}, ms per epoch: plain PyG GCNConv loop {plain_pyg * 1e3:.1f}")
    for field in (False, True):
        plain = srgnn_epochs(GCN(f, c), data, train, args.epochs, field)
        with_cmd = srgnn_epochs(ShiftRobust(GCN(f, c), "cmd"), data, train, args.epochs, field)
        with_mmd = srgnn_epochs(ShiftRobust(GCN(f, c), "mmd"), data, train, args.epochs, field)
        where = "receptive field" if field else "whole graph"
        print(f"  srgnn GCN, {where}: {plain * 1e3:.1f} ({plain_pyg / plain:.1f}x faster); SR-GCN CMD "
              f"{with_cmd * 1e3:.1f} ({with_cmd / plain:.2f}x a plain epoch), MMD {with_mmd * 1e3:.1f} "
              f"({with_mmd / plain:.2f}x)")

if __name__ == "__main__":
    main()
