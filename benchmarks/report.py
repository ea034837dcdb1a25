"""The bias study's report: its per-method summary (``results.json``), the table it prints,
``results.csv`` and the plots, all from the results log."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.runlog import RunLog
from benchmarks.study import METHODS, PUBLISHED, base_of

#: Fewest GCN runs for which the F1-vs-CMD Pearson r is reported.
MIN_SETS_FOR_R = 10
#: Columns of results.csv, each a plain number (or empty).
CSV_COLUMNS = ("micro_f1_mean", "micro_f1_std", "macro_f1_mean", "macro_f1_std", "n_runs", "iid_micro_f1_mean",
               "wins_vs_base", "recovered", "published")


def markdown_table(rows: list[list[str]]) -> str:
    """``rows`` (a header row first) as a Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def paired_difference(diff: np.ndarray) -> str:
    """Per-set differences ``[n]`` as "mean ± standard error", signed, one decimal."""
    return f"{diff.mean():+.1f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.1f}"


def summarized_methods(log: RunLog, methods: list[str]) -> list[str]:
    """``methods``, then every other method with runs in the log (a resumed study with fewer
    --methods keeps them in its summary), in ``METHODS`` order."""
    logged = {record["method"] for record in log.records.values()}
    return methods + [m for m in METHODS if m in logged and m not in methods]


def summarize(log: RunLog, methods: list[str], dataset: str, sets: int) -> dict:
    """Each method's scores over the ``sets`` biased sets of ``dataset`` in ``log`` (``methods``
    and any other logged), its IID reference, paired wins and share of the bias drop recovered,
    and GCN's Micro-F1 against the CMD between its training and test nodes."""
    summary = {}
    summarized = summarized_methods(log, methods)
    for method in summarized:
        micro = log.scores(method=method, split="biased")
        macro = log.scores("macro_f1", method=method, split="biased")
        entry = {"micro_f1_mean": micro.mean() / 100, "micro_f1_std": micro.std() / 100,
                 "macro_f1_mean": macro.mean() / 100, "macro_f1_std": macro.std() / 100,
                 "n_runs": int(micro.size), "micro_f1": list(micro / 100), "macro_f1": list(macro / 100),
                 "published": None}
        if method in PUBLISHED.get(dataset, {}):
            entry["published"] = round(PUBLISHED[dataset][method] / 100, 6)
        iid = log.scores(method=method, split="iid")
        entry["iid_micro_f1_mean"] = iid.mean() / 100 if iid.size else None
        base = base_of(method)
        if base in summarized:
            base_micro = log.scores(method=base, split="biased")
            base_iid = log.scores(method=base, split="iid")
            n = min(micro.size, base_micro.size)
            entry["wins_vs_base"] = int((micro[:n] > base_micro[:n]).sum())
            gap = base_iid.mean() - base_micro.mean() if base_iid.size else 0.0
            entry["recovered"] = float((micro.mean() - base_micro.mean()) / gap) if gap > 0 else None
        summary[method] = entry
    result = {"methods": summary}
    if "gcn" in summarized:
        shift = [log.records[("gcn", "biased", i)]["cmd_train_test"] for i in range(sets)
                 if ("gcn", "biased", i) in log]
        f1 = log.scores(method="gcn", split="biased")
        result["f1_vs_cmd_n"] = len(shift)
        result["f1_vs_cmd_pearson_r"] = (float(np.corrcoef(shift, f1)[0, 1]) if len(shift) >= MIN_SETS_FOR_R
                                         else None)
    return result


def table_rows(result: dict) -> list[list[str]]:
    """The results table as rows of strings, header first."""
    header = ["method", "Micro-F1", "Macro-F1", "IID Micro-F1", "wins vs base", "recovered", "published"]
    rows = []
    for method, e in result["methods"].items():
        rows.append([
            method,
            f"{100 * e['micro_f1_mean']:.1f} ± {100 * e['micro_f1_std']:.1f}",
            f"{100 * e['macro_f1_mean']:.1f} ± {100 * e['macro_f1_std']:.1f}",
            "" if e["iid_micro_f1_mean"] is None else f"{100 * e['iid_micro_f1_mean']:.1f}",
            "" if "wins_vs_base" not in e else f"{e['wins_vs_base']}/{e['n_runs']}",
            "" if e.get("recovered") is None else f"{e['recovered']:.0%}",
            "" if e["published"] is None else f"{100 * e['published']:.1f}",
        ])
    return [header, *rows]


