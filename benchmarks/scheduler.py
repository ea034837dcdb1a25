"""The bias study's scheduler: the pending runs grouped into chunks (replica-batched jobs,
lockstep APPNP jobs, single runs), trained in this process or spread over worker processes
that take the next chunk from a shared queue as they free up."""
from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback

import torch

from benchmarks.study import (LOCKSTEP, base_of, batchable, keep_freed_memory, load_source, pretrain_dgi, run_lockstep,
                              run_many, run_one, test_nodes)
from srgnn.graph import Graph
from srgnn.shift import cmd


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
    return [{"method": method, "split": split, "index": i, **score,
             "cmd_train_test": cmd(data.x[train], data.x[test_nodes(data, train)]).item(), "seconds": seconds}
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


def _worker(source: tuple[str, str], threads: int, tasks: multiprocessing.Queue, sets: dict, seed: int, options: dict,
            results: multiprocessing.Queue, parent: int) -> None:
    """One worker process: take chunks from ``tasks`` until a ``None`` and send each chunk's records."""
    try:
        torch.set_num_threads(threads)
        keep_freed_memory()
        data = load_source(source)
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
                               args=(args.source, args.threads, tasks, sets, args.seed, options, results, os.getpid()))
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
