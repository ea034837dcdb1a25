"""The PubMed bias study, end to end: biased sets, every method with and without shift-robust
training, the IID reference, a table, plots and saved results.

    python -m benchmarks.pubmed_bias                      # the paper's PubMed study
    python -m benchmarks.pubmed_bias --repeats 10 --methods gcn,sr-gcn --out results/quick
    python -m benchmarks.pubmed_bias --iid-repeats 20 --out results/lean   # IID reference on 20 sets
    python -m benchmarks.pubmed_bias --resume --out results/pubmed_bias   # after an interruption

Runs are spread over --workers processes (default: min(4, CPU cores); min(8, CPU cores) on
CUDA), each taking the next chunk of runs as it frees up, with --threads torch threads
(default: the cores split evenly); on two cores two one-thread workers outrun one two-thread
process, since a run's small sparse products use a second thread poorly. MLP and SR-MLP train
20 sets at a time as one replica-batched job (--batch; every batchable method on CUDA), and
the APPNP runs of one set index (APPNP on the biased and the IID set, SR-APPNP), which share
a seed and so their dropout masks, train in lockstep as one job. Scores do not depend on the
number of workers, nor, up to float rounding, on batching.

Files in --out: config.json, results.jsonl (one line per finished run, written as it
finishes), results.json (config, package versions and per-method results), results.csv,
f1_vs_cmd.png and methods.png (with the `plot` extra), and dgi_embeddings.pt (DGI's pretrained
embeddings, shared by the workers and by a resumed run).

results.json format: {"config": {...}, "methods": {name: {"micro_f1_mean", "micro_f1_std",
"macro_f1_mean", "macro_f1_std", "n_runs", "micro_f1": [per-set scores in split order],
"macro_f1": [...], "iid_micro_f1_mean", "wins_vs_base", "recovered", "published"}},
"f1_vs_cmd_pearson_r": r, "f1_vs_cmd_n": n}. Scores, "published" among them, are fractions in
[0, 1]; "recovered" is (SR - biased) / (IID - biased) of the base model's bias drop; r is
null with fewer than MIN_SETS_FOR_R (10) GCN runs, too few for a meaningful correlation.
results.csv holds the same per-method figures as plain numbers (fractions; empty where there
is none), one row per method. A resumed study with fewer --methods still summarises every
method in results.jsonl.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import queue
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.study import (LOCKSTEP, METHODS, PUBLISHED, RunLog, base_of, batchable, is_plugin, keep_freed_memory,
                              load_plugin, pretrain_dgi, run_lockstep, run_many, run_one, train_plain_pyg_gcn)
from srgnn.data import CacheNotWritableError, ChecksumError, DataNotFoundError, ensure_writable_dir, load_dataset
from srgnn.graph import Graph
from srgnn.sampling import LocalizedSampler, default_pool, default_teleport, iid_sample, load_published_splits
from srgnn.shift import cmd
from srgnn.trainer import resolve_device

DEFAULT_METHODS = ",".join(METHODS)
RESULT_KEYS = ("dataset", "splits", "teleport", "regularizer", "lam", "lam_linear", "epochs", "seed", "repeats",
               "iid_repeats")
DATASETS = ("pubmed", "cora", "citeseer")
#: Fewest GCN runs for which the F1-vs-CMD Pearson r is reported.
MIN_SETS_FOR_R = 10
#: The largest --seed: run seeds are seed * 100_003 + index, which must fit torch's 64-bit seeds.
MAX_SEED = 2 ** 32 - 1
#: Columns of results.csv, each a plain number (or empty).
CSV_COLUMNS = ("micro_f1_mean", "micro_f1_std", "macro_f1_mean", "macro_f1_std", "n_runs", "iid_micro_f1_mean",
               "wins_vs_base", "recovered", "published")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pubmed_bias", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated, from {', '.join(METHODS)} (default: all), or your own model "
                             "as package.module:factory, factory(data) -> NodeClassifier (sr-package.module:factory "
                             "for its shift-robust variant)")
    parser.add_argument("--repeats", type=int, default=100, help="biased sets, one run each (default 100)")
    parser.add_argument("--iid-repeats", type=int, default=None, metavar="K",
                        help="IID sets each base model trains on for the IID reference, the first K (default: "
                             "--repeats). The reference enters the table as a mean, so fewer sets cost less; the "
                             "paired comparisons use the biased sets. 0 skips it")
    parser.add_argument("--splits", choices=("generated", "published"), default="generated",
                        help="LocalizedSampler sets, or the authors' published sets (--splits-path)")
    parser.add_argument("--splits-path", type=Path, help="localized_seeds_<dataset>.p for --splits published")
    teleports = ", ".join(f"{name} {default_teleport(name)}" for name in DATASETS)
    parser.add_argument("--teleport", type=float, default=None,
                        help="PPR teleport of the LocalizedSampler sets (--splits generated). Default: the "
                             f"dataset's, from datasets/registry.json ({teleports}), the teleport the authors' "
                             "published sets were drawn with; config.json records the one used")
    parser.add_argument("--regularizer", default="cmd",
                        help="the SR variants' shift penalty: cmd (default), mmd, or your own as "
                             "package.module:function, function(h_train, h_iid) -> scalar")
    parser.add_argument("--lam", type=float, default=1.0, help="weight of the shift regularizer (>= 0)")
    parser.add_argument("--lam-linear", type=float, default=0.1,
                        help="regularizer weight for the linear models' SR variants, which also use KMM (>= 0)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the sets and the runs; on the CPU the same seed gives the same scores, on "
                             "CUDA the same up to float rounding (GPU sums are not ordered; docs/benchmarks.md)")
    parser.add_argument("--out", type=Path, default=Path("results/pubmed_bias"))
    parser.add_argument("--dataset", choices=DATASETS, default="pubmed")
    parser.add_argument("--resume", action="store_true", help="continue the study in --out, skipping finished runs")
    parser.add_argument("--batch", type=int, default=None, metavar="R",
                        help="train up to R sets of a method as one replica-batched job (GCN, GraphSAGE, MLP and "
                             "their SR variants; each run equals its sequential run). Default 20 on CUDA; on the "
                             "CPU 20 for MLP and SR-MLP, 1 for the others, whose runs are compute-bound there")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help="worker processes, each taking the next runs as it frees up, with --threads threads "
                             "(default: min(4, CPU cores) on the CPU, min(8, CPU cores) on CUDA). A run's scores "
                             "do not depend on W, but they can change with --threads in the last float bits")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch threads per worker (default: the cores split evenly among the workers)")
    parser.add_argument("--compare-sequential", type=int, default=0, metavar="N",
                        help="also time GCN on N sets batched, sequential and as a plain PyG training loop, "
                             "and print the speed ratios")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS and not is_plugin(m)]
    if unknown or not methods:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}, or name your own "
                     "as package.module:factory")
    for spec in [base_of(m) or m for m in methods if is_plugin(m)] + [args.regularizer] * is_plugin(args.regularizer):
        try:
            load_plugin(spec)
        except ValueError as err:
            parser.error(str(err))
    if not is_plugin(args.regularizer) and args.regularizer not in ("cmd", "mmd"):
        parser.error(f"--regularizer {args.regularizer!r}: choose cmd, mmd or package.module:function")
    args.methods = methods
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    args.iid_repeats = args.repeats if args.iid_repeats is None else args.iid_repeats
    if not 0 <= args.iid_repeats <= args.repeats:
        parser.error(f"--iid-repeats must be between 0 and --repeats ({args.repeats}); got {args.iid_repeats}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be between 0 and {MAX_SEED}; got {args.seed}")
    if not 0 <= args.compare_sequential <= args.repeats:
        parser.error(f"--compare-sequential must be between 0 and --repeats ({args.repeats}); "
                     f"got {args.compare_sequential}")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be >= 1; got {args.batch}")
    cores = os.cpu_count() or 1
    if args.workers is None:
        # On CUDA a run is mostly Python and kernel launches, not GPU time, so processes sharing
        # the GPU add up: one process would take about 25 minutes of the default study on an H100
        # (docs/benchmarks.md).
        args.workers = min(4, cores) if args.device == "cpu" else min(8, cores)
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--workers and --threads must be >= 1; got {args.workers}, {args.threads}")
    if args.threads is None:
        args.threads = max(1, min(cores, torch.get_num_threads()) // args.workers)
    if not (math.isfinite(args.lam) and math.isfinite(args.lam_linear)) or args.lam < 0 or args.lam_linear < 0:
        parser.error(f"--lam and --lam-linear must be finite numbers >= 0; got {args.lam}, {args.lam_linear}")
    if args.splits == "published":
        if args.splits_path is None or not args.splits_path.is_file():
            parser.error(f"--splits published needs an existing --splits-path; got {args.splits_path}")
        if args.teleport is not None:
            parser.error("--teleport sets the sampler of --splits generated; published sets come from their file")
    elif args.splits_path is not None:
        parser.error("--splits-path is read only with --splits published; add --splits published or drop it")
    elif args.teleport is None:
        args.teleport = default_teleport(args.dataset)
    elif not 0.0 < args.teleport < 1.0:
        parser.error(f"--teleport must lie in (0, 1); got {args.teleport}")
    try:
        if resolve_device(args.device).type not in ("cpu", "cuda"):
            raise ValueError("the study runs on the CPU or CUDA")
    except ValueError as err:
        parser.error(f"--device {args.device}: {err}; use cpu, cuda or cuda:N")
    try:
        ensure_writable_dir(args.out)
    except OSError as err:
        parser.error(f"--out {args.out} is not writable ({err.strerror}); choose another directory")
    config_path = args.out / "config.json"
    if (args.out / "results.jsonl").exists() and not args.resume:
        parser.error(f"{args.out} already holds results; pass --resume to continue them or choose another --out")
    if args.resume and config_path.exists():
        try:
            saved = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            parser.error(f"--resume: {config_path} is not valid JSON ({err}); restore it, or start a fresh study "
                         "in another --out")
        if not isinstance(saved, dict):
            parser.error(f"--resume: {config_path} does not hold a study's settings; use another --out")
        saved.setdefault("iid_repeats", saved.get("repeats"))  # studies saved before the flag
        # Studies saved before --teleport sampled every graph at 0.01.
        saved.setdefault("teleport", 0.01 if saved.get("splits") == "generated" else None)
        changed = [k for k in RESULT_KEYS if saved.get(k) != _config(args).get(k)]
        if changed:
            parser.error(f"--resume with different {changed} than the saved study; use another --out")
    return args


def _config(args) -> dict:
    return {"dataset": args.dataset, "splits": args.splits, "splits_path": str(args.splits_path or ""),
            "teleport": args.teleport,
            "regularizer": args.regularizer, "lam": args.lam, "lam_linear": args.lam_linear, "epochs": args.epochs, "seed": args.seed,
            "repeats": args.repeats, "iid_repeats": args.iid_repeats, "methods": args.methods, "device": args.device}


def training_sets(args, data) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The biased sets and IID sets of the same size drawn from the same candidate pool."""
    if args.splits == "published":
        biased = load_published_splits(args.splits_path, data=data)
        if len(biased) < args.repeats:
            raise SystemExit(f"{args.splits_path} holds {len(biased)} sets; use --repeats {len(biased)} or fewer")
        biased = biased[: args.repeats]
    else:
        biased = LocalizedSampler(data, teleport=args.teleport).sample_many(args.repeats, seed=args.seed)
    pool = default_pool(data)
    iid = [iid_sample(data, s.numel(), seed=args.seed * 100_003 + i, candidates=pool) for i, s in enumerate(biased)]
    return biased, iid


