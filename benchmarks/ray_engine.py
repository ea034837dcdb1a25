"""The study engine's second backend: a study's jobs as Ray tasks, on a local Ray instance or a
cluster (``pip install 'srgnn[ray]'``; ``--backend ray [--address HOST:PORT]``).

Each task asks for ``threads`` CPUs and runs with as many torch threads; results come back to the
driver as tasks finish, and the driver alone writes the study's log, as with the local engine.
A task that fails, or whose worker is lost, ends the study like a failing job does (no
retries: a run is not done twice); ``--resume`` continues it, skipping the logged runs.

Jobs are ``benchmarks.jobs``' ``(function, *args)``: on a cluster every node needs srgnn installed (or a Ray ``runtime_env``). The ``SRGNN_*`` variables of the driver
(data root, cache, device) go to the tasks.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from benchmarks.jobs import Job, WorkerLostError, run_job

#: Ray's errors for a task whose worker or node was lost, not for the job's own exception.
LOST = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OutOfMemoryError")
RAY_INSTALL = "pip install 'srgnn[ray]'"


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or no Ray cluster answers at the address given."""


def require_ray():
    """The ``ray`` module, or a one-line error naming the install command."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"--backend ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line, a ``HOST:PORT`` where nothing accepts a connection within ``timeout``
    seconds (``ray.init`` would otherwise retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379), or 'auto'.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RayUnavailableError(f"No Ray cluster answers at {address} ({err}); start one there with `ray start "
                                  "--head`, or leave --address out for a local Ray instance.") from None


def _run_with_threads(threads: int, job: Job) -> Any:
    torch.set_num_threads(threads)
    return run_job(job)


def run_ray_jobs(jobs: Iterable[Job], *, workers: int = 1, threads: int = 1, first: Job | None = None,
                 then: Iterable[Job] = (), address: str | None = None) -> Iterator[Any]:
    """``benchmarks.engine.run_jobs`` on Ray: yield each job's result as it finishes; ``first``
    runs before any job of ``then``. Without ``address`` a local instance of ``workers *
    threads`` CPUs is started (and stopped at the end); one already started in this process
    (``ray.init``) is used as it is."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        if address not in (None, "auto"):
            check_address(address)
        env = {name: value for name, value in os.environ.items() if name.startswith("SRGNN_")}
        ray.init(address=address, num_cpus=None if address else workers * threads, include_dashboard=False,
                 runtime_env={"env_vars": env} if env else None, log_to_driver=False)
    task = ray.remote(num_cpus=threads, max_retries=0)(_run_with_threads)
    lost = tuple(getattr(ray.exceptions, name) for name in LOST)
    pending: list = []
    try:
        gate = task.remote(threads, first) if first is not None else None
        pending = [task.remote(threads, job) for job in jobs]
        later = [task.remote(threads, job) for job in then] if gate is None else []
        pending += later + ([gate] if gate is not None else [])
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done)  # a failed task raises here and ends the study
            except lost as err:
                raise WorkerLostError(f"a Ray worker was lost while running a job ({type(err).__name__})") from None
            if done == gate:
                pending += [task.remote(threads, job) for job in then]
            else:
                yield result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
