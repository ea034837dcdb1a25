"""The estimator and where-to-label studies, end to end on a few real Cora sets."""
from __future__ import annotations

import json

import torch

from benchmarks.disagreement_bias import ESTIMATES
from benchmarks.study import split_held_out
from tests.helpers import SEEDS_DIR, run_main


def test_held_out_nodes_are_a_stratified_share_of_the_labelled_set():
    train = torch.arange(30)
    y = torch.arange(30) % 3
    fit, held = split_held_out(train, y, 0.2, seed=0)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(30))
    assert torch.bincount(y[held]).tolist() == [2, 2, 2]


def test_the_estimator_study_scores_every_estimator_and_resumes(tmp_path):
    runs, doc = tmp_path / "runs.jsonl", tmp_path / "doc.md"
    args = ("--dataset", "cora", "--repeats", "1", "--bootstrap", "5", "--workers", "1", "--runs", str(runs),
            "--doc", str(doc))
    out = run_main("benchmarks.disagreement_bias", *args).stdout
    for name in ESTIMATES:
        assert f"| {name} | 1 | biased |" in out and f"| {name} | 1 | iid |" in out
    record = json.loads(runs.read_text().splitlines()[0])
    low, estimate, high = record["atc, gcn"][1], record["atc, gcn"][0], record["atc, gcn"][2]
    assert 0.0 <= low <= estimate <= high <= 1.0
    run_main("benchmarks.disagreement_bias", *args)
    assert len(runs.read_text().splitlines()) == 2  # the resumed run trained nothing more


def test_the_where_to_label_study_pairs_both_arms_on_published_sets(tmp_path):
    runs, doc = tmp_path / "runs.jsonl", tmp_path / "doc.md"
    out = run_main("benchmarks.where_to_label", "--datasets", "cora", "--methods", "gcn", "--repeats", "2",
                   "--workers", "1", "--seeds-dir", str(SEEDS_DIR), "--runs", str(runs), "--doc", str(doc)).stdout
    assert "| cora | gcn | 2 |" in out and "where-to-label cora gcn" in doc.read_text()
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert len(records) == 2 and all(len(set(r["suggested_nodes"])) == 20 for r in records)


def test_the_swa_recipe_study_adds_groups_to_its_log_and_temperature_keeps_the_argmax(tmp_path):
    from benchmarks.swa_bias import GROUPS, RECIPES, TEMPERATURES

    runs, doc = tmp_path / "runs.jsonl", tmp_path / "doc.md"
    args = ("--datasets", "cora", "--repeats", "1", "--workers", "1", "--seeds-dir", str(SEEDS_DIR), "--runs",
            str(runs), "--doc", str(doc))
    out = run_main("benchmarks.swa_bias", *args, "--groups", "sr-gcn").stdout
    assert "| cora | sr-gcn + weighted temperature | 1 |" in out and "| cora | gcn | 1 |" in out  # the baseline
    assert "| cora | swa |" not in out
    out = run_main("benchmarks.swa_bias", *args).stdout  # the other groups join the log
    for recipe in RECIPES:
        assert f"| cora | {recipe} | 1 |" in out
    assert "Chosen on validation nodes by the fixed rule" in doc.read_text()
    records = {r["group"]: r for r in map(json.loads, runs.read_text().splitlines())}
    assert sorted(records) == sorted(GROUPS)
    for group in ("gcn", "sr-gcn"):
        for split in ("val", "test"):
            record = records[group]
            assert record[f"{group} + temperature|{split}|micro_f1"] == record[f"{group}|{split}|micro_f1"]
            assert record[f"{group} + weighted temperature|{split}|micro_f1"] == record[f"{group}|{split}|micro_f1"]
            eces = {record[f"{group}{suffix}|{split}|ece"] for suffix in ("",) + TEMPERATURES}
            assert len(eces) == len(TEMPERATURES) + 1
            assert 0.0 < record[f"{group}|{split}|ece_floor"] < 1.0
            for suffix in (" + validation temperature", " + distance temperature", " + uniform temperature"):
                assert record[f"{group}{suffix}|{split}|micro_f1"] == record[f"{group}|{split}|micro_f1"]
    run_main("benchmarks.swa_bias", *args)
    assert len(runs.read_text().splitlines()) == len(GROUPS)  # resumed: nothing retrained


