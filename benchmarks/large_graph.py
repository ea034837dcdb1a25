"""Scale figures on one large synthetic graph (``srgnn.synthetic.shifted_block_model``), side by
side in one run:

* PPR-S (``PushSampler``): ``--sets`` training sets at ``--ratio``, seconds and peak memory;
* one epoch of mini-batch training on the first set: srgnn's GCN, SR-GCN (CMD on each step's
  IID batch) and GraphSAGE through ``Trainer(batch_size=..., num_neighbors=...)``, and a plain
  PyG loop (``NeighborLoader`` + ``torch_geometric.nn.GraphSAGE``) on the same set, sampler,
  fan-outs and batch size, timed in alternation over ``--rounds`` rounds (median);
* whole-graph inference of the trained GCN: seconds and peak memory.

    python -m benchmarks.large_graph [--nodes 2400000] [--sets 100] [--ratio 0.01] [--threads 1]

Peak memory is the process's peak resident set over each phase (Linux ``VmHWM``, reset at the
phase's start through ``/proc/self/clear_refs``), next to its resident set when the phase began.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.loader import NeighborLoader
from torch_geometric.nn import GraphSAGE as PyGGraphSAGE

from benchmarks.report import markdown_table
from benchmarks.synthetic_bias import GRAPH
from srgnn.cli import OneLineParser
from srgnn import ShiftRobust, Trainer
from srgnn.graph import Graph
from srgnn.training.loader import HAS_COMPILED_SAMPLER, TorchNeighborSampler
from srgnn.models import GCN, GraphSAGE
from srgnn.sampling import PushSampler
from srgnn.synthetic import shifted_block_model

#: The bias study's graph at the community spread of the scale figures in docs/benchmarks.md,
#: measured before the bias study moved to 3.0; the spread shifts features, not the graph's size.
SCALE_SPREAD = 2.0
GIB = 2 ** 30


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class Phase:
    """Seconds and peak resident memory of the code in its ``with`` block."""

    def __enter__(self) -> "Phase":
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        self.start_rss = _status_bytes("VmRSS")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.peak = _status_bytes("VmHWM")

    def memory(self) -> str:
        return f"{self.peak / GIB:.2f} GiB (from {self.start_rss / GIB:.2f})"


def pyg_sage_epoch(data, train: torch.Tensor, fan_outs: list[int], batch_size: int, hidden: int, seed: int) -> None:
    """One epoch of the plain PyG recipe: NeighborLoader over the training nodes, GraphSAGE,
    cross-entropy on each batch's seed nodes."""
    torch.manual_seed(seed)
    sampler = None if HAS_COMPILED_SAMPLER else TorchNeighborSampler(data, fan_outs,
                                                                     torch.Generator().manual_seed(seed))
    loader = NeighborLoader(data, fan_outs, input_nodes=train, batch_size=batch_size, shuffle=True,
                            neighbor_sampler=sampler)
    model = PyGGraphSAGE(data.num_features, hidden, num_layers=len(fan_outs), out_channels=data.num_classes,
                         dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    model.train()
    for batch in loader:
        optimizer.zero_grad()
        out = model(batch.x, batch.edge_index)[:batch.batch_size]
        F.cross_entropy(out, batch.y[:batch.batch_size]).backward()
        optimizer.step()


def main(argv=None) -> str:
    parser = OneLineParser(prog="python -m benchmarks.large_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2_400_000)
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--fan-outs", default="10,10")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds of the epochs")
    parser.add_argument("--iid-size", type=int, default=None,
                        help="SR-GCN's IID sample (default: ShiftRobust's, as many nodes as the training set)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--community-spread", type=float, default=SCALE_SPREAD,
                        help=f"the block model's community feature offset (default {SCALE_SPREAD})")
    args = parser.parse_args(argv)
    if min(args.nodes, args.sets, args.batch_size, args.hidden, args.rounds, args.threads,
           1 if args.iid_size is None else args.iid_size) < 1:
        parser.error("--nodes, --sets, --batch-size, --hidden, --rounds, --threads and --iid-size must be >= 1")
    fan_outs = [int(k) for k in args.fan_outs.split(",")]
    torch.set_num_threads(args.threads)
    lines = [f"Command: `python -m benchmarks.large_graph --nodes {args.nodes} --sets {args.sets} --ratio {args.ratio} "
             f"--batch-size {args.batch_size} --fan-outs {args.fan_outs} --hidden {args.hidden} --rounds {args.rounds} "
             f"--threads {args.threads}" + (f" --iid-size {args.iid_size}" if args.iid_size else "")
             + (f" --community-spread {args.community_spread:g}" if args.community_spread != SCALE_SPREAD else "")
             + f"` (torch threads: {args.threads}; sampler: "
             f"{'PyG compiled' if HAS_COMPILED_SAMPLER else 'srgnn.training.loader.TorchNeighborSampler'})", ""]

    with Phase() as build:
        data = shifted_block_model(args.nodes, seed=0, **{**GRAPH, "community_spread": args.community_spread})
    lines.append(f"Graph: {data.num_nodes:,} nodes, {data.edge_index.size(1):,} edge entries, {data.num_features} "
                 f"features, {GRAPH['num_classes']} classes; built in {build.seconds:.0f} s, {build.memory()}.")
    print(lines[-1], flush=True)

    with Phase() as ppr:
        try:
            sampler = PushSampler(data, args.ratio, candidates=torch.arange(data.num_nodes))
        except ValueError as err:  # a ratio that leaves no class
            parser.error(str(err))
        sets = [sampler.sample(seed) for seed in range(args.sets)]
    lines.append(f"PPR-S: {args.sets} sets of {sets[0].numel():,} nodes (ratio {args.ratio}) in {ppr.seconds:.1f} s "
                 f"({ppr.seconds / args.sets:.2f} s a set), peak {ppr.memory()}.")
    print(lines[-1], flush=True)

    train = sets[0]
    graph = Graph.from_data(data)  # shared by the srgnn trainers, as ``Trainer`` documents
    options = {"epochs": 1, "batch_size": args.batch_size, "num_neighbors": fan_outs, "seed": 0}
    methods = {
        "srgnn GCN": lambda: Trainer(GCN(data.num_features, data.num_classes, hidden_channels=args.hidden),
                                     **options).fit(graph, train),
        "srgnn SR-GCN (CMD)": lambda: Trainer(ShiftRobust(GCN(data.num_features, data.num_classes,
                                                              hidden_channels=args.hidden), "cmd", lam=1.0,
                                                          iid_size=args.iid_size),
                                              **options).fit(graph, train),
        "srgnn GraphSAGE": lambda: Trainer(GraphSAGE(data.num_features, data.num_classes, hidden_channels=args.hidden),
                                           **options).fit(graph, train),
        "PyG GraphSAGE loop": lambda: pyg_sage_epoch(data, train, fan_outs, args.batch_size, args.hidden, 0),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    trained = {}
    for _ in range(args.rounds):
        for name, run in methods.items():  # alternated, so load on the machine falls on every method alike
            start = time.perf_counter()
            trained[name] = run()
            seconds[name].append(time.perf_counter() - start)
            print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    steps = -(-train.numel() // args.batch_size)
    rows = [["method", "epoch seconds (median)", "rounds", "vs srgnn GCN", "vs PyG loop"]]
    for name, m in median.items():
        rows.append([name, f"{m:.2f}", " / ".join(f"{t:.1f}" for t in seconds[name]),
                     f"{m / median['srgnn GCN']:.2f}x", f"{m / median['PyG GraphSAGE loop']:.2f}x"])
    lines += ["", f"One epoch on set 0 ({train.numel():,} training nodes, {steps} steps of {args.batch_size}, "
              f"fan-outs {fan_outs}, hidden {args.hidden}), each run building its own loader:", "",
              markdown_table(rows)]

    with Phase() as inference:
        logits = trained["srgnn GCN"].logits(graph)
    lines += ["", f"Whole-graph inference of the GCN ({logits.shape[0]:,} x {logits.shape[1]} logits): "
              f"{inference.seconds:.1f} s, peak {inference.memory()}."]
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
