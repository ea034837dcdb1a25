"""SR-GCN against the SR-GNN authors' GCN, one difference at a time (issue 24): each switch
changes one thing in srgnn's GCN toward the authors' code (DGL ``GraphConv``, their
``main_gnn.py``), and GCN and SR-GCN are both trained with it, on the same published sets,
with the label-free IID sample. The runs go through the bias study (``benchmarks.pubmed_bias``:
its engine, resume and results log), the switched models as ``--methods`` plug-ins.

    python -m benchmarks.sr_gcn_switches [--dataset cora] [--repeats 10] [--out results/sr_gcn_switches]

Prints, for each switch, GCN's and SR-GCN's mean Micro-F1 with SR-GCN's paired wins over GCN,
and how far each moved from srgnn's own GCN and SR-GCN on the same sets.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks import pubmed_bias
from benchmarks.skeleton import add_seeds_dir_option, published_sets_path
from benchmarks.report import markdown_table
from benchmarks.runlog import RunLog
from srgnn.cli import OneLineParser, output_dir
from srgnn.models import GCN


def _gcn(data, **options) -> GCN:
    return GCN(data.num_features, data.num_classes, **options)


# Each switch as a model factory for the study's --methods (package.module:factory). srgnn's GCN
# as it was before issue 24 ("srgnn before"), and one difference from it at a time toward the
# authors' GCN; "all three" is srgnn's GCN since.
BEFORE = {"input_dropout": None, "hidden_after_dropout": False, "weight_init": "uniform"}
gcn_srgnn = partial(_gcn, **BEFORE)
gcn_no_input_dropout = partial(_gcn, **{**BEFORE, "input_dropout": 0.0})
gcn_cmd_after_dropout = partial(_gcn, **{**BEFORE, "hidden_after_dropout": True})
gcn_glorot = partial(_gcn, **{**BEFORE, "weight_init": "glorot"})
gcn_all_three = partial(_gcn, input_dropout=0.0, hidden_after_dropout=True, weight_init="glorot")

#: Switch -> its factory's name here; the first is srgnn's GCN before the change.
SWITCHES = {"srgnn before": "gcn_srgnn", "no input dropout": "gcn_no_input_dropout",
            "CMD after dropout": "gcn_cmd_after_dropout", "glorot init": "gcn_glorot",
            "all three (srgnn now)": "gcn_all_three"}


def method_of(switch: str) -> str:
    return f"benchmarks.sr_gcn_switches:{SWITCHES[switch]}"


def main(argv=None) -> list[list[str]]:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    add_seeds_dir_option(parser)
    parser.add_argument("--out", type=output_dir, default=Path("results/sr_gcn_switches"))
    args = parser.parse_args(argv)
    methods = [m for switch in SWITCHES for m in (method_of(switch), "sr-" + method_of(switch))]
    pubmed_bias.study(dataset=args.dataset, splits="published", repeats=args.repeats,
                      splits_path=published_sets_path(parser, args, args.dataset), iid_repeats=0,
                      methods=",".join(methods), workers=args.workers, threads=args.threads, seed=0, out=args.out,
                      resume=(args.out / "results.jsonl").exists())
    log = RunLog(args.out / "results.jsonl", ("method", "split", "index"))

    def scores(method: str) -> np.ndarray:
        return log.scores(method=method, split="biased")[: args.repeats]

    ours_gcn, ours_sr = scores(method_of("srgnn before")), scores("sr-" + method_of("srgnn before"))
    rows = [["switch", "GCN", "SR-GCN", "SR-GCN wins", "SR-GCN - GCN", "GCN change", "SR-GCN change"]]
    for switch in SWITCHES:
        gcn, sr = scores(method_of(switch)), scores("sr-" + method_of(switch))
        rows.append([switch, f"{gcn.mean():.2f}", f"{sr.mean():.2f}", f"{int((sr > gcn).sum())}/{len(sr)}",
                     f"{(sr - gcn).mean():+.2f}", f"{(gcn - ours_gcn).mean():+.2f}", f"{(sr - ours_sr).mean():+.2f}"])
    print(f"\n{args.dataset}, {args.repeats} published sets, label-free IID sample; Micro-F1 (%) on the test nodes")
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
