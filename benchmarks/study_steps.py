"""Where one graph's bias study spends its time: each step of ``benchmarks.pubmed_bias`` timed
on its own, on one set, in one process.

    python -m benchmarks.study_steps --dataset amazon-computers [--threads 1] [--methods gcn,sr-gcn,appnp,sr-appnp]

Steps: loading the graph; ``Graph.from_data`` (its propagation matrices); drawing a localized
set (``LocalizedSampler``: PPR rows of the graph, then per class a seed and its nearest nodes),
twice, since the first draw also builds what every draw shares; the IID set of the same size;
the KMM weights of the linear SR variants (exact PPR rows and the QP), twice for the same
reason (the first also factorizes the graph's PPR system, kept on the ``Graph``); and one
200-epoch fit and scoring per method (SR-APPNP's on weights already computed). A study of R
sets costs about the first draws once plus R times the second draws and the fits.
"""
from __future__ import annotations

import time

import torch

from benchmarks.pubmed_bias import iid_with_every_class
from benchmarks.study import run_one
from srgnn import Graph
from srgnn.cli import OneLineParser
from srgnn.data import load_dataset
from srgnn.robustness.preparation import kmm_node_weights
from srgnn.sampling import LocalizedSampler, default_pool, iid_sample


def timed(label: str, rows: list[tuple[str, float]], work):
    start = time.perf_counter()
    result = work()
    rows.append((label, time.perf_counter() - start))
    print(f"{label:<44} {rows[-1][1]:8.2f} s", flush=True)
    return result


def main(argv=None) -> list[tuple[str, float]]:
    parser = OneLineParser(prog="python -m benchmarks.study_steps", description=__doc__)
    parser.add_argument("--dataset", default="amazon-computers")
    parser.add_argument("--methods", default="gcn,sr-gcn,appnp,sr-appnp")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.dataset}, {args.threads} torch thread(s)")
    rows: list[tuple[str, float]] = []
    data = timed("load the graph", rows, lambda: load_dataset(args.dataset))
    graph = timed("Graph.from_data", rows, lambda: Graph.from_data(data))
    sampler = LocalizedSampler(data)
    timed("a localized set, the first (LocalizedSampler)", rows, lambda: sampler.sample(1))
    train = timed("a localized set, the next", rows, lambda: sampler.sample(0))
    timed("its IID set", rows, lambda: iid_with_every_class(data, train.numel(), 0, default_pool(data)))
    first_iid = iid_sample(data, max(train.numel(), 500), 1, exclude=train)
    timed("KMM weights, the first (exact PPR rows + QP)", rows, lambda: kmm_node_weights(graph, train, first_iid))
    iid = iid_sample(data, max(train.numel(), 500), 0, exclude=train)
    timed("KMM weights, the next", rows, lambda: kmm_node_weights(graph, train, iid))
    for method in args.methods.split(","):
        timed(f"fit and score {method} ({args.epochs} epochs)", rows,
              lambda: run_one(method, graph, train, 0, epochs=args.epochs))
    slowest = max(rows, key=lambda row: row[1])
    print(f"slowest step: {slowest[0]} ({slowest[1]:.1f} s)")
    return rows


if __name__ == "__main__":
    main()
