"""A synthetic graph written in ogb's on-disk layout of ogbn-arxiv, for machines that cannot
download the real one: ``srgnn.data.load_dataset("ogbn-arxiv", root=...)`` then loads it
through ``ogb`` itself, as it loads the real download.

    python -m benchmarks.ogb_layout --out DIR [--nodes 169343 --edges 1166243]

The default size is arxiv's: 169,343 nodes, 1,166,243 directed edges, 128 features, 40 classes
(``srgnn.synthetic.synthetic_graph``'s block model, homophily 0.65, feature noise 8), and a year split of arxiv's
sizes (train up to 2017: 90,941 nodes; valid 2018: 29,799; test from 2019: 48,603), scaled
with ``--nodes``. Files: ``ogbn_arxiv/raw/{edge,node-feat,node-label,node_year,num-node-list,
num-edge-list}.csv.gz``, ``ogbn_arxiv/split/time/{train,valid,test}.csv.gz`` and
``RELEASE_v1.txt``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from srgnn.cli import OneLineParser, output_dir
from srgnn.synthetic import synthetic_graph

ARXIV = {"nodes": 169_343, "edges": 1_166_243, "features": 128, "classes": 40}
#: ogbn-arxiv's split sizes: papers up to 2017, of 2018, and from 2019 on.
ARXIV_SPLIT = {"train": 90_941, "valid": 29_799, "test": 48_603}
FAST_GZIP = {"method": "gzip", "compresslevel": 1}


def _write(path: Path, rows: np.ndarray, float_format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, float_format=float_format, compression=FAST_GZIP)


def write_arxiv_layout(root: Path, num_nodes: int = ARXIV["nodes"], num_edges: int = ARXIV["edges"],
                       seed: int = 0) -> Path:
    """Write the synthetic graph under ``root/ogbn_arxiv``; returns that folder."""
    if num_nodes < 100 or num_edges < num_nodes:
        raise ValueError(f"need at least 100 nodes and as many edges; got {num_nodes} nodes, {num_edges} edges")
    # Enough undirected edges that one direction of each covers num_edges.
    data = synthetic_graph(num_nodes, ARXIV["classes"], avg_degree=2.2 * num_edges / num_nodes, homophily=0.65,
                           num_features=ARXIV["features"], feature_noise=8.0, seed=seed)
    source, target = data.edge_index
    one_way = data.edge_index[:, source < target]
    if one_way.size(1) < num_edges:
        raise RuntimeError(f"the block model gave {one_way.size(1)} edges, fewer than {num_edges}")
    rng = np.random.default_rng(seed)
    edges = one_way[:, torch.from_numpy(np.sort(rng.choice(one_way.size(1), num_edges, replace=False)))]
    # Years by split, in arxiv's proportions: train <= 2017, valid 2018, test >= 2019.
    total = sum(ARXIV_SPLIT.values())
    n_train = round(num_nodes * ARXIV_SPLIT["train"] / total)
    n_valid = round(num_nodes * ARXIV_SPLIT["valid"] / total)
    order = rng.permutation(num_nodes)
    year = np.empty(num_nodes, dtype=np.int64)
    year[order[:n_train]] = rng.integers(1990, 2018, n_train)
    year[order[n_train:n_train + n_valid]] = 2018
    year[order[n_train + n_valid:]] = rng.integers(2019, 2021, num_nodes - n_train - n_valid)

    base = Path(root) / "ogbn_arxiv"
    raw = base / "raw"
    _write(raw / "edge.csv.gz", edges.t().numpy())
    _write(raw / "node-feat.csv.gz", data.x.numpy(), float_format="%.4f")
    _write(raw / "node-label.csv.gz", data.y.numpy()[:, None])
    _write(raw / "node_year.csv.gz", year[:, None])
    _write(raw / "num-node-list.csv.gz", np.array([[num_nodes]]))
    _write(raw / "num-edge-list.csv.gz", np.array([[num_edges]]))
    for part, nodes in (("train", year <= 2017), ("valid", year == 2018), ("test", year >= 2019)):
        _write(base / "split" / "time" / f"{part}.csv.gz", np.nonzero(nodes)[0][:, None])
    (base / "RELEASE_v1.txt").write_text("synthetic graph in ogbn-arxiv's layout (benchmarks.ogb_layout)\n")
    return base


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=output_dir, required=True, help="root folder; the graph goes to OUT/ogbn_arxiv")
    parser.add_argument("--nodes", type=int, default=ARXIV["nodes"])
    parser.add_argument("--edges", type=int, default=None, help="default: arxiv's edges per node times --nodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    edges = args.edges or round(args.nodes * ARXIV["edges"] / ARXIV["nodes"])
    try:
        base = write_arxiv_layout(args.out, args.nodes, edges, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {args.nodes:,} nodes and {edges:,} edges in ogb's ogbn-arxiv layout to {base}")


if __name__ == "__main__":
    main()
