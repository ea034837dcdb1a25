"""Where to label next, measured: on each published localized set, train a model, add the 20
labels ``srgnn.estimation.acquisition.suggest_labels`` picks (weighted by that model's entropy), and
retrain; against adding 20 uniformly random unlabelled nodes' labels to the same set, with the
same seed. Both arms are scored on the same test nodes (the paper's, less both arms' added
nodes). Writes its section of docs/acquisition.md; runs resume from --runs.

    python -m benchmarks.where_to_label [--datasets cora,pubmed] [--methods gcn,sr-gcn] [--repeats 100]
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks.report import paired_difference
from benchmarks.runlog import RunLog
from benchmarks.skeleton import (add_seeds_dir_option, parse_study_args, publish, published_sets_path, run_pending,
                                 study_parser)
from benchmarks.study import build, test_nodes, worker_graph
from srgnn import Trainer
from srgnn.estimation.acquisition import suggest_labels
from srgnn.data import load_dataset
from srgnn.sampling import default_pool, load_published_splits

def one_set(dataset: str, method: str, index: int, train: torch.Tensor, k: int) -> dict:
    """Both arms on one set: the suggested and the random additions, and their test Micro-F1."""
    graph = worker_graph(dataset)
    data = graph.data

    def fit(nodes: torch.Tensor) -> Trainer:
        return Trainer(build(method, data), seed=index).fit(graph, nodes)

    first = fit(train)
    pool = default_pool(data)
    suggested = suggest_labels(graph, train, k, logits=first.logits(graph), candidates=pool)
    unlabelled = pool[~torch.isin(pool, train)]
    generator = torch.Generator().manual_seed(10_000 + index)
    uniform = unlabelled[torch.randperm(unlabelled.numel(), generator=generator)[:k]]
    test = torch.zeros(data.num_nodes, dtype=torch.bool)
    test[test_nodes(data, train)] = True
    test[suggested] = test[uniform] = False
    scores = {arm: fit(torch.cat([train, added])).evaluate(graph, test)["micro_f1"]
              for arm, added in (("suggested", suggested), ("random", uniform))}
    return {"dataset": dataset, "method": method, "index": index, "before": first.evaluate(graph, test)["micro_f1"],
            **scores, "suggested_nodes": suggested.tolist()}


def table(log: RunLog, datasets: list[str], methods: list[str]) -> list[str]:
    lines = ["| dataset | method | sets | before | + 20 random | + 20 suggested | suggested − random | wins |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dataset in datasets:
        for method in methods:
            before, suggested, uniform = (log.scores(arm, dataset=dataset, method=method)
                                          for arm in ("before", "suggested", "random"))
            if suggested.size == 0:
                continue
            diff = suggested - uniform
            lines.append(f"| {dataset} | {method} | {diff.size} | {before.mean():.1f} | {uniform.mean():.1f} | "
                         f"{suggested.mean():.1f} | {paired_difference(diff)} | "
                         f"{int((diff > 0).sum())}/{diff.size} |")
    return lines


def main(argv=None) -> None:
    parser = study_parser("where_to_label", __doc__, repeats=100, workers=min(2, os.cpu_count() or 1))
    parser.add_argument("--datasets", default="cora,pubmed")
    parser.add_argument("--methods", default="gcn,sr-gcn")
    parser.add_argument("--k", type=int, default=20, help="labels added per set")
    add_seeds_dir_option(parser)
    parser.add_argument("--runs", type=Path, default=Path("results/where_to_label.jsonl"),
                        help="JSONL of finished sets (resumed if present)")
    parser.add_argument("--doc", type=Path, default=Path("docs/acquisition.md"))
    args = parse_study_args(parser, argv, "k")
    datasets, methods = args.datasets.split(","), args.methods.split(",")
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.runs, ("dataset", "method", "index"))
    jobs = []
    for dataset in datasets:
        data = load_dataset(dataset)
        sets = load_published_splits(published_sets_path(parser, args, dataset), data=data)[:args.repeats]
        jobs += [(dataset, m, i, s, args.k) for m in methods for i, s in enumerate(sets)]
    run_pending(one_set, jobs, lambda job: job[:3], log, args)
    publish(args.doc, f"where-to-label {args.datasets} {args.methods}", [
        f"Command: `python -m benchmarks.where_to_label --datasets {args.datasets} --methods {args.methods} "
        f"--repeats {args.repeats} --k {args.k}`", "",
        "Micro-F1 in %, mean over the published localized sets; before: trained on the set alone; the",
        f"difference is paired (± its standard error); wins: sets where the suggested {args.k} beat the random {args.k}.",
        "", *table(log, datasets, methods)], "# Where to label next\n")


if __name__ == "__main__":
    main()
