"""Reproduce the SR-GNN table on the authors' published localized sets: the bias study
(`benchmarks.pubmed_bias`) with `--splits published` on each dataset, gathered into its
section of docs/reproduction.md (other sections are kept). Each dataset's runs live in
results/<dataset>_published/ and resume. `--splits generated` runs the same table on our
`LocalizedSampler` sets instead (results/<dataset>_generated/).

    python -m benchmarks.reproduce [--datasets cora,citeseer,pubmed] [--methods gcn,sr-gcn,appnp,sr-appnp]
                                   [--splits published|generated] [--iid uniform|label-balanced]

``--iid label-balanced`` runs the SR variants on the paper's IID sample, which reads the labels
of unlabelled nodes (``ShiftRobust(iid=...)``), into results/<dataset>_<splits>_label-balanced/
and a section of its own beside the label-free one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import pubmed_bias
from benchmarks.skeleton import add_seeds_dir_option, published_sets_path
from benchmarks.study import write_section
from srgnn.cli import OneLineParser
from srgnn.robustness.robust import IID_SAMPLES



def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,citeseer,pubmed")
    parser.add_argument("--methods", default="gcn,sr-gcn,appnp,sr-appnp")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--splits", choices=("published", "generated"), default="published",
                        help="the authors' published sets, or LocalizedSampler sets")
    parser.add_argument("--iid", choices=IID_SAMPLES, default="uniform",
                        help="the SR variants' IID sample; label-balanced READS THE LABELS OF UNLABELLED NODES")
    parser.add_argument("--iid-repeats", type=int, default=None, metavar="K",
                        help="IID sets per base model for the IID column (default: --repeats; 0 skips it)")
    parser.add_argument("--workers", type=int, default=None)
    add_seeds_dir_option(parser)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--doc", type=Path, default=Path("docs/reproduction.md"))
    args = parser.parse_args(argv)
    splits_flag = "" if args.splits == "published" else f" --splits {args.splits}"
    iid_flag = "" if args.iid == "uniform" else f" --iid {args.iid}"
    lines = [f"Command: `python -m benchmarks.reproduce --datasets {args.datasets} --methods {args.methods} "
             f"--repeats {args.repeats}{splits_flag}{iid_flag}`", "",
             *(["IID sample of the SR variants: label-balanced, the paper's protocol, which READS THE LABELS OF",
                "UNLABELLED NODES (n_train / C nodes per class from the candidate pool).", ""] if iid_flag else []),
             "Micro-F1 and Macro-F1 in %, mean ± std over the sets; IID: the same model trained on IID sets",
             "of the same size from the same pool; wins: paired wins of the SR variant over its base on the",
             "same sets; recovered: (SR − biased) / (IID − biased) of the base model's bias drop.", "",
             "| dataset | method | Micro-F1 | Macro-F1 | IID Micro-F1 | wins vs base | recovered | published |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in args.datasets.split(","):
        splits_path = published_sets_path(parser, args, name) if args.splits == "published" else None
        out = args.results / (f"{name}_{args.splits}" + ("" if args.iid == "uniform" else f"_{args.iid}"))
        result = pubmed_bias.study(
            dataset=name, splits=args.splits, methods=args.methods, iid=args.iid, repeats=args.repeats, out=out,
            iid_repeats=args.iid_repeats, workers=args.workers, threads=None if args.workers is None else 1,
            splits_path=splits_path,
            resume=(out / "results.jsonl").exists())
        for row in pubmed_bias.table_rows(result)[1:]:
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    # One section per datasets and methods, so a narrower run does not overwrite a wider one.
    write_section(args.doc, f"{args.splits} {args.datasets} {args.methods}" + (f" {args.iid}" if iid_flag else ""),
                  "\n".join(lines),
                  "# Reproduction on the published localized sets\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
