"""Reproduce the SR-GNN table on the authors' published localized sets: the bias study
(`benchmarks.pubmed_bias`) with `--splits published` on each dataset, gathered into its
section of docs/reproduction.md (other sections are kept). Each dataset's runs live in
results/<dataset>_published/ and resume.

    python -m benchmarks.reproduce [--datasets cora,citeseer,pubmed] [--methods gcn,sr-gcn,appnp,sr-appnp]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import pubmed_bias
from benchmarks.study import write_section

SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "srgnn_localized_seeds"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,citeseer,pubmed")
    parser.add_argument("--methods", default="gcn,sr-gcn,appnp,sr-appnp")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--seeds-dir", type=Path, default=SEEDS_DIR)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--doc", type=Path, default=Path("docs/reproduction.md"))
    args = parser.parse_args(argv)
    lines = [f"Command: `python -m benchmarks.reproduce --datasets {args.datasets} --methods {args.methods} "
             f"--repeats {args.repeats}`", "",
             "Micro-F1 and Macro-F1 in %, mean ± std over the sets; IID: the same model trained on IID sets",
             "of the same size from the same pool; wins: paired wins of the SR variant over its base on the",
             "same sets; recovered: (SR − biased) / (IID − biased) of the base model's bias drop.", "",
             "| dataset | method | Micro-F1 | Macro-F1 | IID Micro-F1 | wins vs base | recovered | published |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in args.datasets.split(","):
        out = args.results / f"{name}_published"
        flags = ["--dataset", name, "--splits", "published", "--splits-path",
                 str(args.seeds_dir / f"localized_seeds_{name}.p"), "--methods", args.methods,
                 "--repeats", str(args.repeats), "--out", str(out)]
        result = pubmed_bias.main(flags + (["--resume"] if (out / "results.jsonl").exists() else []))
        for row in pubmed_bias.table_rows(result)[1:]:
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    # One section per datasets and methods, so a narrower run does not overwrite a wider one.
    write_section(args.doc, f"published {args.datasets} {args.methods}", "\n".join(lines),
                  "# Reproduction on the published localized sets\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
