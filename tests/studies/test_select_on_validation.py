"""The validation-only selection of SR variants: never Cora, scores on validation nodes, resumes."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import select_on_validation


@pytest.mark.parametrize("flags, message", [
    (["--datasets", "cora"], "Cora's test nodes include its validation nodes"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--repeats", "101", "--datasets", "citeseer,pubmed"], "has 100 sets"),
    (["--seeds-dir", "/nonexistent"], "no published sets for 'pubmed'"),
])
def test_bad_flags_are_argparse_errors(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        select_on_validation.main(flags + ["--log", str(tmp_path / "log.jsonl"), "--doc", str(tmp_path / "doc.md")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "log.jsonl").exists() or not (tmp_path / "log.jsonl").read_text()


def test_validation_nodes_leave_out_training_nodes(pubmed):
    train = pubmed.val_mask.nonzero().view(-1)[:7]
    nodes = select_on_validation.validation_nodes(pubmed, train)
    assert not nodes[train].any()
    assert int(nodes.sum()) == int(pubmed.val_mask.sum()) - 7
    assert not (nodes & pubmed.test_mask).any()


def test_runs_resume_and_write_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(select_on_validation, "CANDIDATES", {"sgc": ["base", "kmm@0.1 + cmd 0.1", "kmm@0.01"]})
    log, doc = tmp_path / "log.jsonl", tmp_path / "doc.md"
    flags = ["--datasets", "pubmed", "--repeats", "2", "--log", str(log), "--doc", str(doc)]
    select_on_validation.main(flags)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((r["variant"], r["index"]) for r in records) == [
        ("base", 0), ("base", 1), ("kmm@0.01", 0), ("kmm@0.01", 1), ("kmm@0.1 + cmd 0.1", 0), ("kmm@0.1 + cmd 0.1", 1)]
    assert all(0.0 < r["micro_f1"] <= 1.0 for r in records)
    select_on_validation.main(flags)  # everything is logged: nothing reruns, nothing is duplicated
    assert len(log.read_text().splitlines()) == 6
    text = doc.read_text()
    assert "<!-- validation pubmed -->" in text and "| pubmed | sgc | kmm@0.01 |" in text
    # KMM alone is compared with the base model and with the study's SR-SGC (KMM + CMD 0.1)
    scores = {(r["variant"], r["index"]): r["micro_f1"] for r in records}
    wins = sum(scores["kmm@0.01", i] > scores["kmm@0.1 + cmd 0.1", i] for i in range(2))
    kmm_row = next(line for line in text.splitlines() if line.startswith("| pubmed | sgc | kmm@0.01 |"))
    assert kmm_row.rstrip(" |").endswith(f"| {wins}/2")
    assert torch.tensor([r["micro_f1"] for r in records]).unique().numel() > 1
