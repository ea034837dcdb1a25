"""The bias study over many graphs, and one table of them: its section of ``docs/graphs.md``.

    python -m benchmarks.graphs --repeats 10 --out results/graphs

Runs ``benchmarks.pubmed_bias`` on each graph of ``--datasets`` into ``--out/<graph>/``
(resuming what a graph's folder already holds), then writes the table: per graph and method,
the Micro-F1 over the localized sets (mean ± standard deviation), the base model's IID
reference (the same model on IID sets of the same size), the bias drop (IID reference minus
the base on the localized sets), for an SR variant the share of that drop it recovers and its
paired wins over its base, the validation Micro-F1 (nodes outside training and test), the
lowest training-node Micro-F1 over the sets (a collapsed fit shows there), and the
worker-minutes each graph's study cost.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks import pubmed_bias
from benchmarks.report import markdown_table
from benchmarks.runlog import RunLog
from benchmarks.study import base_of, write_section
from srgnn.cli import OneLineParser, output_dir
from srgnn.sampling.property import PROPERTIES

GRAPHS = ("cora", "citeseer", "pubmed", "amazon-photo", "amazon-computers", "coauthor-cs", "dblp", "actor")
METHODS = "gcn,sr-gcn,appnp,sr-appnp,sgc,sr-sgc"


def load_records(folder: Path) -> list[dict]:
    """Every run record of one graph's study in ``folder``."""
    log = RunLog(folder / "results.jsonl", ("method", "split", "index"))
    try:
        return list(log.records.values())
    finally:
        log.close()


def scores(records: list[dict], method: str, split: str = "biased", key: str = "micro_f1") -> np.ndarray:
    """A method's per-set scores in %, in set order (NaN where a record has none)."""
    rows = sorted((r for r in records if r["method"] == method and r["split"] == split), key=lambda r: r["index"])
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float) * 100


def recovered(method: np.ndarray, base: np.ndarray, iid: np.ndarray) -> float:
    """The share of the base model's bias drop (its mean on IID sets minus its mean on the biased
    ones) that a method's mean recovers."""
    return float((method.mean() - base.mean()) / (iid.mean() - base.mean()))


def graph_rows(name: str, folder: Path) -> tuple[list[list[str]], float]:
    """The table rows of one graph's study in ``folder``, and its worker-minutes."""
    records = load_records(folder)
    methods = list(dict.fromkeys(r["method"] for r in records))

    rows = []
    for method in methods:
        biased = scores(records, method, "biased")
        base = base_of(method) or method
        iid, base_biased = scores(records, base, "iid"), scores(records, base, "biased")
        drop = iid.mean() - base_biased.mean() if iid.size else np.nan
        share = wins = ""
        if base != method and base_biased.size:
            n = min(biased.size, base_biased.size)
            wins = f"{int((biased[:n] > base_biased[:n]).sum())}/{n}"
            share = f"{recovered(biased, base_biased, iid):.0%}" if drop > 0 else ""
        val = scores(records, method, "biased", "val_micro_f1")
        train = scores(records, method, "biased", "train_micro_f1")
        rows.append([name, method, f"{biased.mean():.1f} ± {biased.std():.1f}",
                     f"{iid.mean():.1f}" if iid.size else "",
                     f"{drop:.1f}" if np.isfinite(drop) else "", share, wins,
                     f"{np.nanmean(val):.1f}" if np.isfinite(val).any() else "",
                     f"{np.nanmin(train):.1f}" if np.isfinite(train).any() else ""])
    minutes = sum(r.get("seconds", 0.0) for r in records) / 60
    return rows, minutes


def main(argv=None) -> None:
    parser = OneLineParser(prog="python -m benchmarks.graphs", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(GRAPHS))
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--splits", choices=("generated", *PROPERTIES), default="generated",
                        help="LocalizedSampler sets (default), or sets biased by a structural property")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=output_dir, default=Path("results/graphs"))
    parser.add_argument("--doc", type=Path, default=Path("docs/graphs.md"))
    parser.add_argument("--study-only", action="store_true", help="run the studies, leave --doc as it is")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in pubmed_bias.DATASETS]
    if unknown:
        parser.error(f"unknown graph(s) {unknown}; choose from {', '.join(pubmed_bias.DATASETS)}")
    table = [["graph", "method", "Micro-F1", "IID reference", "bias drop", "recovered", "wins vs base",
              "validation Micro-F1", "lowest training Micro-F1"]]
    costs = []
    for name in names:
        folder = args.out / name
        pubmed_bias.study(dataset=name, splits=args.splits, repeats=args.repeats, methods=args.methods,
                          epochs=args.epochs, out=folder,
                          resume=(folder / "results.jsonl").exists(), workers=args.workers, threads=args.threads)
        rows, minutes = graph_rows(name, folder)
        table += rows
        costs.append(f"{name} {minutes:.1f}")
    if args.study_only:
        return
    text = "\n".join([
        "## The table", "",
        f"`python -m benchmarks.graphs --datasets {','.join(names)} --methods {args.methods} --repeats "
        f"{args.repeats} --epochs {args.epochs}`: {args.repeats} localized sets per graph (`LocalizedSampler`, "
        "the graph's teleport), "
        "Micro-F1 in %. Test nodes: the Planetoid test nodes on CiteSeer and PubMed, every non-training node on "
        "Cora, and on the other graphs every node outside the training set and 500 uniformly drawn validation "
        "nodes. Features as PyG gives them.", "",
        markdown_table(table), "",
        "Worker-minutes per graph: " + ", ".join(costs) + "."])
    # Its own section of the doc, which keeps the diagnosis and the other sections.
    write_section(args.doc, f"graphs {','.join(names)} {args.methods}", text, "# SR-GNN across graphs\n")
    print(text)


if __name__ == "__main__":
    main()
