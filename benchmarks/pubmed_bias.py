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
import json
import math
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.jobs import WorkerLostError
from benchmarks.report import plot, print_table, summarize, table_rows, write_csv
from benchmarks.runlog import RunLog, StudyLockedError
from benchmarks.scheduler import make_chunks, run_chunks
from benchmarks.skeleton import add_backend_options, check_backend
from benchmarks.study import (METHODS, STATED, base_of, build, has_iid_reference, is_plugin, load_plugin,
                              load_source, run_many, run_one, train_plain_pyg_gcn)
from srgnn import cli
from srgnn.cli import OneLineParser, output_dir
from srgnn.data import (OGB_DATASETS, CacheNotWritableError, ChecksumError, DataNotFoundError, dataset_names,
                        ensure_writable_dir)
from srgnn.graph import Graph
from srgnn.robustness.robust import IID_SAMPLES
from srgnn.sampling import (LocalizedSampler, PropertySampler, default_pool, default_teleport, iid_sample,
                            load_published_splits)
from srgnn.sampling.property import PROPERTIES
from srgnn.training.trainer import resolve_device

DEFAULT_METHODS = ",".join(METHODS)
RESULT_KEYS = ("dataset", "splits", "teleport", "regularizer", "iid", "lam", "lam_linear", "epochs", "seed", "repeats",
               "iid_repeats")
#: Every registered graph the study runs on (ogbn-arxiv has its own protocol, benchmarks.arxiv_bias).
DATASETS = tuple(name for name in dataset_names() if name not in OGB_DATASETS)
#: The largest --seed: run seeds are seed * 100_003 + index, which must fit torch's 64-bit seeds.
MAX_SEED = 2 ** 32 - 1


def study_parser() -> OneLineParser:
    """The study's command line."""
    parser = OneLineParser(prog="python -m benchmarks.pubmed_bias", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated, from {', '.join(METHODS)} (default: all; with --splits published all but "
                             "the with- and mix- ones, which read a uniform sample), or your own model "
                             "as package.module:factory, factory(data) -> NodeClassifier (sr-package.module:factory "
                             "for its shift-robust variant)")
    parser.add_argument("--repeats", type=int, default=100, help="biased sets, one run each (default 100)")
    parser.add_argument("--iid-repeats", type=int, default=None, metavar="K",
                        help="IID sets each base model trains on for the IID reference, the first K (default: "
                             "--repeats). The reference enters the table as a mean, so fewer sets cost less; the "
                             "paired comparisons use the biased sets. 0 skips it")
    parser.add_argument("--splits", choices=("generated", "published", *PROPERTIES), default="generated",
                        help="LocalizedSampler sets, the authors' published sets (--splits-path), or sets biased "
                             "by a structural property: 20 nodes per class from the top quarter of the nodes by "
                             "popularity, locality or density (PropertySampler, PyG's NodePropertySplit)")
    parser.add_argument("--splits-path", type=Path, help="localized_seeds_<dataset>.p for --splits published")
    teleports = ", ".join(f"{name} {default_teleport(name)}" for name in ("cora", "citeseer", "pubmed"))
    parser.add_argument("--teleport", type=float, default=None,
                        help="PPR teleport of the LocalizedSampler sets (--splits generated). Default: the "
                             f"dataset's, from datasets/registry.json ({teleports}), the teleport the authors' "
                             "published sets were drawn with; 0.1 for other graphs; config.json records the one used")
    parser.add_argument("--regularizer", default="cmd",
                        help="the SR variants' shift penalty: cmd (default), mmd, or your own as "
                             "package.module:name, a function(h_train, h_iid) -> scalar or an nn.Module class "
                             "whose instances are such functions with parameters (each model trains its own)")
    parser.add_argument("--lam", type=float, default=1.0, help="weight of the shift regularizer (>= 0)")
    parser.add_argument("--lam-linear", type=float, default=0.1,
                        help="regularizer weight for the linear models' SR variants, which also use KMM (>= 0)")
    parser.add_argument("--iid", choices=IID_SAMPLES, default="uniform",
                        help="the SR variants' IID sample: uniform over the unlabelled nodes, reading no label "
                             "(default), or label-balanced, the SR-GNN paper's protocol, which READS THE LABELS OF "
                             "UNLABELLED NODES (n_train / C per class from the candidate pool): only to reproduce "
                             "the paper's figures")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the sets and the runs; on the CPU the same seed gives the same scores, on "
                             "CUDA the same up to float rounding (GPU sums are not ordered; docs/benchmarks.md)")
    parser.add_argument("--out", type=output_dir, default=Path("results/pubmed_bias"))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=DATASETS, default="pubmed",
                        help="a registered graph (default pubmed); test nodes: the Planetoid test nodes on CiteSeer "
                             "and PubMed, every non-training node on Cora, and on any other graph every node outside "
                             "the training set and 500 uniformly drawn validation nodes")
    source.add_argument("--graph", type=Path, metavar="FILE",
                        help="your own graph: a torch.save'd PyG Data with x, edge_index and y (loaded without "
                             "unpickling anything but tensors and Data), tested as an unregistered graph")
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
    add_backend_options(parser)
    parser.add_argument("--compare-sequential", type=int, default=0, metavar="N",
                        help="also time GCN on N sets batched, sequential and as a plain PyG training loop, "
                             "and print the speed ratios")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line's flags, checked (``check_args``)."""
    parser = study_parser()
    return check_args(parser, parser.parse_args(argv))


