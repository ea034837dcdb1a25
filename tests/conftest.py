"""Shared fixtures: real Planetoid data from ../shared (or $SRGNN_DATA), cached in a temp dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATA_ROOT = Path(os.environ.get("SRGNN_DATA", SHARED / "planetoid"))
SEEDS_DIR = Path(os.environ.get("SRGNN_SEEDS", SHARED / "srgnn_localized_seeds"))


def run_module(module: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from the repository root; with ``check``, a nonzero exit
    fails the test with the command's stderr, which says why (CalledProcessError hides it)."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        pytest.fail(f"python -m {module} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="session", autouse=True)
def _data_env(tmp_path_factory):
    """Point srgnn at the shared raw files and a cache this test session owns."""
    os.environ["SRGNN_DATA"] = str(DATA_ROOT)
    os.environ.setdefault("SRGNN_CACHE", str(tmp_path_factory.mktemp("srgnn_cache")))
    # Models train on the CPU unless a test names a device (or $SRGNN_DEVICE asks for another),
    # so exact and seeded checks hold on a machine with a GPU too; CUDA tests name CUDA.
    os.environ.setdefault("SRGNN_DEVICE", "cpu")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def cora(_data_env):
    from srgnn.data import load_dataset

    return load_dataset("cora")


@pytest.fixture(scope="session")
def citeseer(_data_env):
    from srgnn.data import load_dataset

    return load_dataset("citeseer")


@pytest.fixture(scope="session")
def pubmed(_data_env):
    from srgnn.data import load_dataset

    return load_dataset("pubmed")


@pytest.fixture(scope="session")
def cora_published():
    from srgnn.sampling import load_published_splits

    return load_published_splits(SEEDS_DIR / "localized_seeds_cora.p", num_nodes=2708)
