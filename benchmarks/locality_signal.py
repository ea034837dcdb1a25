"""Can a label-free statistic tell localized labels from popularity-biased ones? Per set, the
mean shortest path between same-class labelled nodes over the mean path from the labelled
nodes to 1,000 uniformly drawn nodes (unreachable pairs skipped): low when each class's labels
sit in one neighbourhood. It reads the graph and the labelled nodes' classes only.

    python -m benchmarks.locality_signal [--datasets cora,...] [--sets 10]

Prints, per graph and family (``LocalizedSampler`` at the graph's teleport, ``PropertySampler``
popularity), the ratio's mean and range over the sets (docs/recipes.md, "A second bias family").
"""
from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

from benchmarks.graphs import GRAPHS
from srgnn.cli import OneLineParser
from srgnn.data import load_dataset
from srgnn.sampling import LocalizedSampler, PropertySampler

REFERENCE_NODES = 1000


def locality_ratio(adjacency: sp.csr_matrix, y: np.ndarray, labelled: np.ndarray, reference: np.ndarray) -> float:
    """Mean hops between same-class ``labelled`` nodes over mean hops from them to ``reference``."""
    hops = csgraph.shortest_path(adjacency, indices=labelled, unweighted=True)
    within = hops[:, labelled][(y[labelled][:, None] == y[labelled][None]) & ~np.eye(labelled.size, dtype=bool)]
    outward = hops[:, reference]
    return float(within[np.isfinite(within)].mean() / outward[np.isfinite(outward)].mean())


def main(argv=None) -> None:
    parser = OneLineParser(prog="python -m benchmarks.locality_signal", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(GRAPHS))
    parser.add_argument("--sets", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| graph | family | ratio, mean | range |\n| --- | --- | ---: | --- |")
    for name in [g for g in args.datasets.split(",") if g]:
        data = load_dataset(name)
        edges = data.edge_index.numpy()
        adjacency = sp.csr_matrix((np.ones(edges.shape[1]), edges), shape=(data.num_nodes,) * 2)
        y = data.y.view(-1).numpy()
        families = {"localized": LocalizedSampler(data).sample_many(args.sets, seed=0),
                    "popularity": PropertySampler(data, "popularity").sample_many(args.sets, seed=0)}
        for family, sets in families.items():
            rng = np.random.default_rng(0)
            ratios = [locality_ratio(adjacency, y, s.numpy(),
                                     rng.choice(data.num_nodes, REFERENCE_NODES, replace=False)) for s in sets]
            print(f"| {name} | {family} | {np.mean(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |", flush=True)


if __name__ == "__main__":
    main()
