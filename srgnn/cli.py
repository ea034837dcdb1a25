"""What srgnn's command lines share: errors a user can fix, reported in one line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, ``PROG: error: MESSAGE``,
    with exit status 2 (argparse's own status), and no usage block before it: ``--help``
    prints the usage."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (--help for usage)" if "--help" not in message else message)


def fail(prog: str, message: str, status: int = 2) -> NoReturn:
    """Report an expected failure in one line on stderr and exit with ``status``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def output_dir(value: str) -> Path:
    """An argparse ``type`` for an output folder: refuses the empty string, which ``Path``
    reads as the current directory."""
    if not value.strip():
        raise argparse.ArgumentTypeError("the output folder is empty; name one, e.g. --out results/my_study")
    return Path(value)
