"""Time and peak memory of drawing 100 localized sets, srgnn against the paper code's approach.

The paper's code forms the dense PPR matrix by inverting I - (1 - a) A_hat and then all
pairwise squared distances between its rows. srgnn solves sparse systems for the pool's
PPR columns instead. Both run here, side by side, in child processes so that each peak
memory (ru_maxrss) is its own.

    python -m benchmarks.sampler [--datasets cora,citeseer,pubmed] [--skip-dense pubmed] [--scale]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np
import torch

from srgnn.cli import OneLineParser


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _srgnn(name: str, sketch_dim, queue) -> None:
    from srgnn.data import load_dataset
    from srgnn.sampling import LocalizedSampler

    data = load_dataset(name)
    base = _peak_gib()
    start = time.perf_counter()
    sets = LocalizedSampler(data, sketch_dim=sketch_dim).sample_many(100, seed=0)
    queue.put({"seconds": time.perf_counter() - start, "peak_gib": _peak_gib() - base, "sets": len(sets)})


def _paper(name: str, queue) -> None:
    """Dense inverse, dense pairwise distances, top-k per class (the authors' recipe)."""
    from srgnn.data import load_dataset
    from srgnn.sampling import default_pool, default_teleport

    data = load_dataset(name)
    base = _peak_gib()
    start = time.perf_counter()
    n = data.num_nodes
    a = torch.zeros(n, n, dtype=torch.float64)
    a[data.edge_index[0], data.edge_index[1]] = 1.0
    a += torch.eye(n, dtype=torch.float64)
    d = a.sum(1).rsqrt()
    teleport = default_teleport(data)  # the teleport srgnn's rows use
    ppr = teleport * torch.linalg.inv(torch.eye(n, dtype=torch.float64) - (1 - teleport) * d[:, None] * a * d[None])
    del a
    pool = default_pool(data)
    rows = ppr[pool]
    dist = (rows ** 2).sum(1)[:, None] + (rows ** 2).sum(1)[None] - 2 * rows @ rows.T
    gen = torch.Generator().manual_seed(0)
    y = data.y[pool]
    for _ in range(100):
        for c in range(data.num_classes):
            members = (y == c).nonzero().view(-1)
            seed = members[torch.randint(members.numel(), (1,), generator=gen)]
            members[dist[seed, members].view(-1).topk(20, largest=False).indices]
    queue.put({"seconds": time.perf_counter() - start, "peak_gib": _peak_gib() - base})


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _scale(num_nodes: int, queue) -> None:
    from srgnn.synthetic import synthetic_graph
    from srgnn.sampling import LocalizedSampler

    data = synthetic_graph(num_nodes, 10, seed=0)
    base = _peak_gib()
    start = time.perf_counter()
    LocalizedSampler(data, teleport=0.1, sketch_dim=64).sample_many(100, seed=0)
    queue.put({"seconds": time.perf_counter() - start, "peak_gib": _peak_gib() - base})


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,citeseer,pubmed")
    parser.add_argument("--skip-dense", default="", help="datasets whose dense baseline is skipped")
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="also sample on an N-node synthetic graph (e.g. 1000000)")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'dataset':10s} {'method':18s} {'seconds':>9s} {'peak GiB':>9s} {'speed-up':>9s}")
    for name in args.datasets.split(","):
        ours = _run(_srgnn, name, None)
        sketch = _run(_srgnn, name, 256)
        dense = None if name in args.skip_dense.split(",") else _run(_paper, name)
        for label, res in (("srgnn exact", ours), ("srgnn sketch-256", sketch), ("paper dense inv", dense)):
            if res is None:
                continue
            ratio = f"{dense['seconds'] / res['seconds']:.1f}x" if dense else "skipped"
            print(f"{name:10s} {label:18s} {res['seconds']:9.2f} {res['peak_gib']:9.2f} {ratio:>9s}")
            rows.append({"dataset": name, "method": label, **res})
    if args.scale:
        res = _run(_scale, args.scale)
        print(f"synthetic-{args.scale} srgnn sketch-64, teleport 0.1: {res['seconds']:.1f} s, peak {res['peak_gib']:.2f} GiB")
        rows.append({"dataset": f"synthetic-{args.scale}", "method": "srgnn sketch-64", **res})
    print(json.dumps(rows))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
