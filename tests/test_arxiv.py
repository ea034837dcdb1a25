"""ogbn-arxiv: a synthetic graph in ogb's on-disk layout, loaded through ogb, and the authors'
large-graph protocol on it (``benchmarks.arxiv_bias``)."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.ogb_layout import ARXIV, ARXIV_SPLIT, write_arxiv_layout
from srgnn.data import load_dataset
from tests.conftest import run_module


@pytest.fixture(scope="module")
def small_arxiv(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogb")
    write_arxiv_layout(root, num_nodes=10_000, num_edges=68_868, seed=1)
    return root


def test_the_protocol_runs_resumes_and_keeps_training_nodes_out_of_the_test_nodes(small_arxiv, tmp_path):
    out = tmp_path / "arxiv"
    env = {"SRGNN_CACHE": str(tmp_path / "cache")}
    flags = ["--root", str(small_arxiv), "--ratios", "0.1", "--repeats", "1", "--epochs", "5", "--out", str(out)]
    done = run_module("benchmarks.arxiv_bias", *flags, env=env)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["index"]) for r in records) == [("gcn", 0), ("sr-gcn", 0)]
    data = load_dataset("ogbn-arxiv", root=small_arxiv)
    for r in records:
        # Every training node outside the test nodes: the test split minus the training set.
        assert r["outside_train_split"] > 0 and r["test_nodes"] < int(data.test_mask.sum())
        assert 0.0 < r["micro_f1"] <= 1.0
    assert "| 0.1 |" in done.stdout and "SR-GCN wins" in done.stdout
    again = run_module("benchmarks.arxiv_bias", *flags, env=env)
    assert "set 0 gcn" not in again.stdout  # resumed: nothing retrained
    assert (out / "results.jsonl").read_text().count("\n") == 2
    refused = run_module("benchmarks.arxiv_bias", *flags[:3], "0.001", "--out", str(tmp_path / "none"), env=env,
                         check=False)
    assert refused.returncode == 2 and "no class reaches min_quota" in refused.stderr


def test_scored_nodes_drop_training_nodes_and_unseen_classes():
    from benchmarks.arxiv_bias import scored_nodes

    y = torch.tensor([0, 0, 1, 1, 2, 2])
    mask = torch.tensor([True, True, True, False, True, True])
    assert scored_nodes(mask, torch.tensor([0, 3]), y).tolist() == [1, 2]  # class 2 has no training node


@pytest.mark.slow
def test_an_arxiv_sized_graph_in_ogb_layout_loads_through_ogb(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    write_arxiv_layout(tmp_path / "ogb")
    data = load_dataset("ogbn-arxiv", root=tmp_path / "ogb")
    assert data.num_nodes == ARXIV["nodes"] and data.x.shape == (ARXIV["nodes"], ARXIV["features"])
    assert data.edge_index.size(1) == 2 * ARXIV["edges"] and data.is_undirected()  # ogb's edges, both ways
    assert data.num_classes == ARXIV["classes"]
    sizes = {"train": int(data.train_mask.sum()), "valid": int(data.val_mask.sum()), "test": int(data.test_mask.sum())}
    assert sizes == ARXIV_SPLIT
    year = data.node_year.view(-1)
    assert int(year[data.train_mask].max()) <= 2017 and bool((year[data.val_mask] == 2018).all())
    assert int(year[data.test_mask].min()) >= 2019