def print_table(rows: list[list[str]], result: dict) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f1_vs_cmd_line(result))


def f1_vs_cmd_line(result: dict) -> str:
    """The GCN F1-vs-CMD correlation with its n, or why it is not given."""
    n = result.get("f1_vs_cmd_n")
    if n is None:
        return "GCN Micro-F1 vs CMD(train, test): no GCN runs"
    if result["f1_vs_cmd_pearson_r"] is None:
        return (f"GCN Micro-F1 vs CMD(train, test): r not given, n = {n} sets (fewer than {MIN_SETS_FOR_R} "
                "make a Pearson r meaningless)")
    return (f"GCN Micro-F1 vs CMD(train, test) over the biased sets: Pearson r = "
            f"{result['f1_vs_cmd_pearson_r']:.2f} (n = {n})")


def write_csv(path: Path, result: dict) -> None:
    """results.csv: a row per method of plain numbers (fractions), empty where there is none."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *CSV_COLUMNS])
        for method, e in result["methods"].items():
            writer.writerow([method, *("" if e.get(c) is None else e[c] for c in CSV_COLUMNS)])


def plot(result: dict, log: RunLog, dataset: str, repeats: int, out: Path) -> None:
    """``f1_vs_cmd.png`` (GCN's runs) and ``methods.png`` (each method against its base) in ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping plots (pip install -e '.[plot]').")
        return
    if "gcn" in result["methods"]:
        runs = sorted((r for r in log.records.values() if r["method"] == "gcn" and r["split"] == "biased"),
                      key=lambda r: r["index"])
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter([r["cmd_train_test"] for r in runs], [100 * r["micro_f1"] for r in runs], s=14)
        ax.set_xlabel("CMD(training set, test nodes), raw features")
        ax.set_ylabel("GCN test Micro-F1 (%)")
        r, n = result.get("f1_vs_cmd_pearson_r"), result.get("f1_vs_cmd_n")
        ax.set_title(f"{dataset}: " + (f"n = {n}, too few sets for r" if r is None else f"r = {r:.2f}, n = {n}"))
        fig.tight_layout()
        fig.savefig(out / "f1_vs_cmd.png", dpi=120)
        plt.close(fig)
    bases = [m for m in result["methods"] if not m.startswith("sr-")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(bases) + 2), 4.6))
    x = np.arange(len(bases))
    for offset, prefix, label in ((-0.2, "", "base"), (0.2, "sr-", "shift-robust")):
        names = [prefix + b if b != "dann" or not prefix else None for b in bases]
        if not any(n in result["methods"] for n in names):
            continue  # no bars of this kind, and no empty legend entry (matplotlib 3.7.0 fails on all-NaN yerr)
        means = [100 * result["methods"][n]["micro_f1_mean"] if n in result["methods"] else np.nan for n in names]
        stds = [100 * result["methods"][n]["micro_f1_std"] if n in result["methods"] else np.nan for n in names]
        ax.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=label)
    iid = [100 * result["methods"][b]["iid_micro_f1_mean"] if result["methods"][b]["iid_micro_f1_mean"] is not None
           else np.nan for b in bases]
    if not np.isnan(iid).all():
        ax.hlines(iid, x - 0.4, x + 0.4, colors="black", linestyles="dashed", label="base on IID sets (mean)")
    ax.set_xticks(x, bases)
    ax.set_ylabel("Micro-F1 (%), mean ± std over sets")
    ax.set_title(f"{dataset}: {repeats} biased sets\nerror bars: one standard deviation over the sets")
    # Below the axes, so that no bar is hidden behind it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3 if len(bases) > 3 else 1, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "methods.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
