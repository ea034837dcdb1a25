"""The study command: resumable after a kill, deterministic, plots, clear errors for bad flags."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, run_main

QUICK = ["--dataset", "cora", "--repeats", "4", "--methods", "gcn,sr-gcn,sgc", "--epochs", "15"]


def _run(*args, check=True):
    return run_main("benchmarks.pubmed_bias", *args, check=check)


def _metrics(out: Path) -> dict:
    methods = json.loads((out / "results.json").read_text())["methods"]
    return {m: (e["micro_f1"], e["macro_f1"]) for m, e in methods.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "reference"
    _run(*QUICK, "--out", str(out))
    return out


def test_results_format_and_plots(reference):
    result = json.loads((reference / "results.json").read_text())
    assert result["config"]["dataset"] == "cora" and "torch" in result["config"]["versions"]
    gcn = result["methods"]["gcn"]
    assert gcn["n_runs"] == 4 and len(gcn["micro_f1"]) == 4
    micro = torch.tensor(gcn["micro_f1"], dtype=torch.float64)
    assert gcn["micro_f1_mean"] == pytest.approx(float(micro.mean())) and 0 < gcn["macro_f1_mean"] < 1
    assert gcn["micro_f1_std"] == pytest.approx(float(micro.std(correction=0)))  # the population std
    assert 0 <= result["methods"]["sr-gcn"]["wins_vs_base"] <= 4
    lines = (reference / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 3 + 4 * 2  # biased runs of 3 methods + IID runs of the 2 base methods
    for name in ("f1_vs_cmd.png", "methods.png"):
        png = (reference / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (reference / "results.csv").read_text().startswith("method,micro_f1_mean,micro_f1_std")


def test_same_seed_same_metrics(reference, tmp_path):
    _run(*QUICK, "--out", str(tmp_path / "again"))
    assert _metrics(tmp_path / "again") == _metrics(reference)


def test_batching_does_not_change_results(reference, tmp_path):
    # A replica of a batch is the Trainer's run with its seed (tests/test_replicas.py).
    _run(*QUICK, "--batch", "3", "--out", str(tmp_path / "batched"))
    batched = _metrics(tmp_path / "batched")
    for method, (micro, macro) in _metrics(reference).items():
        assert batched[method][0] == pytest.approx(micro, abs=1e-3), method


def test_worker_count_does_not_change_results(tmp_path):
    # Workers take chunks of runs from a shared queue; with the threads per run fixed, a run's
    # scores do not depend on which process trained it, nor on what it trained before. DGI is
    # pretrained once, by whichever worker takes that task, and loaded by every DGI run.
    quick = [*QUICK[:-3], "gcn,sr-gcn,sgc,dgi,sr-dgi", *QUICK[-2:]]
    for workers in ("1", "3"):
        _run(*quick, "--workers", workers, "--threads", "1", "--out", str(tmp_path / workers))
    assert _metrics(tmp_path / "3") == _metrics(tmp_path / "1")
    assert (tmp_path / "3" / "dgi_embeddings.pt").exists()


def test_appnp_variants_in_lockstep_score_as_their_runs_alone(tmp_path):
    # APPNP on the biased and IID sets and SR-APPNP share each index's seed and train as one
    # LockstepTrainer job; each record must be what run_one gives for that run.
    from benchmarks.pubmed_bias import parse_args, training_sets
    from benchmarks.study import run_one
    from srgnn import Graph
    from srgnn.data import load_dataset

    flags = ["--dataset", "cora", "--repeats", "2", "--methods", "appnp,sr-appnp", "--epochs", "15"]
    _run(*flags, "--workers", "1", "--out", str(tmp_path / "study"))
    args = parse_args([*flags, "--out", str(tmp_path / "sets")])
    data = load_dataset("cora")
    sets = dict(zip(("biased", "iid"), training_sets(args, data)))
    records = [json.loads(line) for line in (tmp_path / "study" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for r in records:
        alone = run_one(r["method"], Graph.from_data(data), sets[r["split"]][r["index"]], r["index"], epochs=15)
        assert r["micro_f1"] == pytest.approx(alone["micro_f1"], abs=1e-3), r


def test_kill_then_resume_matches_uninterrupted(reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.pubmed_bias", *QUICK, "--out", str(out)],
                            cwd=REPO, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [json.loads(line) for line in log.read_text().splitlines() if line.strip().endswith("}")]
    assert 5 <= len(before) < 20, "the kill should land partway through"
    resumed = _run(*QUICK, "--out", str(out), "--resume")
    assert f"{len(before)} already in" in resumed.stdout
    after = [json.loads(line) for line in log.read_text().splitlines()]
    keys = [(r["method"], r["split"], r["index"]) for r in after]
    assert len(keys) == len(set(keys)) == 20
    assert after[: len(before)] == before  # finished runs were kept, not redone
    assert _metrics(out) == _metrics(reference)


def test_a_smaller_iid_reference_trains_only_its_sets(reference, tmp_path):
    _run(*QUICK, "--iid-repeats", "1", "--out", str(tmp_path / "small"))
    records = [json.loads(line) for line in (tmp_path / "small" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["index"]) for r in records if r["split"] == "iid") == [("gcn", 0), ("sgc", 0)]
    small = json.loads((tmp_path / "small" / "results.json").read_text())["methods"]
    full = json.loads((reference / "results.json").read_text())["methods"]
    assert small["gcn"]["micro_f1"] == full["gcn"]["micro_f1"]  # the biased runs are the same runs
    first_iid = next(r for r in map(json.loads, (reference / "results.jsonl").read_text().splitlines())
                     if (r["method"], r["split"], r["index"]) == ("gcn", "iid", 0))
    assert small["gcn"]["iid_micro_f1_mean"] == pytest.approx(first_iid["micro_f1"])


def test_existing_results_need_resume(reference):
    result = _run(*QUICK, "--out", str(reference), check=False)
    assert result.returncode == 2 and "pass --resume" in result.stderr


@pytest.mark.parametrize("flags,message", [
    (["--methods", "gcn,transformer"], "unknown method"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--splits", "published", "--splits-path", "/nonexistent/seeds.p"], "needs an existing --splits-path"),
    (["--out", "/proc/forbidden"], "is not writable"),
    (["--lam", "-1"], "--lam and --lam-linear must be finite numbers >= 0"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--workers", "0"], "--workers and --threads must be >= 1"),
    (["--repeats", "3", "--iid-repeats", "4"], "--iid-repeats must be between 0 and --repeats"),
])
def test_bad_flags_are_argparse_errors(flags, message, tmp_path):
    result = _run("--out", str(tmp_path / "o"), *flags, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = _run("--device", "cuda", "--out", str(tmp_path / "o"), check=False)
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


def test_reproduce_on_generated_sets_writes_its_own_section(tmp_path):
    doc = tmp_path / "reproduction.md"
    doc.write_text("# Reproduction\n\n<!-- published cora mlp -->\nkept\n<!-- /published cora mlp -->\n")
    run_main("benchmarks.reproduce", "--datasets", "cora", "--methods", "mlp", "--repeats", "2",
               "--splits", "generated", "--results", str(tmp_path / "results"), "--doc", str(doc))
    text = doc.read_text()
    assert "kept" in text and "<!-- generated cora mlp -->" in text and "--splits generated`" in text
    assert "| cora | mlp |" in text
    config = json.loads((tmp_path / "results" / "cora_generated" / "config.json").read_text())
    assert config["splits"] == "generated" and config["repeats"] == 2


def test_the_label_balanced_iid_sample_is_marked_in_the_output_and_the_config(tmp_path):
    done = _run("--dataset", "cora", "--repeats", "1", "--iid-repeats", "0", "--methods", "sr-gcn", "--epochs", "2",
                "--iid", "label-balanced", "--out", str(tmp_path / "paper"))
    assert "READS THE LABELS OF UNLABELLED NODES" in done.stdout
    assert json.loads((tmp_path / "paper" / "results.json").read_text())["config"]["iid"] == "label-balanced"
    assert "READS THE LABELS" in _run("--help").stdout.replace("\n", " ").replace("  ", " ")


def test_the_study_runs_on_a_real_graph_and_on_a_saved_graph_file(tmp_path):
    from srgnn.data import load_dataset

    quick = ["--repeats", "1", "--methods", "gcn", "--epochs", "3", "--workers", "1"]
    _run("--dataset", "actor", *quick, "--out", str(tmp_path / "actor"))
    records = [json.loads(line) for line in (tmp_path / "actor" / "results.jsonl").read_text().splitlines()]
    assert {(r["method"], r["split"]) for r in records} == {("gcn", "biased"), ("gcn", "iid")}
    assert all(0 <= r["val_micro_f1"] <= 1 and 0 <= r["train_micro_f1"] <= 1 for r in records)
    # The same graph saved as a user would: the same sets, validation and test nodes, the same scores.
    data = load_dataset("actor")
    del data.name
    torch.save(data, tmp_path / "actor.pt")
    _run("--graph", str(tmp_path / "actor.pt"), *quick, "--out", str(tmp_path / "file"))
    saved = [json.loads(line) for line in (tmp_path / "file" / "results.jsonl").read_text().splitlines()]
    key = lambda r: (r["method"], r["split"], r["index"])  # noqa: E731
    assert {key(r): r["micro_f1"] for r in saved} == {key(r): r["micro_f1"] for r in records}
    assert json.loads((tmp_path / "file" / "config.json").read_text())["dataset"] == str(tmp_path / "actor.pt")


def test_the_cross_graph_command_writes_one_table(tmp_path):
    run_main("benchmarks.graphs", "--datasets", "cora,actor", "--methods", "mlp,sr-mlp", "--repeats", "2",
             "--epochs", "5",
             "--workers", "1", "--out", str(tmp_path / "graphs"), "--doc", str(tmp_path / "graphs.md"))
    text = (tmp_path / "graphs.md").read_text()
    for row in ("| cora | mlp |", "| cora | sr-mlp |", "| actor | mlp |", "| actor | sr-mlp |"):
        assert row in text
    assert "Worker-minutes per graph: cora" in text and "/2 |" in text  # paired wins over 2 sets


def test_the_study_runs_from_python_with_the_command_lines_checks(tmp_path):
    from benchmarks import pubmed_bias

    result = pubmed_bias.study(dataset="cora", methods="gcn,sr-gcn", repeats=2, iid_repeats=0, epochs=3, workers=1,
                               out=tmp_path / "study")
    assert set(result["methods"]) == {"gcn", "sr-gcn"} and result["methods"]["gcn"]["n_runs"] == 2
    with pytest.raises(TypeError, match=r"no such flag\(s\) \['nope'\]"):
        pubmed_bias.study(dataset="cora", nope=1)
    with pytest.raises(SystemExit):  # refused as the command line refuses it
        pubmed_bias.study(dataset="cora", repeats=0, out=tmp_path / "bad")
