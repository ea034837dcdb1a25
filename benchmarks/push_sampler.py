"""PPR-S against exact PPR and against the localized sampler, side by side in one run:

* how well ``push_ppr``'s top-k neighbours match exact random-walk PPR (by sparse LU), and
  its seconds, at each residual tolerance;
* how biased ``PushSampler``'s sets are: CMD of their features to the test nodes' and the
  mean within-class hops, beside ``LocalizedSampler``'s sets and IID sets of each's size.

    python -m benchmarks.push_sampler [--dataset pubmed] [--sets 10] [--ratio 0.01]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from srgnn.cli import OneLineParser
from srgnn.data import load_dataset
from srgnn.sampling import LocalizedSampler, PushSampler, iid_sample, push_ppr, within_class_hops
from srgnn.sampling.push import exact_walk_ppr
from srgnn.robustness.shift import cmd


def overlap_table(data, seeds: torch.Tensor, tolerances: list[float], ks: tuple[int, ...]) -> list[str]:
    exact = exact_walk_ppr(data, seeds, 0.1).numpy()
    lines = [f"| eps | seconds ({seeds.numel()} seeds) | " + " | ".join(f"top-{k} overlap" for k in ks) + " |",
             "| --- | --- |" + " --- |" * len(ks)]
    for eps in tolerances:
        start = time.perf_counter()
        indices, _ = push_ppr(data, seeds, 0.1, eps, top_k=max(ks))
        seconds = time.perf_counter() - start
        overlaps = []
        for k in ks:
            shared = [len(set(np.argsort(-exact[:, r], kind="stable")[:k].tolist()) & set(indices[r, :k].tolist())) / k
                      for r in range(seeds.numel())]
            overlaps.append(f"{np.mean(shared):.3f}")
        lines.append(f"| {eps:g} | {seconds:.2f} | " + " | ".join(overlaps) + " |")
    return lines


def bias_table(data, sets_by_sampler: dict[str, list[torch.Tensor]]) -> list[str]:
    test_x = data.x[data.test_mask]
    lines = ["| sets | nodes | CMD to test nodes | within-class hops | IID of that size: CMD | hops |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, sets in sets_by_sampler.items():
        iid = [iid_sample(data, s.numel(), seed=10_000 + i) for i, s in enumerate(sets)]
        biased_cmd = np.mean([float(cmd(data.x[s], test_x)) for s in sets])
        iid_cmd = np.mean([float(cmd(data.x[s], test_x)) for s in iid])
        lines.append(f"| {name} | {sets[0].numel()} | {biased_cmd:.4f} | {within_class_hops(data, sets):.2f} | "
                     f"{iid_cmd:.4f} | {within_class_hops(data, iid):.2f} |")
    return lines


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pubmed")
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=0.01, help="PPR-S label ratio (of every node of a class)")
    parser.add_argument("--tolerances", default="1e-3,1e-4,5e-5,1e-5")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    seeds = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(0))[:20]
    print(f"{args.dataset}, one thread: push PPR (teleport 0.1) against exact random-walk PPR, 20 random seeds")
    print("\n".join(overlap_table(data, seeds, [float(t) for t in args.tolerances.split(",")], (20, 50, 100))))
    sampler = PushSampler(data, args.ratio, candidates=torch.arange(data.num_nodes))
    start = time.perf_counter()
    push_sets = [sampler.sample(seed=i) for i in range(args.sets)]
    seconds = (time.perf_counter() - start) / args.sets
    print(f"\nPPR-S at ratio {args.ratio} (quota {sampler.quota}, dropped {sampler.dropped_classes}): "
          f"{seconds:.2f} s a set; last report {sampler.report_}")
    localized = LocalizedSampler(data).sample_many(args.sets, seed=0)
    print("\n".join(bias_table(data, {f"PPR-S {args.ratio}": push_sets, "LocalizedSampler": localized})))


if __name__ == "__main__":
    main()
