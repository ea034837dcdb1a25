"""ogbn-arxiv: a synthetic graph in ogb's on-disk layout, loaded through ogb, and the authors'
large-graph protocol on it (``benchmarks.arxiv_bias``)."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.ogb_layout import ARXIV, ARXIV_SPLIT, write_arxiv_layout
from tests.helpers import run_main
from srgnn.data import load_dataset
from srgnn.sampling import PushSampler


@pytest.fixture(scope="module")
def small_arxiv(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogb")
    write_arxiv_layout(root, num_nodes=10_000, num_edges=68_868, seed=1)
    return root


def test_the_protocol_runs_resumes_and_keeps_training_nodes_out_of_the_test_nodes(small_arxiv, tmp_path, capsys,
                                                                                   monkeypatch):
    from benchmarks import arxiv_bias

    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "arxiv"
    flags = ["--root", str(small_arxiv), "--ratios", "0.1", "--repeats", "1", "--epochs", "3", "--out", str(out)]
    rows = arxiv_bias.main(flags)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in records) == ["gcn", "sr-gcn"]
    data = load_dataset("ogbn-arxiv", root=small_arxiv)
    train = PushSampler(data, 0.1).sample(seed=0)  # set 0, as the protocol draws it
    in_test = int(data.test_mask[train].sum())
    assert in_test > 0  # PPR-S sets reach into OGB's test split...
    for r in records:  # ...and those nodes are not scored as test nodes
        assert r["test_nodes"] == int(data.test_mask.sum()) - in_test and r["train_nodes"] == train.numel()
        assert 0.0 < r["micro_f1"] <= 1.0
    assert rows[1][0] == "0.1" and rows[0][-1] == "SR-GCN wins"
    capsys.readouterr()
    arxiv_bias.main(flags)
    assert "set 0 gcn" not in capsys.readouterr().out  # resumed: nothing retrained
    with pytest.raises(SystemExit) as refused:
        arxiv_bias.main([*flags[:3], "0.001", "--out", str(tmp_path / "none")])
    assert refused.value.code == 2 and "no class reaches min_quota" in capsys.readouterr().err


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


@pytest.mark.parametrize("flags, message", [(("--device", "tpu"), "is not a device"),
                                            (("--device", "mps"), "runs on the CPU or CUDA"),
                                            (("--workers", "0"), "must be >= 1")])
def test_bad_run_options_are_refused_in_one_line(small_arxiv, tmp_path, flags, message):
    result = run_main("benchmarks.arxiv_bias", "--root", str(small_arxiv), "--out", str(tmp_path / "o"), *flags,
                      check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
