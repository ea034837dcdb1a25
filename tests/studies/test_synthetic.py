"""Synthetic graphs: the block model whose localized sets are biased, and its bias study."""
from __future__ import annotations

import json

import pytest
import torch

from srgnn.sampling import PushSampler, iid_sample
from srgnn.synthetic import shifted_block_model


def test_shifted_block_model_plants_classes_communities_and_degree_spread():
    a = shifted_block_model(6000, 4, communities=5, seed=3)
    b = shifted_block_model(6000, 4, communities=5, seed=3)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert a.is_undirected() and not a.has_self_loops()
    source, target = a.edge_index
    same_class = float((a.y[source] == a.y[target]).float().mean())
    same_community = float((a.community[source] == a.community[target]).float().mean())
    assert 0.88 < same_class < 0.95 and 0.75 < same_community < 0.88  # 0.9 and 0.9 * 0.9, plus chance
    assert torch.equal(a.community // 5, a.y)
    degree = torch.bincount(source, minlength=a.num_nodes).float()
    assert degree.max() > 8 * degree.mean()  # a heavy tail, from the degree correction


def test_a_localized_set_covers_fewer_communities_than_an_iid_one():
    data = shifted_block_model(8000, 4, communities=8, seed=0)
    biased = PushSampler(data, 0.02, candidates=torch.arange(data.num_nodes)).sample(seed=0)
    iid = iid_sample(data, biased.numel(), seed=0)
    assert data.community[biased].unique().numel() < 0.6 * data.community[iid].unique().numel()


def test_bad_block_model_parameters_are_refused():
    with pytest.raises(ValueError, match="num_nodes >= 2 \\* num_classes \\* communities"):
        shifted_block_model(10, 4, communities=8)
    with pytest.raises(ValueError, match="community_share must lie in"):
        shifted_block_model(1000, 4, community_share=1.5)
    with pytest.raises(ValueError, match="degree_exponent must be > 2"):
        shifted_block_model(1000, 4, degree_exponent=2.0)


def test_the_synthetic_study_runs_in_workers_method_by_method_and_resumes(tmp_path, capsys):
    from benchmarks import synthetic_bias

    flags = ["--nodes", "4000", "--ratio", "0.05", "--repeats", "1", "--epochs", "5", "--out", str(tmp_path),
             "--batch-size", "64", "--fan-outs", "5,5"]
    rows = synthetic_bias.main([*flags, "--methods", "gcn,gcn-iid", "--workers", "2", "--threads", "1"])
    assert [r[0] for r in rows[1:]] == ["gcn", "gcn-iid"]
    assert "GCN's bias drop" in capsys.readouterr().out
    rows = synthetic_bias.main(flags)
    assert [r[0] for r in rows[1:]] == ["gcn", "gcn-iid", "sr-gcn", "sr-gcn-kmm", "sr-gcn-capped"]
    assert rows[3][2] in ("0/1", "1/1") and rows[3][3].endswith("%")  # paired against GCN
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 5
    out = capsys.readouterr().out
    assert "set 0 sr-gcn:" in out and "set 0 gcn:" not in out  # resumed: only the runs not in the log
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["train_degree"] > 0 for r in records)
    with pytest.raises(SystemExit):  # full batch would mix two protocols in one log
        synthetic_bias.main(flags[:-4])
    assert "holds runs of another configuration" in capsys.readouterr().err


def test_the_synthetic_study_refuses_an_unknown_method_and_bad_mini_batches(tmp_path, capsys):
    from benchmarks import synthetic_bias

    for flags, message in ((["--methods", "gcn,sr-gat"], "unknown method(s) 'sr-gat'"),
                           (["--batch-size", "0"], "batch_size must be an int >= 1"),
                           (["--fan-outs", "10,10,10"], "has 3 fan-out(s), but GCN has 2")):
        with pytest.raises(SystemExit):
            synthetic_bias.main(["--nodes", "4000", *flags, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_the_scale_benchmark_runs_every_phase_on_a_small_graph(capsys):
    from benchmarks import large_graph

    out = large_graph.main(["--nodes", "3000", "--sets", "2", "--ratio", "0.05", "--rounds", "1", "--hidden", "32",
                            "--community-spread", "3"])
    assert "--community-spread 3`" in out and "PPR-S: 2 sets of" in out
    for method in ("srgnn GCN", "srgnn SR-GCN (CMD)", "srgnn GraphSAGE", "PyG GraphSAGE loop"):
        assert f"| {method} |" in out
    assert "Whole-graph inference of the GCN (3,000 x 10 logits)" in out
    with pytest.raises(SystemExit) as refused:
        large_graph.main(["--nodes", "3000", "--sets", "1"])  # 1% of 3,000 nodes: 3 a class, under the minimum
    assert refused.value.code == 2 and "no class reaches min_quota" in capsys.readouterr().err
