"""The bias study on a synthetic graph of any size (``srgnn.synthetic.shifted_block_model``):
GCN on PPR-S training sets against GCN on IID sets of the same size, and SR-GCN's recovery.

    python -m benchmarks.synthetic_bias [--nodes 169343] [--ratio 0.01] [--repeats 10] [--out results/synthetic_bias]
                                        [--methods gcn,gcn-iid,sr-gcn,sr-gcn-kmm,sr-gcn-capped] [--workers 1] [--threads N]
                                        [--batch-size B --fan-outs 10,10]

The graph: 10 classes of 8 communities each, degree-corrected (power law 2.5), mean degree
about 9, 90% of edges within a class and 90% of those within a community, 64 features: class
mean + community offset (``--community-spread``, 3 unless told) + noise (4). Sets: ``PushSampler`` at ``--ratio`` over every
node (set r with seed r); IID sets: a uniform sample of as many nodes (seed r). Test nodes: the
graph's test mask minus both sets. Methods, 200 epochs each, full batch unless ``--batch-size``
or ``--fan-outs`` asks for sampled mini-batches: GCN on both sets; on the biased
sets, SR-GCN (CMD, lambda 1, the study's), SR-GCN with KMM on push-PPR rows plus CMD at
0.1 (the arxiv protocol's) and SR-GCN with its pull capped at the labels' (``max_pull=1``). Each run (method, set) is a job of ``benchmarks.runlog.run_logged``,
method by method, in ``--workers`` processes of ``--threads`` torch threads each (every worker
builds the graph once), saved to ``OUT/results.jsonl`` as it finishes; rerunning resumes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import markdown_table
from benchmarks.engine import clear_per_process, per_process
from benchmarks.runlog import RunLog
from benchmarks.skeleton import parse_study_args, run_pending, study_parser
from srgnn.cli import output_dir
from srgnn import ShiftRobust, Trainer
from srgnn.graph import Graph
from srgnn.models import GCN
from srgnn.sampling import PushSampler, iid_sample
from srgnn.synthetic import shifted_block_model

GRAPH = {"num_classes": 10, "communities": 8, "feature_noise": 4.0, "community_spread": 3.0}
#: method -> (training set, model factory)
RUNS = {
    "gcn": ("biased", lambda d: GCN(d.num_features, d.num_classes)),
    "gcn-iid": ("iid", lambda d: GCN(d.num_features, d.num_classes)),
    "sr-gcn": ("biased", lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd", lam=1.0)),
    "sr-gcn-kmm": ("biased", lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd", lam=0.1,
                                                   instance_weights="kmm", kmm_ppr="push")),
    # SR-GCN with its pull capped at the labels' (max_pull=1), the option for a graph where it collapses
    "sr-gcn-capped": ("biased", lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd", lam=1.0, max_pull=1.0)),
}


def graph_of(nodes: int, seed: int, graph_options: dict, ratio: float) -> tuple:
    """(data, ``Graph``, ``PushSampler``) for the block model, built once per process
    (``benchmarks.engine.per_process``); a ratio that leaves no class raises ``ValueError``."""
    def make() -> tuple:
        data = shifted_block_model(nodes, seed=seed, **graph_options)
        sampler = PushSampler(data, ratio, candidates=torch.arange(data.num_nodes))
        return data, Graph.from_data(data), sampler

    return per_process(("block model", nodes, seed, tuple(sorted(graph_options.items())), ratio), make)


def one_run(nodes: int, seed: int, graph_options: dict, ratio: float, training: dict, method: str, index: int) -> dict:
    """Train ``method`` on set ``index`` (biased: PPR-S with seed ``index``; IID: a uniform sample
    of as many nodes) with ``Trainer`` options ``training`` (epochs, and batch size and fan-outs
    for mini-batches) and score it on the test mask minus both sets."""
    data, graph, sampler = graph_of(nodes, seed, graph_options, ratio)
    biased = sampler.sample(seed=index)
    sets = {"biased": biased, "iid": iid_sample(data, biased.numel(), seed=index)}
    test = data.test_mask.clone()
    test[sets["biased"]] = test[sets["iid"]] = False
    split, make = RUNS[method]
    start = time.perf_counter()
    scores = Trainer(make(data), seed=index, **training).fit(graph, sets[split]).evaluate(graph, test)
    seconds = time.perf_counter() - start
    print(f"set {index} {method}: Micro-F1 {100 * scores['micro_f1']:.1f} ({seconds:.0f} s)", flush=True)
    # PPR ranks well-connected nodes high, so localized sets are also a degree shift.
    degree = graph.in_degree().float().cpu()
    return {"method": method, "index": index, **scores, "train_nodes": sets[split].numel(),
            "train_degree": degree[sets[split]].mean().item(), "graph_degree": degree.mean().item(),
            "seconds": seconds, "threads": torch.get_num_threads()}


def main(argv=None) -> list[list[str]]:
    parser = study_parser("synthetic_bias", __doc__, repeats=10, workers=1)
    parser.add_argument("--nodes", type=int, default=169_343)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the graph's seed")
    parser.add_argument("--community-spread", type=float, default=GRAPH["community_spread"],
                        help="how far a community's features sit from its class mean (0: no feature shift)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training nodes per mini-batch step (default: full batch, the receptive field)")
    parser.add_argument("--fan-outs", default=None, help="neighbours sampled per layer for mini-batches, e.g. 10,10")
    parser.add_argument("--methods", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--out", type=output_dir, default=Path("results/synthetic_bias"))
    args = parse_study_args(parser, argv, "epochs")
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in RUNS]
    if unknown:
        parser.error(f"--methods: unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(RUNS)}")
    training = {"epochs": args.epochs}
    if args.batch_size is not None or args.fan_outs is not None:
        batch_size = 1024 if args.batch_size is None else args.batch_size
        try:
            fan_outs = [int(k) for k in args.fan_outs.split(",")] if args.fan_outs else None
        except ValueError:
            parser.error(f"--fan-outs {args.fan_outs!r}: give one int per layer, comma-separated, e.g. 10,10")
        try:
            # Trainer refuses a bad batch size or fan-out list here, before any run.
            Trainer(GCN(1, 2), batch_size=batch_size, num_neighbors=fan_outs)
        except ValueError as err:
            parser.error(f"--batch-size / --fan-outs: {err}")
        training.update(batch_size=batch_size, num_neighbors=fan_outs)
    graph_options = {**GRAPH, "community_spread": args.community_spread}
    start = time.perf_counter()
    try:  # in this process for one worker; else only to refuse a bad graph or ratio before any run
        data = graph_of(args.nodes, args.seed, graph_options, args.ratio)[0]
    except ValueError as err:
        parser.error(str(err))
    print(f"{data.name}: {data.num_nodes:,} nodes, {data.edge_index.size(1):,} edge entries "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    if args.workers > 1:
        clear_per_process()  # each worker builds its own
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"nodes": args.nodes, "ratio": args.ratio, "seed": args.seed, **training, **graph_options}
    saved = args.out / "config.json"
    if saved.exists() and (args.out / "results.jsonl").exists() and json.loads(saved.read_text()) != config:
        parser.error(f"{args.out} holds runs of another configuration ({saved.read_text().strip()}); "
                     "rerun with those options to resume, or pass another --out")
    saved.write_text(json.dumps(config))
    log = RunLog(args.out / "results.jsonl", ("method", "index"))
    # Method by method, so that GCN's bias drop (gcn against gcn-iid) is known before the SR runs end.
    jobs = [(args.nodes, args.seed, graph_options, args.ratio, training, method, index)
            for method in methods for index in range(args.repeats)]
    run_pending(one_run, jobs, lambda job: job[5:], log, args)
    return report(log, methods, args)


def report(log: RunLog, methods: list[str], args) -> list[list[str]]:
    """Print and return the table: each method's Micro-F1, and an SR method's wins over GCN and
    share of GCN's bias drop recovered (where gcn and gcn-iid have run)."""
    gcn, iid = log.scores(method="gcn")[: args.repeats], log.scores(method="gcn-iid")[: args.repeats]
    rows = [["method", "Micro-F1", "wins vs GCN", "recovered"]]
    for method in methods:
        scores = log.scores(method=method)[: args.repeats]
        paired = method.startswith("sr-") and len(gcn) == len(scores) == len(iid)
        rows.append([method, f"{scores.mean():.1f} ± {scores.std():.1f}",
                     f"{int((scores > gcn).sum())}/{len(scores)}" if paired else "",
                     f"{100 * (scores.mean() - gcn.mean()) / (iid.mean() - gcn.mean()):.0f}%" if paired else ""])
    runs = [r for r in log.records.values() if r["index"] < args.repeats and "train_degree" in r]
    degree = {split: np.mean([r["train_degree"] for r in runs if r["method"] == method])
              for split, method in (("biased", "gcn"), ("iid", "gcn-iid")) if method in methods}
    line = f"\n{args.repeats} PPR-S sets at ratio {args.ratio} against IID sets of the same size"
    if len(gcn) and len(iid):
        line += f"; GCN's bias drop: {iid.mean() - gcn.mean():.1f} points"
    if runs and degree:
        line += ("; mean degree of the training nodes " + ", ".join(f"{d:.1f} ({s})" for s, d in degree.items())
                 + f", {runs[0]['graph_degree']:.1f} over the graph")
    print(line)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
