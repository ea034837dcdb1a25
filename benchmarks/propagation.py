"""Time per propagation step, Â X, side by side: srgnn's cached CSR SpMM, PyG's
``MessagePassing`` (a ``GCNConv`` without weights, normalization cached) and PyG's
``torch_geometric.utils.spmm`` on a ``SparseTensor``-free CSR adjacency.

    python -m benchmarks.propagation [--datasets cora,pubmed] [--synthetic 1000000] [--columns 64]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import spmm as pyg_spmm

from srgnn.cli import OneLineParser
from srgnn.data import load_dataset
from srgnn.synthetic import synthetic_graph
from srgnn.kernels.propagation import normalized_adjacency, spmm


class _Propagate(MessagePassing):
    """Â X by message passing: messages x_j * w_ij, summed at i."""

    def __init__(self):
        super().__init__(aggr="add")

    def forward(self, x, edge_index, edge_weight):
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j, edge_weight):
        return edge_weight.view(-1, 1) * x_j


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench(name: str, data, columns: int, repeats: int) -> None:
    x = torch.randn(data.num_nodes, columns)
    adj = normalized_adjacency(data.edge_index, data.num_nodes)
    edge_index, weight = gcn_norm(data.edge_index, None, data.num_nodes, add_self_loops=True)
    conv = _Propagate()
    ours = _time(lambda: spmm(adj, x), repeats)
    mp = _time(lambda: conv(x, edge_index, weight), repeats)
    pyg = _time(lambda: pyg_spmm(adj, x), repeats)
    ref = spmm(adj, x)
    assert torch.allclose(ref, conv(x, edge_index, weight), atol=1e-4)
    print(f"{name:18s} {columns:4d} cols  srgnn {ours * 1e3:8.2f} ms  MessagePassing {mp * 1e3:8.2f} ms "
          f"({mp / ours:4.1f}x)  PyG spmm {pyg * 1e3:8.2f} ms ({pyg / ours:4.1f}x)")


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,pubmed")
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="nodes of a synthetic graph (0: skip)")
    parser.add_argument("--columns", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    for name in args.datasets.split(","):
        bench(name, load_dataset(name), args.columns, args.repeats)
    if args.synthetic:
        bench(f"synthetic-{args.synthetic}", synthetic_graph(args.synthetic, 10, seed=0), args.columns, 3)


if __name__ == "__main__":
    main()
