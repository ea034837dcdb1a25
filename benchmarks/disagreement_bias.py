"""Does disagreement estimate test error under biased training? For each biased set and each
IID set of the same size, train two seeds of a model; compare the GDE estimate (their
disagreement on the unlabelled nodes) with the true test error. Writes the dataset's section
of docs/disagreement.md (between <!-- <dataset> --> markers), leaving the other sections as they are.

    python -m benchmarks.disagreement_bias [--dataset pubmed] [--repeats 100] [--methods gcn,sr-gcn]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.runlog import RunLog
from benchmarks.study import build, test_nodes, write_section
from srgnn import Trainer
from srgnn.data import load_dataset
from srgnn.graph import Graph
from srgnn.disagreement import estimate_error
from srgnn.sampling import LocalizedSampler, default_pool, iid_sample


def one_set(method: str, graph: Graph, train: torch.Tensor, seed: int) -> dict:
    data = graph.data
    unlabelled = torch.ones(data.num_nodes, dtype=torch.bool)
    unlabelled[train] = False
    first, second = (Trainer(build(method, data), seed=seed + k).fit(graph, train) for k in (0, 1))
    test = test_nodes(data, train)
    true_error = 1.0 - first.evaluate(data, test)["micro_f1"]
    return {"estimate": estimate_error(first.logits(data), second.logits(data), nodes=unlabelled).error,
            "true_error": true_error}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pubmed")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--methods", default="gcn,sr-gcn")
    parser.add_argument("--runs", type=Path, default=None, help="JSONL of finished sets (resumed if present)")
    parser.add_argument("--doc", type=Path, default=Path("docs/disagreement.md"))
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset)
    biased = LocalizedSampler(data).sample_many(args.repeats, seed=0)
    iid = [iid_sample(data, s.numel(), seed=10_000 + i, candidates=default_pool(data)) for i, s in enumerate(biased)]
    runs = args.runs or Path(f"results/disagreement_{args.dataset}.jsonl")
    runs.parent.mkdir(parents=True, exist_ok=True)
    log = RunLog(runs, ("method", "split", "index"))
    methods = args.methods.split(",")
    jobs = [(m, s, i) for m in methods for s in ("biased", "iid") for i in range(args.repeats) if (m, s, i) not in log]
    graph = Graph.from_data(data)
    for method, split, i in tqdm(jobs, unit="set"):
        train = (biased if split == "biased" else iid)[i]
        log.add({"method": method, "split": split, "index": i, **one_set(method, graph, train, seed=2 * i)})
    lines = [f"## {args.dataset}, {args.repeats} localized sets and {args.repeats} IID sets", "",
             f"Command: `python -m benchmarks.disagreement_bias --dataset {args.dataset} --repeats {args.repeats} "
             f"--methods {args.methods}`", "",
             "Per set, two seeds of the model are trained; the GDE estimate is their disagreement rate on",
             "every unlabelled node, the true error is the first seed's test error (paper protocol test nodes).",
             "Bias = mean(estimate - true): negative means the estimate is too optimistic.", "",
             "| model | training sets | sets | true error | GDE estimate | MAE | correlation | bias |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method in methods:
        for split in ("biased", "iid"):
            est = log.scores("estimate", method=method, split=split) / 100
            true = log.scores("true_error", method=method, split=split) / 100
            corr = np.corrcoef(est, true)[0, 1] if est.size > 2 else float("nan")
            lines.append(f"| {method} | {split} | {est.size} | {true.mean():.3f} | {est.mean():.3f} | "
                         f"{np.abs(est - true).mean():.3f} | {corr:.2f} | {(est - true).mean():+.3f} |")
    write_section(args.doc, args.dataset, "\n".join(lines), "# Disagreement under bias\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