def test_cross_fitted_scaling_never_tempers_a_node_with_its_own_label():
    from benchmarks.swa_bias import cross_fitted_scaling

    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(200, 4, generator=generator)
    labels = torch.randint(4, (200,), generator=generator)
    nodes = torch.arange(100, 200)
    probs = cross_fitted_scaling(logits, labels, nodes, seed=1)
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    for node in (100, 150, 199):
        relabelled = labels.clone()
        relabelled[node] = (labels[node] + 1) % 4
        moved = cross_fitted_scaling(logits, relabelled, nodes, seed=1)
        assert torch.equal(moved[node], probs[node])  # its temperature came from the other half
        assert not torch.equal(moved[:100], probs[:100])  # the others' came from all of ``nodes``
    groups = torch.arange(200) % 2
    grouped = cross_fitted_scaling(logits, labels, nodes, seed=1, groups=groups)
    relabelled = labels.clone()
    relabelled[100] = (labels[100] + 1) % 4  # node 100 is in group 0
    moved = cross_fitted_scaling(logits, relabelled, nodes, seed=1, groups=groups)
    assert torch.equal(moved[100], grouped[100]) and not torch.equal(moved[0], grouped[0])
    assert torch.equal(moved[1], grouped[1])  # group 1's temperature never read node 100's label


def _fails_on_first(job: int) -> dict:
    import time

    if job == 0:
        raise ValueError("job 0 is bad")
    time.sleep(1.0)
    return {"index": job}


def test_a_failing_job_stops_the_study_at_once_and_keeps_what_finished(tmp_path):
    import pytest

    from benchmarks.runlog import RunLog, run_logged

    log = RunLog(tmp_path / "runs.jsonl", ("index",))
    with pytest.raises(ValueError, match="job 0 is bad"):
        run_logged(_fails_on_first, [(j,) for j in range(40)], log, workers=2)
    # The queued jobs were cancelled, not run to the end before the error surfaced.
    assert len(log.records) < 10


_SLEEPING_STUDY = """
import os, sys, time
from pathlib import Path
from benchmarks.runlog import RunLog, run_logged

def job(pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)
    return {"index": pid_file}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    run_logged(job, [(str(out / f"worker{i}.pid"),) for i in range(4)], RunLog(out / "runs.jsonl", ("index",)), workers=2)
"""


def test_a_sigterm_to_the_study_ends_its_workers(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "study.py"
    script.write_text(_SLEEPING_STUDY)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    study = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.2)  # both pid files written in full
    pids = [int(f.read_text()) for f in tmp_path.glob("worker*.pid")]
    assert len(pids) == 2, "the workers did not start"
    study.send_signal(signal.SIGTERM)
    assert study.wait(timeout=30) != 0

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "a worker outlived the study"


def test_the_swa_recipe_study_refuses_an_unknown_group_and_a_log_without_groups(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"dataset": "cora", "index": 0, "gcn|val|ece": 0.1}) + "\n")
    for flags, message in ((("--groups", "gcn,swag"), "unknown group(s) 'swag'"),
                           (("--runs", str(old)), "line 1 is not a run record")):
        result = run_main("benchmarks.swa_bias", "--datasets", "cora", "--repeats", "1", "--doc",
                          str(tmp_path / "doc.md"), *flags, check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_uniform_labelled_sample_avoids_the_training_and_validation_nodes(cora, cora_published):
    from benchmarks.study import uniform_labelled

    train = cora_published[0]
    sample = uniform_labelled(cora, train, seed=4)
    assert sample.numel() == 500 == sample.unique().numel()
    assert not torch.isin(sample, train).any() and not cora.val_mask[sample].any()
    assert torch.equal(sample, uniform_labelled(cora, train, seed=4))
    assert not torch.equal(sample, uniform_labelled(cora, train, seed=5))
