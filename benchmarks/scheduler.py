"""The bias study's job list: the pending runs grouped into chunks (replica-batched jobs,
lockstep APPNP jobs, single runs), run by ``benchmarks.engine``."""
from __future__ import annotations

import time

import torch

from benchmarks.engine import run_jobs
from benchmarks.study import (LOCKSTEP, base_of, batchable, pretrain_dgi, run_lockstep, run_many, run_one, run_with_mix,
                              test_nodes, worker_graph)
from srgnn.robustness.shift import cmd


#: Methods batched by default on the CPU. PubMed, 20 sets, one thread, batched against one
#: run at a time: MLP 5.3x, SR-MLP 2.3x (an MLP reads only its labelled and IID rows, so a run is
#: mostly per-call overhead); GCN and SR-GCN 1.0-1.1x, GraphSAGE and SR-GraphSAGE 0.9x.
CPU_BATCHED = ("mlp", "sr-mlp")


def batch_size(args, method: str, data) -> int:
    """Sets per job for ``method``: ``--batch``, else 20 on CUDA and for ``CPU_BATCHED``
    methods on the CPU; 1 for a method ``ReplicaTrainer`` does not train."""
    size = args.batch if args.batch is not None else 20 if args.device != "cpu" or method in CPU_BATCHED else 1
    return size if size > 1 and batchable(method, data) else 1


def run_chunk(source: tuple[str, str], runs: list[tuple[str, str, int]], mode: str, train_sets: list[torch.Tensor],
              seed: int, options: dict) -> list[dict]:
    """Train the ``runs`` ((method, split, index) each) on their ``train_sets`` of the graph of
    ``source`` (``worker_graph``: one ``Graph.from_data`` per process, shared by its runs) and
    return one ``results.jsonl`` record per run. ``mode``: ``"one"`` (a single run),
    ``"replicas"`` (one method and split on several sets as one replica-batched job, even a last
    chunk of one, so that a set's result does not depend on where the chunks fall) or
    ``"lockstep"`` (APPNP variants of one index, which share a seed, as one ``LockstepTrainer``
    job) or ``"mixed"`` (a method and ``mix-`` of it on one index, from one fit)."""
    graph = worker_graph(source)
    seeds = [seed * 100_003 + i for _, _, i in runs]
    start = time.perf_counter()
    if mode == "replicas":
        scores = run_many(runs[0][0], graph, train_sets, seeds, **options)
    elif mode == "lockstep":
        scores = run_lockstep([method for method, _, _ in runs], graph, train_sets, seeds[0], **options)
    elif mode == "mixed":
        scores = run_with_mix(runs[0][0], graph, train_sets[0], seeds[0], **options)
    else:
        scores = [run_one(runs[0][0], graph, train_sets[0], seeds[0], **options)]
    data = graph.data
    # A mixed chunk's runs each cost its one fit; the other chunks' share theirs.
    seconds = (time.perf_counter() - start) / (1 if mode == "mixed" else len(runs))
    return [{"method": method, "split": split, "index": i, **score,
             "cmd_train_test": cmd(data.x[train], data.x[test_nodes(data, train)]).item(), "seconds": seconds}
            for (method, split, i), train, score in zip(runs, train_sets, scores)]


def make_chunks(args, data, jobs: list[tuple[str, str, int]]) -> list[tuple[list, str]]:
    """Group the pending ``jobs`` into chunks for ``run_chunk``: the ``LOCKSTEP`` runs of each
    index together, a method and ``mix-`` of it on each index together, then each method and
    split in chunks of ``batch_size`` sets."""
    pending = set(jobs)
    chunks = []
    for i in range(args.repeats):
        runs = [(method, split, i) for method, split in LOCKSTEP if (method, split, i) in pending]
        if len(runs) > 1:
            chunks.append((runs, "lockstep"))
            pending -= set(runs)
    for method, split, i in jobs:
        pair = [(method, split, i), (f"mix-{method}", split, i)]
        if all(run in pending for run in pair):
            chunks.append((pair, "mixed"))
            pending -= set(pair)
    by_method: dict[tuple[str, str], list[int]] = {}
    for method, split, i in jobs:
        if (method, split, i) in pending:
            by_method.setdefault((method, split), []).append(i)
    for (method, split), indices in by_method.items():
        size = batch_size(args, method, data)
        chunks += [([(method, split, i) for i in indices[first:first + size]], "replicas" if size > 1 else "one")
                   for first in range(0, len(indices), size)]
    return chunks


def run_chunks(args, chunks: list, sets: dict, options: dict):
    """Yield each finished chunk's records, from ``benchmarks.engine.run_jobs`` in
    ``args.workers`` processes. DGI and SR-DGI go last, after one pretraining of DGI into
    ``--out/dgi_embeddings.pt`` (``options["dgi_embeddings"]``), which every DGI run then loads
    while the other workers train the other methods: one pretraining per study instead of one
    per worker (on PubMed, about 65 s of a core)."""
    def job(runs: list, mode: str) -> tuple:
        return (run_chunk, args.source, runs, mode, [sets[split][i] for _, split, i in runs], args.seed, options)

    uses_dgi = [(base_of(runs[0][0]) or runs[0][0]) == "dgi" for runs, _ in chunks]
    others = [job(*c) for c, dgi in zip(chunks, uses_dgi) if not dgi]
    dgi = [job(*c) for c, dgi in zip(chunks, uses_dgi) if dgi]
    first = (pretrain_source_dgi, args.source, options["dgi_embeddings"], options["device"]) if dgi else None
    yield from run_jobs(others, workers=min(args.workers, len(chunks)) or 1, threads=args.threads,
                        first=first if args.workers > 1 or args.backend == "ray" else None, then=dgi,
                        backend=args.backend, address=args.address)


def pretrain_source_dgi(source: tuple[str, str], path, device: str) -> None:
    """``pretrain_dgi`` on the graph of ``source``, in a worker."""
    pretrain_dgi(worker_graph(source).data, path, device)
