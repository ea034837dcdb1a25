"""Shared fixtures: real data from ../shared/data (or $SRGNN_DATA), cached in a temp dir."""
from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import DATA_ROOT, SEEDS_DIR


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
