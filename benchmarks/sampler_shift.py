"""How shifted are the training sets? Mean CMD (raw features, training set vs test nodes)
and mean within-class hop distance (over the first 20 sets), for 100 localized sets from
``LocalizedSampler`` at each of --teleports (``default``: the graph's, from
datasets/registry.json), 100 IID sets of the same size, and the SR-GNN authors' 100
published sets.

    python -m benchmarks.sampler_shift [--datasets cora,pubmed] [--sets 100] [--teleports 0.01,default]
                                       [--seeds-dir DIR]
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.skeleton import add_seeds_dir_option, published_sets_path
from srgnn.cli import OneLineParser
from srgnn.data import ChecksumError, load_dataset
from srgnn.sampling import (LocalizedSampler, default_pool, default_teleport, iid_sample, load_published_splits,
                            within_class_hops)
from srgnn.robustness.shift import cmd


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,citeseer,pubmed")
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--teleports", default="default",
                        help="comma-separated PPR teleports of the localized sets; 'default' is the graph's")
    add_seeds_dir_option(parser)
    args = parser.parse_args(argv)
    try:
        teleports = [None if t == "default" else float(t) for t in args.teleports.split(",")]
        if any(t is not None and not 0.0 < t < 1.0 for t in teleports):
            raise ValueError
    except ValueError:
        parser.error(f"--teleports takes numbers in (0, 1) or 'default'; got {args.teleports!r}")
    print(f"{'dataset':9s} {'sets':25s} {'mean CMD':>9s} {'hops':>6s}")
    for name in args.datasets.split(","):
        try:  # the user's data and files: report what is wrong with them in one line
            data = load_dataset(name)
            published = load_published_splits(published_sets_path(parser, args, name), data=data)[: args.sets]
        except (OSError, ChecksumError, ValueError, IndexError) as err:
            parser.error(str(err))
        test = data.test_mask.nonzero().view(-1)
        size = published[0].numel()
        families = {}
        for teleport in teleports:
            label = f"localized@{default_teleport(data) if teleport is None else teleport}"
            label += " (default)" if teleport is None else ""
            families[label] = LocalizedSampler(data, teleport=teleport).sample_many(args.sets, seed=0)
        families |= {
            "iid": [iid_sample(data, size, seed=i, candidates=default_pool(data)) for i in range(args.sets)],
            "published": published,
        }
        for label, sets in families.items():
            shift = np.mean([cmd(data.x[s], data.x[test]).item() for s in sets])
            print(f"{name:9s} {label:25s} {shift:9.4f} {within_class_hops(data, sets[:20]):6.2f}", flush=True)


if __name__ == "__main__":
    main()
