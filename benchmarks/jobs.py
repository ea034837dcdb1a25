"""What every backend of the study engine runs and reports: a job, and the loss of a worker.

A job is ``(function, *args)``, both picklable: ``function`` lives in an importable module, as a
spawned process or a Ray worker re-imports it."""
from __future__ import annotations

from typing import Any

Job = tuple  # (function, *args)


class WorkerLostError(RuntimeError):
    """A worker process (local) or a Ray worker or node died while running a job: killed, or
    out of memory. The results yielded before it are the driver's to keep."""


def run_job(job: Job) -> Any:
    function, *args = job
    return function(*args)