def summarized_methods(log: RunLog, args) -> list[str]:
    """``--methods``, then every other method with runs in the log (a resumed study with fewer
    --methods keeps them in its summary), in ``METHODS`` order."""
    logged = {record["method"] for record in log.records.values()}
    return args.methods + [m for m in METHODS if m in logged and m not in args.methods]


def summarize(log: RunLog, args, data, biased) -> dict:
    methods = {}
    summarized = summarized_methods(log, args)
    for method in summarized:
        micro = log.scores(method=method, split="biased")
        macro = log.scores("macro_f1", method=method, split="biased")
        entry = {"micro_f1_mean": micro.mean() / 100, "micro_f1_std": micro.std() / 100,
                 "macro_f1_mean": macro.mean() / 100, "macro_f1_std": macro.std() / 100,
                 "n_runs": int(micro.size), "micro_f1": list(micro / 100), "macro_f1": list(macro / 100),
                 "published": None}
        if method in PUBLISHED.get(args.dataset, {}):
            entry["published"] = round(PUBLISHED[args.dataset][method] / 100, 6)
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
        methods[method] = entry
    result = {"methods": methods}
    if "gcn" in summarized:
        shift = [log.records[("gcn", "biased", i)]["cmd_train_test"] for i in range(len(biased))
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


def plot(result: dict, log: RunLog, args) -> None:
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
        ax.set_title(f"{args.dataset}: " + (f"n = {n}, too few sets for r" if r is None else f"r = {r:.2f}, n = {n}"))
        fig.tight_layout()
        fig.savefig(args.out / "f1_vs_cmd.png", dpi=120)
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
    ax.set_title(f"{args.dataset}: {args.repeats} biased sets\nerror bars: one standard deviation over the sets")
    # Below the axes, so that no bar is hidden behind it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3 if len(bases) > 3 else 1, frameon=False)
    fig.tight_layout()
    fig.savefig(args.out / "methods.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


#: Methods batched by default on the CPU. PubMed, 20 sets, one thread, batched against one
#: run at a time: MLP 5.3x, SR-MLP 2.3x (an MLP reads only its labelled and IID rows, so a run is
#: mostly per-call overhead); GCN and SR-GCN 1.0-1.1x, GraphSAGE and SR-GraphSAGE 0.9x.
CPU_BATCHED = ("mlp", "sr-mlp")


def batch_size(args, method: str, data) -> int:
    """Sets per job for ``method``: ``--batch``, else 20 on CUDA and for ``CPU_BATCHED``
    methods on the CPU; 1 for a method ``ReplicaTrainer`` does not train."""
    size = args.batch if args.batch is not None else 20 if args.device != "cpu" or method in CPU_BATCHED else 1
    return size if size > 1 and batchable(method, data) else 1


def run_chunk(graph: Graph, runs: list[tuple[str, str, int]], mode: str, sets: dict, seed: int,
              options: dict) -> list[dict]:
    """Train the ``runs`` ((method, split, index into ``sets[split]``) each) on ``graph`` (one
    ``Graph.from_data`` per process, shared by its runs) and return one
    ``results.jsonl`` record per run. ``mode``: ``"one"`` (a single run), ``"replicas"`` (one
    method and split on several sets as one replica-batched job, even a last chunk of one, so
    that a set's result does not depend on where the chunks fall) or ``"lockstep"`` (APPNP
    variants of one index, which share a seed, as one ``LockstepTrainer`` job)."""
    train_sets = [sets[split][i] for _, split, i in runs]
    seeds = [seed * 100_003 + i for _, _, i in runs]
    start = time.perf_counter()
    if mode == "replicas":
        scores = run_many(runs[0][0], graph, train_sets, seeds, **options)
    elif mode == "lockstep":
        scores = run_lockstep([method for method, _, _ in runs], graph, train_sets, seeds[0], **options)
    else:
        scores = [run_one(runs[0][0], graph, train_sets[0], seeds[0], **options)]
    data = graph.data
    seconds = (time.perf_counter() - start) / len(runs)
    test_x = data.x[data.test_mask]  # the standard 1,000 test nodes, the same for every set
    return [{"method": method, "split": split, "index": i, **score,
             "cmd_train_test": cmd(data.x[train], test_x).item(), "seconds": seconds}
            for (method, split, i), train, score in zip(runs, train_sets, scores)]


def make_chunks(args, data, jobs: list[tuple[str, str, int]]) -> list[tuple[list, str]]:
    """Group the pending ``jobs`` into chunks for ``run_chunk``: the ``LOCKSTEP`` runs of each
    index together, then each method and split in chunks of ``batch_size`` sets."""
    pending = set(jobs)
    chunks = []
    for i in range(args.repeats):
        runs = [(method, split, i) for method, split in LOCKSTEP if (method, split, i) in pending]
        if len(runs) > 1:
            chunks.append((runs, "lockstep"))
            pending -= set(runs)
    by_method: dict[tuple[str, str], list[int]] = {}
    for method, split, i in jobs:
        if (method, split, i) in pending:
            by_method.setdefault((method, split), []).append(i)
    for (method, split), indices in by_method.items():
        size = batch_size(args, method, data)
        chunks += [([(method, split, i) for i in indices[first:first + size]], "replicas" if size > 1 else "one")
                   for first in range(0, len(indices), size)]
    return chunks


#: The task that pretrains DGI into ``--out/dgi_embeddings.pt`` for every later DGI run.
PRETRAIN_DGI = ("pretrain-dgi",)


def _worker(dataset: str, threads: int, tasks: multiprocessing.Queue, sets: dict, seed: int, options: dict,
            results: multiprocessing.Queue, parent: int) -> None:
    """One worker process: take chunks from ``tasks`` until a ``None`` and send each chunk's records."""
    try:
        torch.set_num_threads(threads)
        keep_freed_memory()
        data = load_dataset(dataset)
        graph = Graph.from_data(data)
        for task in iter(tasks.get, None):
            if os.getppid() != parent:  # the study was killed: stop instead of training for nobody
                results.cancel_join_thread()
                return
            if task == PRETRAIN_DGI:
                pretrain_dgi(data, options["dgi_embeddings"], options["device"])
                continue
            results.put(("runs", run_chunk(graph, *task, sets, seed, options)))
        results.put(("done", None))
    except BaseException:  # noqa: BLE001 - any failure is reported to the parent, which stops the study
        results.put(("error", traceback.format_exc()))


def run_chunks(args, data, chunks: list, sets: dict, options: dict):
    """Yield each finished chunk's records: in this process for one worker, else from
    ``args.workers`` processes, each taking the next chunk from a shared queue as it frees up,
    so none idles while another has work left."""
    if args.workers == 1:
        torch.set_num_threads(args.threads)
        keep_freed_memory()
        graph = Graph.from_data(data)
        for runs, mode in chunks:
            yield run_chunk(graph, runs, mode, sets, args.seed, options)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch's thread pool exists
    results, tasks = context.Queue(), context.Queue()
    # DGI and SR-DGI go last, and the first worker free pretrains DGI before anything else and
    # writes --out/dgi_embeddings.pt, which every DGI run then loads while the other workers
    # train the other methods: one pretraining per study instead of one per worker (on
    # PubMed, about 65 s of a core).
    uses_dgi = [(base_of(runs[0][0]) or runs[0][0]) == "dgi" for runs, _ in chunks]
    ordered = [c for c, dgi in zip(chunks, uses_dgi) if not dgi] + [c for c, dgi in zip(chunks, uses_dgi) if dgi]
    count = min(args.workers, len(chunks))
    for task in ([PRETRAIN_DGI] if any(uses_dgi) else []) + ordered + [None] * count:
        tasks.put(task)
    workers = [context.Process(target=_worker, daemon=True,
                               args=(args.dataset, args.threads, tasks, sets, args.seed, options, results, os.getpid()))
               for _ in range(count)]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=5)
            except queue.Empty:
                dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if dead:
                    raise SystemExit(f"a worker process died (exit code {dead[0]}); finished runs are saved, "
                                     "rerun with --resume") from None
                continue
            if kind == "error":
                raise SystemExit(f"a worker failed; finished runs are saved, rerun with --resume:\n{payload}")
            if kind == "done":
                running -= 1
            else:
                yield payload
    finally:
        for worker in workers:
            worker.terminate()


def compare_sequential(data, sets, epochs: int) -> None:
    """Time GCN on the same sets three ways: srgnn replica-batched, srgnn one run at a time, and
    a plain PyG loop (two GCNConv, dense x, Adam)."""
    seeds, graph = list(range(len(sets))), Graph.from_data(data)
    ways = {"srgnn batched": lambda: run_many("gcn", graph, sets, seeds, epochs=epochs),
            "srgnn sequential": lambda: [run_one("gcn", graph, t, s, epochs=epochs) for t, s in zip(sets, seeds)],
            "plain PyG loop": lambda: [train_plain_pyg_gcn(data, t, epochs) for t in sets]}
    timings = {}
    for label, fn in ways.items():
        start = time.perf_counter()
        fn()
        timings[label] = (time.perf_counter() - start) / len(sets)
    plain = timings["plain PyG loop"]
    print(f"GCN, {len(sets)} sets, {epochs} epochs: " + ", ".join(f"{k} {v:.2f} s/run" for k, v in timings.items()))
    print(f"speed-up over the plain PyG loop: batched {plain / timings['srgnn batched']:.1f}x, "
          f"sequential {plain / timings['srgnn sequential']:.1f}x")


#: What a user can fix, reported in one line (exit status 2) instead of a traceback.
USER_ERRORS = (DataNotFoundError, ChecksumError, CacheNotWritableError, ValueError, IndexError)


def fail(message: str, status: int = 2) -> None:
    """Report an expected failure in one line on stderr and exit with ``status``."""
    print(f"python -m benchmarks.pubmed_bias: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    try:  # the data and the sets come from the user's files: their errors are theirs to fix
        data = load_dataset(args.dataset)
        biased, iid = training_sets(args, data)
    except USER_ERRORS as err:
        fail(str(err))
    config = _config(args)
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    log = RunLog(args.out / "results.jsonl", ("method", "split", "index"))
    jobs = [(m, split, i) for m in args.methods for split in ("biased", "iid")
            if split == "biased" or not m.startswith(("sr-", "dann"))
            for i in range(args.repeats if split == "biased" else args.iid_repeats) if (m, split, i) not in log]
    sampled = f" at teleport {args.teleport}" if args.splits == "generated" else ""
    print(f"{args.dataset}: {len(args.methods)} methods x {args.repeats} {args.splits} sets{sampled} "
          f"({len(biased[0])} labelled nodes each) + IID reference on {args.iid_repeats}; {len(jobs)} runs to do, "
          f"{len(log.records)} already in {args.out / 'results.jsonl'}; "
          f"{args.workers} worker(s) x {args.threads} thread(s)")
    remaining: dict[tuple[str, str], int] = {}
    for method, split, _ in jobs:
        remaining[method, split] = remaining.get((method, split), 0) + 1
    chunks = make_chunks(args, data, jobs)
    progress = tqdm(total=len(jobs), unit="run", file=sys.stderr, dynamic_ncols=True)
    options = {"regularizer": args.regularizer, "lam": args.lam, "lam_linear": args.lam_linear,
               "epochs": args.epochs, "device": args.device, "dgi_embeddings": args.out / "dgi_embeddings.pt"}
    try:
        train_chunks(args, data, chunks, {"biased": biased, "iid": iid}, options, log, remaining, progress)
    except KeyboardInterrupt:
        progress.close()
        fail(f"interrupted; the {len(log.records)} finished runs are saved in {args.out / 'results.jsonl'}. "
             "Rerun the same command with --resume to continue.", status=130)
    progress.close()
    result = {"config": {**config, "versions": {p: version(p) for p in ("srgnn", "torch", "torch-geometric", "scipy")}},
              **summarize(log, args, data, biased)}
    extra = [m for m in result["methods"] if m not in args.methods]
    if extra:
        print(f"The summary also covers {', '.join(extra)}, from earlier runs in {args.out / 'results.jsonl'}.")
    rows = table_rows(result)
    print_table(rows, result)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    write_csv(args.out / "results.csv", result)
    plot(result, log, args)
    print(f"Done in {time.perf_counter() - start:.0f} s; results in {args.out}")
    if args.compare_sequential:
        compare_sequential(data, biased[: args.compare_sequential], args.epochs)
    return result


def train_chunks(args, data, chunks: list, sets: dict, options: dict, log: RunLog, remaining: dict,
                 progress: tqdm) -> None:
    """Train the ``chunks``, saving each run to ``log`` as it finishes."""
    for records in run_chunks(args, data, chunks, sets, options):
        for record in records:
            log.add(record)
            method, split = record["method"], record["split"]
            progress.set_description(f"{method} {split}")
            progress.update()
            remaining[method, split] -= 1
            if not remaining[method, split]:
                done = log.scores(method=method, split=split)
                progress.write(f"{method:9s} {split:6s} Micro-F1 {done.mean():.1f} ± {done.std():.1f} "
                               f"over {done.size} sets")


if __name__ == "__main__":
    main()
