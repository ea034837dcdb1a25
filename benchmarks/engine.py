"""The one study engine: a study's jobs, run in this process or in a pool of spawned worker
processes (``concurrent.futures.ProcessPoolExecutor``), each result handed back as its job
finishes, so the driver logs it at once and a stopped study loses no finished run.

What a study decides is its job list (which runs, chunked how) and what a job does; this module
only runs them (a job: ``benchmarks.jobs``).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from benchmarks.jobs import Job, WorkerLostError, run_job
from benchmarks.ray_engine import run_ray_jobs



_per_process: dict[tuple, Any] = {}


def per_process(key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, built once per process and ``key`` (plain values naming what it is built from):
    a worker runs many jobs on one graph, and what the graph derives (adjacency, PPR, samplers)
    serves them all."""
    if key not in _per_process:
        _per_process[key] = make()
    return _per_process[key]


def clear_per_process() -> None:
    """Drop this process's ``per_process`` values (a driver that built one to check its input,
    before workers that build their own)."""
    _per_process.clear()


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Have glibc serve buffers of up to ``threshold`` bytes from the heap and keep freed memory
    there, for the rest of this process; returns whether it took (``False`` off glibc).

    glibc gives each allocation above its mmap threshold (at most 32 MiB unless set) fresh
    pages and unmaps them on free, so every new tensor of that size faults all its pages in
    again. DGI's pretraining on PubMed allocates about 17 ``[19717, 512]`` buffers (40 MB) an
    epoch: 18M page faults, 40 of its 94 s in the kernel; with this, 0.4M faults and 49 s
    (one thread, the same embeddings bit for bit). The cost is a resident set that stays at its
    peak: 1.6 GB against 0.9 GB."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim, mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD from <malloc.h>
    return bool(libc.mallopt(mmap, threshold)) and bool(libc.mallopt(trim, 2 * threshold))


def _start_worker(threads: int, parent: int) -> None:
    """Each worker process: its torch threads, glibc's freed-memory setting, and a watch that
    ends it when the study's process is gone (killed outright, it cannot stop its workers)."""
    torch.set_num_threads(threads)
    keep_freed_memory()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued jobs and end the running ones now: a stopped study trains for nobody."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14
        pool.terminate_workers()
        return
    processes = list((pool._processes or {}).values())  # before shutdown, which forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


BACKENDS = ("local", "ray")


def run_jobs(jobs: Iterable[Job], *, workers: int = 1, threads: int = 1, first: Job | None = None,
             then: Iterable[Job] = (), backend: str = "local", address: str | None = None) -> Iterator[Any]:
    """Yield each job's result as it finishes: ``jobs`` and ``then`` in this process (in order)
    when ``workers`` is 1, else in ``workers`` spawned processes of ``threads`` torch threads
    each (fork is unsafe once torch's thread pool exists). ``backend="ray"``: as Ray tasks of
    ``threads`` CPUs each, on the cluster at ``address`` or a local instance
    (``benchmarks.ray_engine``).

    ``first`` (result not yielded) runs before any job of ``then`` starts, while ``jobs`` go on
    beside it: it makes what ``then`` reads, once for the whole study (DGI's pretrained
    embeddings). A failing job, Ctrl-C or SIGTERM ends the workers too; the results already
    yielded are the driver's to keep."""
    jobs, then = list(jobs), list(then)
    if backend == "ray":
        yield from run_ray_jobs(jobs, workers=workers, threads=threads, first=first, then=then, address=address)
        return
    if backend != "local":
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    if workers == 1:
        torch.set_num_threads(threads)
        keep_freed_memory()
        if first is not None:
            run_job(first)
        for job in jobs + then:
            yield run_job(job)
        return
    # SIGTERM's default action kills this process at once, and its workers would train on for
    # nobody; as an exception it leaves through the finally below, which ends them.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads, os.getpid()))
    try:
        gate: Future | None = pool.submit(run_job, first) if first is not None else None
        pending = {pool.submit(run_job, job) for job in jobs}
        if gate is None:
            pending |= {pool.submit(run_job, job) for job in then}
        else:
            pending.add(gate)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()  # a job's exception ends the study here
                except BrokenProcessPool as err:
                    raise WorkerLostError(f"a worker process died while running a job ({err})") from None
                if future is gate:
                    pending |= {pool.submit(run_job, job) for job in then}
                else:
                    yield result
        pool.shutdown()
    finally:
        _stop(pool)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