def check_args(parser: OneLineParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse what the study cannot run, in one line naming the flag, and fill in the defaults
    that depend on others (methods as a list, workers, threads, teleport, the source)."""
    if args.graph is not None:
        if not args.graph.is_file():
            parser.error(f"--graph {args.graph} does not exist or is not a file")
        if args.splits == "published":
            parser.error("--splits published reads the authors' sets of a registered --dataset, not of --graph")
        args.dataset = str(args.graph)  # names the study; no registered graph's defaults apply
    args.source = ("graph", str(args.graph)) if args.graph is not None else ("dataset", args.dataset)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.methods == DEFAULT_METHODS and args.splits == "published":
        methods = [m for m in methods if not m.startswith(STATED)]  # refused below when named
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
        parser.error(f"--regularizer {args.regularizer!r}: choose cmd, mmd or package.module:name")
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
    check_backend(parser, args)
    if not (math.isfinite(args.lam) and math.isfinite(args.lam_linear)) or args.lam < 0 or args.lam_linear < 0:
        parser.error(f"--lam and --lam-linear must be finite numbers >= 0; got {args.lam}, {args.lam_linear}")
    if args.splits == "published":
        stated = [m for m in methods if m.startswith(STATED)]
        if stated:
            parser.error(f"--methods {','.join(stated)} read a sample drawn from the validation nodes, which the "
                         "published sets leave near their seeds, not uniform; use --splits generated")
        if args.splits_path is None or not args.splits_path.is_file():
            parser.error(f"--splits published needs an existing --splits-path; got {args.splits_path}")
        if args.teleport is not None:
            parser.error("--teleport sets the sampler of --splits generated; published sets come from their file")
    elif args.splits_path is not None:
        parser.error("--splits-path is read only with --splits published; add --splits published or drop it")
    elif args.splits in PROPERTIES:
        if args.teleport is not None:
            parser.error(f"--teleport sets the sampler of --splits generated; --splits {args.splits} ranks nodes by "
                         "a property, with no teleport")
    elif args.teleport is None:
        args.teleport = default_teleport(args.dataset)
    elif not 0.0 < args.teleport < 1.0:
        parser.error(f"--teleport must lie in (0, 1); got {args.teleport}")
    try:
        resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device {args.device}: {err}")
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
        saved.setdefault("iid", "uniform")  # studies saved before --iid
        changed = [k for k in RESULT_KEYS if saved.get(k) != _config(args).get(k)]
        if changed:
            parser.error(f"--resume with different {changed} than the saved study; use another --out")
    return args


def _config(args) -> dict:
    return {"dataset": args.dataset, "splits": args.splits, "splits_path": str(args.splits_path or ""),
            "teleport": args.teleport,
            "regularizer": args.regularizer, "iid": args.iid, "lam": args.lam, "lam_linear": args.lam_linear, "epochs": args.epochs, "seed": args.seed,
            "repeats": args.repeats, "iid_repeats": args.iid_repeats, "methods": args.methods, "device": args.device}


def training_sets(args, data) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The biased sets and IID sets of the same size drawn from the same candidate pool."""
    if args.splits == "published":
        biased = load_published_splits(args.splits_path, data=data)
        if len(biased) < args.repeats:
            raise SystemExit(f"{args.splits_path} holds {len(biased)} sets; use --repeats {len(biased)} or fewer")
        biased = biased[: args.repeats]
    elif args.splits in PROPERTIES:
        biased = PropertySampler(data, args.splits).sample_many(args.repeats, seed=args.seed)
    else:
        biased = LocalizedSampler(data, teleport=args.teleport).sample_many(args.repeats, seed=args.seed)
    pool = default_pool(data)
    iid = [iid_with_every_class(data, s.numel(), args.seed * 100_003 + i, pool) for i, s in enumerate(biased)]
    return biased, iid


def iid_with_every_class(data, size: int, seed: int, pool: torch.Tensor, tries: int = 100) -> torch.Tensor:
    """An IID set of ``size`` pool nodes holding every class, as a training set must: the first
    of the draws at ``seed``, ``seed + 1_000_003``, ... that does (on Coauthor CS a uniform
    set of 300 nodes can miss one of its 15 classes)."""
    classes = int(data.num_classes)
    for attempt in range(tries):
        nodes = iid_sample(data, size, seed=seed + attempt * 1_000_003, candidates=pool)
        if torch.unique(data.y.view(-1)[nodes]).numel() == classes:
            return nodes
    raise ValueError(f"{tries} uniform draws of {size} nodes all missed a class; the IID reference needs larger "
                     "sets (raise per_class) or a graph without near-empty classes")


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
USER_ERRORS = (DataNotFoundError, ChecksumError, CacheNotWritableError, StudyLockedError, ValueError, TypeError,
               IndexError)
PROG = "python -m benchmarks.pubmed_bias"


def fail(message: str, status: int = 2) -> None:
    """Report an expected failure in one line on stderr and exit with ``status``."""
    cli.fail(PROG, message, status)


def main(argv=None) -> dict:
    """The study from the command line; returns its summary (``results.json``)."""
    return run(parse_args(argv))


def study(**flags) -> dict:
    """The study from Python: each keyword is a flag of the command line, dashes as underscores,
    with the type its parser gives (``study(dataset="cora", methods="gcn,sr-gcn", repeats=10,
    out=Path("results/cora"), resume=True)``), checked as the command line checks it."""
    parser = study_parser()
    args = parser.parse_args([])
    unknown = sorted(set(flags) - set(vars(args)))
    if unknown:
        raise TypeError(f"study() got no such flag(s) {unknown}; the flags are {sorted(vars(args))}")
    vars(args).update(flags)
    return run(check_args(parser, args))


def run(args: argparse.Namespace) -> dict:
    """Run the study ``args`` (checked) describe; returns its summary."""
    start = time.perf_counter()
    try:  # the data, the sets and the log come from the user's files: their errors are theirs to fix
        log = RunLog(args.out / "results.jsonl", ("method", "split", "index"))  # locks --out first
        data = load_source(args.source)
        biased, iid = training_sets(args, data)
        for method in {base_of(m) or m for m in args.methods if is_plugin(m)}:
            build(method, data)  # a factory that returns no srgnn model is refused before any run
    except USER_ERRORS as err:
        fail(str(err))
    try:
        return _run_study(args, data, biased, iid, log, start)
    finally:
        log.close()


def _run_study(args, data, biased: list, iid: list, log: RunLog, start: float) -> dict:
    config = _config(args)
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    jobs = [(m, split, i) for m in args.methods for split in ("biased", "iid")
            if split == "biased" or has_iid_reference(m)
            for i in range(args.repeats if split == "biased" else args.iid_repeats) if (m, split, i) not in log]
    if args.iid == "label-balanced":
        print("IID sample: label-balanced, the paper's protocol: it READS THE LABELS OF UNLABELLED NODES")
    sampled = f" at teleport {args.teleport}" if args.splits == "generated" else ""
    print(f"{data.name}: {len(args.methods)} methods x {args.repeats} {args.splits} sets{sampled} "
          f"({len(biased[0])} labelled nodes each) + IID reference on {args.iid_repeats}; {len(jobs)} runs to do, "
          f"{len(log.records)} already in {args.out / 'results.jsonl'}; "
          f"{args.workers} worker(s) x {args.threads} thread(s)")
    remaining: dict[tuple[str, str], int] = {}
    for method, split, _ in jobs:
        remaining[method, split] = remaining.get((method, split), 0) + 1
    chunks = make_chunks(args, data, jobs)
    progress = tqdm(total=len(jobs), unit="run", file=sys.stderr, dynamic_ncols=True)
    options = {"regularizer": args.regularizer, "iid": args.iid, "lam": args.lam, "lam_linear": args.lam_linear,
               "epochs": args.epochs, "device": args.device, "dgi_embeddings": args.out / "dgi_embeddings.pt"}
    try:
        train_chunks(args, chunks, {"biased": biased, "iid": iid}, options, log, remaining, progress)
    except (KeyboardInterrupt, WorkerLostError) as err:
        progress.close()
        what, status = ("interrupted", 130) if isinstance(err, KeyboardInterrupt) else (str(err), 1)
        fail(f"{what}; the {len(log.records)} finished runs are saved in {args.out / 'results.jsonl'}. "
             "Rerun the same command with --resume to continue.", status=status)
    progress.close()
    result = {"config": {**config, "versions": {p: version(p) for p in ("srgnn", "torch", "torch-geometric", "scipy")}},
              **summarize(log, args.methods, args.dataset, len(biased))}
    extra = [m for m in result["methods"] if m not in args.methods]
    if extra:
        print(f"The summary also covers {', '.join(extra)}, from earlier runs in {args.out / 'results.jsonl'}.")
    rows = table_rows(result)
    print_table(rows, result)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    write_csv(args.out / "results.csv", result)
    plot(result, log, args.dataset, args.repeats, args.out)
    print(f"Done in {time.perf_counter() - start:.0f} s; results in {args.out}")
    if args.compare_sequential:
        compare_sequential(data, biased[: args.compare_sequential], args.epochs)
    return result


def train_chunks(args, chunks: list, sets: dict, options: dict, log: RunLog, remaining: dict,
                 progress: tqdm) -> None:
    """Train the ``chunks``, saving each run to ``log`` as it finishes."""
    for records in run_chunks(args, chunks, sets, options):
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


def command() -> None:
    """The ``srgnn-study`` command: ``main``, whose summary is for callers, not an exit status."""
    main()


if __name__ == "__main__":
    main()
