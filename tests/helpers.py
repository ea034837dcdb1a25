"""What the tests share besides fixtures: where the data is, running a study's ``main`` in this
process, and copies of a graph with changes."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATA_ROOT = Path(os.environ.get("SRGNN_DATA", SHARED))  # holds planetoid/ and graphs/
PLANETOID = DATA_ROOT / "planetoid" if (DATA_ROOT / "planetoid").is_dir() else DATA_ROOT
SEEDS_DIR = Path(os.environ.get("SRGNN_SEEDS", SHARED / "srgnn_localized_seeds"))


def run_main(module: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as ``module.main(args)`` in this process, with stdout and
    stderr captured and ``env`` set for the call: a new interpreter would spend ~10 s importing
    torch and PyG for each refusal of a bad flag. The Ctrl-C and kill tests keep real processes.
    An exception other than ``SystemExit`` propagates, so a traceback fails the test; with
    ``check``, a nonzero exit fails it with the captured stderr."""
    main = importlib.import_module(module).main
    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    saved_env, threads = dict(os.environ), torch.get_num_threads()
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main(list(args))
    except SystemExit as exit_:
        returncode = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            stderr.write(exit_.code)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)  # --threads sets the process's thread count
    if check and returncode != 0:
        pytest.fail(f"{module}.main exited {returncode}:\n{stderr.getvalue()[-4000:]}")
    return subprocess.CompletedProcess([module, *args], returncode, stdout.getvalue(), stderr.getvalue())


def copy_data(data, **changes):
    """A new ``Data`` sharing ``data``'s x, edge_index, y and num_classes, with ``changes`` set on it."""
    from torch_geometric.data import Data

    out = Data(x=data.x, edge_index=data.edge_index, y=data.y, num_nodes=data.num_nodes)
    out.num_classes = data.num_classes
    for key, value in changes.items():
        setattr(out, key, value)
    return out
