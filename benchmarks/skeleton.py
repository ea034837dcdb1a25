"""The shape every logged study shares: its common flags (``--repeats``, ``--workers``,
``--threads``) and their checks, the split of the cores into workers and threads, its pending
jobs run through ``benchmarks.engine`` into its results log, and its markdown section. What is
a study's own is its flags, its jobs and its tables."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.engine import BACKENDS
from benchmarks.runlog import RunLog, run_logged
from benchmarks.study import write_section
from srgnn.cli import OneLineParser
from srgnn.data import published_splits_path


def study_parser(module: str, description: str, *, repeats: int, workers: int) -> OneLineParser:
    """The parser of ``python -m benchmarks.<module>`` with the common flags."""
    parser = OneLineParser(prog=f"python -m benchmarks.{module}", description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats, help="training sets per graph and method")
    parser.add_argument("--workers", type=int, default=workers, help="runs in parallel, each in its own process")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: the CPU count over --workers)")
    add_backend_options(parser)
    return parser


def add_seeds_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--seeds-dir``: where the authors' published sets are, when not in ``$SRGNN_DATA``."""
    parser.add_argument("--seeds-dir", type=Path, default=None,
                        help="folder of localized_seeds_<dataset>.p (default: srgnn_localized_seeds/ in $SRGNN_DATA)")


def published_sets_path(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> Path:
    """The file of ``name``'s published sets: in ``--seeds-dir``, else in ``$SRGNN_DATA``
    (``srgnn.data.published_splits_path``); a one-line error naming both if neither has it."""
    if args.seeds_dir is None:
        try:
            return published_splits_path(name)
        except FileNotFoundError as err:
            parser.error(f"{err} (or pass --seeds-dir)")
    path = args.seeds_dir / f"localized_seeds_{name}.p"
    if not path.is_file():
        parser.error(f"no published sets for {name!r} in {args.seeds_dir}; pass --seeds-dir "
                     "(the folder with localized_seeds_<dataset>.p), or leave it out to read $SRGNN_DATA")
    return path


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--address``: where a study's jobs run."""
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: --workers processes on this machine (default); ray: Ray tasks of --threads CPUs "
                             "each, on a local Ray instance or the cluster at --address (pip install 'srgnn[ray]')")
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="with --backend ray: a running Ray cluster's address (ray start --head prints it), or auto")


def check_backend(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse in one line ``--backend ray`` without Ray, an ``--address`` without it, and an
    address where no cluster answers."""
    if args.backend != "ray":
        if args.address is not None:
            parser.error("--address names a Ray cluster: add --backend ray, or drop --address")
        return
    from benchmarks.ray_engine import RayUnavailableError, check_address, require_ray

    try:
        require_ray()
        if args.address not in (None, "auto"):
            check_address(args.address)
    except RayUnavailableError as err:
        parser.error(str(err))


def parse_study_args(parser: OneLineParser, argv: Sequence[str] | None, *counts: str) -> argparse.Namespace:
    """Parse, refuse a count below 1 (the common ones and ``counts``, flag names without
    dashes) in one line, and fill in ``threads``."""
    args = parser.parse_args(argv)
    names = ("repeats", "workers", "threads", *counts)
    low = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in names
           if getattr(args, name) is not None and getattr(args, name) < 1]
    if low:
        parser.error(f"{', '.join(low)}: {', '.join('--' + n.replace('_', '-') for n in names)} must be >= 1")
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    check_backend(parser, args)
    return args


def run_pending(function: Callable[..., dict], jobs: list[tuple], key: Callable[[tuple], tuple], log: RunLog,
                args: argparse.Namespace) -> None:
    """``function(*job)`` for each job whose ``key(job)`` is not yet in ``log``, in ``args.workers``
    processes of ``args.threads`` threads; each record is logged as it finishes."""
    run_logged(function, [job for job in jobs if key(job) not in log], log, args.workers, args.threads,
               backend=args.backend, address=args.address)


def publish(doc: Path, section: str, lines: list[str], title: str) -> None:
    """Write ``lines`` as the study's section of ``doc`` (other sections are kept) and print them."""
    write_section(doc, section, "\n".join(lines), title)
    print("\n".join(lines))
