"""The results log every study writes: append-only JSONL, fsync'd per run, so a study killed at
any moment resumes where it stopped."""
from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.engine import run_jobs


#: Scores a record may hold; each must be a finite number.
METRICS = ("micro_f1", "macro_f1")


class StudyLockedError(ValueError):
    """Another process is writing to the same results log (a ``ValueError``, as the studies
    report a user's fixable errors in one line)."""


def _lock(path: Path):
    """An open lock file beside ``path``, exclusively locked (``fcntl.flock``) until closed or
    until this process ends, however it ends; ``StudyLockedError`` if another process holds it.
    Where ``fcntl`` does not exist (Windows), ``None``: no lock."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(path.with_name(path.name + ".lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StudyLockedError(f"another study is writing to {path} (its lock {handle.name} is held); wait for it to "
                               "finish, or choose another --out") from None
    return handle


class RunLog:
    """Append-only JSONL of finished runs, keyed by ``key`` fields. A line cut short by a kill
    is dropped on load, so a resumed study never double-counts or loses a finished run; a
    complete line that is not a record (a missing key, a score that is not a number) is
    refused with its line number. The log is locked while this object lives (``close()``
    releases it), so two studies never write one log."""

    def __init__(self, path: Path, key: tuple[str, ...]):
        self.path, self.key = Path(path), key
        self.records: dict[tuple, dict] = {}
        self._lock = _lock(self.path)
        if self.path.exists():
            valid = []
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last write was interrupted
                self._check(record, number)
                self.records[tuple(record[k] for k in key)] = record
                valid.append(line)
            self.path.write_text("".join(v + "\n" for v in valid))

    def _check(self, record, number: int) -> None:
        where = f"{self.path} line {number}"
        if not isinstance(record, dict) or any(k not in record for k in self.key):
            self.close()
            raise ValueError(f"{where} is not a run record (it needs the keys {list(self.key)}); delete that line "
                             "to rerun that run, or choose another --out")
        bad = [k for k in METRICS if k in record and (isinstance(record[k], bool) or not isinstance(
            record[k], numbers.Real) or not math.isfinite(record[k]))]
        if bad:
            self.close()
            raise ValueError(f"{where}: {bad[0]} is {record[bad[0]]!r}, not a finite number; delete that line to rerun "
                             "that run, or choose another --out")

    def close(self) -> None:
        """Release the log's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __contains__(self, key: tuple) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        self.records[tuple(record[k] for k in self.key)] = record
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def scores(self, metric: str = "micro_f1", **match) -> np.ndarray:
        """Scores of the matching runs in index order, in %."""
        rows = [r for r in self.records.values() if all(r[k] == v for k, v in match.items())]
        return np.array([r[metric] for r in sorted(rows, key=lambda r: r["index"])]) * 100


def run_logged(function: Callable[..., dict], jobs: list[tuple], log: RunLog, workers: int = 1,
               threads: int = 1, backend: str = "local", address: str | None = None) -> None:
    """``log.add(function(*job))`` for every job, each record logged as it finishes
    (``benchmarks.engine.run_jobs`` in ``workers`` processes of ``threads`` torch threads, or
    on Ray)."""
    for record in tqdm(run_jobs([(function, *job) for job in jobs], workers=workers, threads=threads,
                                backend=backend, address=address),
                       total=len(jobs), unit="set"):
        log.add(record)
