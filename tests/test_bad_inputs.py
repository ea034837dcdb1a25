"""Bad inputs a new user hit (issue 20), each refused at the public boundary with a message
that names the problem and the fix: never a silent wrong result, never a crash deep in torch."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import PLANETOID, REPO, SEEDS_DIR, copy_data as _copy, run_main
from srgnn import ReplicaTrainer, ShiftRobust, Trainer
from srgnn.models import GCN
from srgnn.sampling import LocalizedSampler, degree_biased_sample, load_published_splits

QUICK = ["--dataset", "cora", "--repeats", "3", "--methods", "gcn,sr-gcn", "--epochs", "5"]


def _cli(*args, env=None, check=False):
    return run_main("benchmarks.pubmed_bias", *args, env=env, check=check)


def _one_line_error(result, message: str, status: int = 2) -> None:
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def train(cora):
    return LocalizedSampler(cora).sample(0)


# 1. lam NaN or inf
@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -1.0])
def test_shift_robust_refuses_a_non_finite_or_negative_lam(cora, lam):
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        ShiftRobust(GCN(cora.num_features, cora.num_classes), lam=lam)


@pytest.mark.parametrize("flag", ["--lam", "--lam-linear"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli_refuses_a_non_finite_lam(flag, value, tmp_path):
    _one_line_error(_cli(flag, value, "--out", str(tmp_path / "o")), "must be finite numbers >= 0")


# 2. a splits file from another graph
def test_splits_of_another_graph_are_refused(cora, pubmed, tmp_path):
    cora_file = SEEDS_DIR / "localized_seeds_cora.p"
    with pytest.raises(ValueError, match="published sets of cora"):
        load_published_splits(cora_file, 19717)
    renamed = tmp_path / "sets.p"  # without the dataset in its name, the class counts give it away
    renamed.write_bytes(cora_file.read_bytes())
    with pytest.raises(ValueError, match="another dataset"):
        load_published_splits(renamed, data=pubmed)
    assert len(load_published_splits(cora_file, data=cora)) == 100


def test_cli_refuses_splits_of_another_graph_in_one_line(tmp_path):
    renamed = tmp_path / "sets.p"
    renamed.write_bytes((SEEDS_DIR / "localized_seeds_cora.p").read_bytes())
    result = _cli("--splits", "published", "--splits-path", str(renamed), "--out", str(tmp_path / "o"))
    _one_line_error(result, "another dataset")


# 3. --splits-path without --splits published
def test_splits_path_needs_splits_published(tmp_path):
    result = _cli("--splits-path", str(SEEDS_DIR / "localized_seeds_pubmed.p"), "--out", str(tmp_path / "o"))
    _one_line_error(result, "--splits-path is read only with --splits published")


# 4. directed graphs in the sampler
def test_sampler_refuses_a_directed_graph(cora):
    keep = cora.edge_index[0] < cora.edge_index[1]
    with pytest.raises(ValueError, match="undirected graph.*to_undirected"):
        LocalizedSampler(_copy(cora, edge_index=cora.edge_index[:, keep]))


# 5 and 16. sketch_dim 0 and negative
@pytest.mark.parametrize("sketch_dim", [0, -5, 2.5, "big"])
def test_sampler_refuses_a_bad_sketch_dim(cora, sketch_dim):
    with pytest.raises(ValueError, match="sketch_dim must be None"):
        LocalizedSampler(cora, sketch_dim=sketch_dim)


# 6. NaN features at evaluate() / predict() after a clean fit()
def test_nan_features_at_evaluate_and_predict_are_refused(cora, train):
    trainer = Trainer(GCN(cora.num_features, cora.num_classes), epochs=2).fit(cora, train)
    x = cora.x.clone()
    x[5, 3] = float("nan")
    bad = _copy(cora, x=x)
    with pytest.raises(ValueError, match="NaN or infinite values in 1 node"):
        trainer.evaluate(bad, torch.arange(100))
    with pytest.raises(ValueError, match="NaN or infinite"):
        trainer.predict(bad)


# 7. a training index repeated
def test_repeated_training_nodes_are_refused(cora, train):
    with pytest.raises(ValueError, match="repeats 99 node"):
        Trainer(GCN(cora.num_features, cora.num_classes), epochs=2).fit(cora, torch.cat([train, train[:1].repeat(99)]))


# 8 and 18. lr 0, epochs 2.5 and kin
@pytest.mark.parametrize("kwargs, error, message", [
    ({"lr": 0}, ValueError, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay must be a finite number >= 0"),
    ({"epochs": 2.5}, TypeError, "epochs must be an int >= 1"),
    ({"epochs": 0}, ValueError, "epochs must be an int >= 1"),
    ({"patience": 0}, ValueError, "patience must be an int >= 1"),
    ({"seed": -1}, ValueError, "seed must be an int in 0.."),
])
def test_trainer_refuses_bad_settings(cora, kwargs, error, message):
    with pytest.raises(error, match=message):
        Trainer(GCN(cora.num_features, cora.num_classes), **kwargs)


# 9. patience without val_idx
def test_patience_without_val_idx_is_refused(cora, train):
    with pytest.raises(ValueError, match="patience=5 .* no val_idx"):
        Trainer(GCN(cora.num_features, cora.num_classes), patience=5).fit(cora, train)


# 11, 12, 13, 15. a graph without x, integer x, float y, float edge_index
@pytest.mark.parametrize("change, error, message", [
    ({"x": None}, ValueError, "data.x is missing"),
    ({"x": "int"}, TypeError, "data.x = data.x.float()"),
    ({"y": "float"}, TypeError, "data.y = data.y.long()"),
    ({"edge_index": "float"}, TypeError, "data.edge_index = data.edge_index.long()"),
])
def test_graphs_with_wrong_dtypes_or_no_features_are_refused(cora, train, change, error, message):
    key, value = next(iter(change.items()))
    if value == "int":
        value = (cora.x > 0).long()
    elif value == "float":
        value = getattr(cora, key).float()
    data = _copy(cora, **{key: value})
    with pytest.raises(error, match=message):
        Trainer(GCN(cora.num_features, cora.num_classes), epochs=2).fit(data, train)


# 14. fewer output classes than the labels
def test_a_model_with_too_few_classes_is_refused(cora, train):
    with pytest.raises(ValueError, match="3 output classes but the labels have 7.*out_channels=7"):
        Trainer(GCN(cora.num_features, 3), epochs=2).fit(cora, train)
    with pytest.raises(ValueError, match="3 output classes"):
        ReplicaTrainer(lambda: GCN(cora.num_features, 3), epochs=2).fit(cora, [train], [0])


# 17. degree_biased_sample(per_class=0)
@pytest.mark.parametrize("per_class, error", [(0, ValueError), (2.5, TypeError)])
def test_degree_biased_sample_refuses_a_bad_per_class(cora, per_class, error):
    with pytest.raises(error, match="per_class must be an int >= 1"):
        degree_biased_sample(cora, per_class=per_class, seed=0)


# 19. ReplicaTrainer.fit with no sets
def test_replica_trainer_without_sets_says_so(cora):
    with pytest.raises(ValueError, match="train_sets is empty"):
        ReplicaTrainer(lambda: GCN(cora.num_features, cora.num_classes)).fit(cora, [], [])


# 20. a truncated processed/data.pt
def test_a_truncated_processed_file_is_rebuilt(tmp_path, monkeypatch):
    from srgnn.data import load_dataset

    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    first = load_dataset("cora")
    processed = next((tmp_path / "cache" / "planetoid" / "Cora" / "processed").glob("data.pt"))
    processed.write_bytes(processed.read_bytes()[:1000])
    again = load_dataset("cora")
    assert torch.equal(again.x, first.x) and torch.equal(again.edge_index, first.edge_index)


def test_processes_checking_one_cache_at_once_do_not_fail(tmp_path):
    # The study's workers load the dataset together; a fixed-name write probe let one worker
    # delete another's, which then failed as "not writable" (a CI failure of the study test).
    from concurrent.futures import ThreadPoolExecutor

    from srgnn.data import ensure_writable_dir

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: [ensure_writable_dir(tmp_path) for _ in range(200)], range(8)))
    assert list(tmp_path.iterdir()) == []  # no probe left behind


# 21. an unwritable SRGNN_CACHE
def test_an_unwritable_cache_is_named(tmp_path, monkeypatch):
    from srgnn.data import CacheNotWritableError, load_dataset

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SRGNN_CACHE", str(blocker / "cache"))
    with pytest.raises(CacheNotWritableError, match="set SRGNN_CACHE to a directory you can write"):
        load_dataset("cora")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# 22. a garbage or malicious splits file
@pytest.mark.parametrize("payload, message", [
    (b"\x80\x04garbage", "is not a valid splits file"),
    (pickle.dumps([[1, 2, _Exploit()]]), "refused to load global"),
])
def test_cli_refuses_a_garbage_or_malicious_splits_file_in_one_line(payload, message, tmp_path):
    bad = tmp_path / "localized_seeds_x.p"
    bad.write_bytes(payload)
    result = _cli("--splits", "published", "--splits-path", str(bad), "--out", str(tmp_path / "o"))
    _one_line_error(result, message)
    assert "pwned" not in result.stdout


# 23. --dataset cora with PubMed's splits
def test_cli_refuses_pubmeds_splits_on_cora_in_one_line(tmp_path):
    result = _cli("--dataset", "cora", "--splits", "published", "--splits-path",
                  str(SEEDS_DIR / "localized_seeds_pubmed.p"), "--out", str(tmp_path / "o"))
    _one_line_error(result, "published sets of pubmed")


# 24, 25, 26. --device tpu, --seed 2**70, --compare-sequential -1
@pytest.mark.parametrize("flags, message", [
    (["--device", "tpu"], "--device tpu"),
    (["--device", "meta"], "runs on the CPU or CUDA"),
    (["--seed", str(2 ** 70)], "--seed must be between 0 and"),
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--compare-sequential", "-1"], "--compare-sequential must be between 0"),
    (["--teleport", "1.5"], "--teleport must lie in (0, 1)"),
    (["--splits", "published", "--splits-path", str(SEEDS_DIR / "localized_seeds_cora.p"), "--teleport", "0.1"],
     "--teleport sets the sampler of --splits generated"),
])
def test_cli_refuses_bad_flags_before_loading_data(flags, message, tmp_path):
    _one_line_error(_cli(*flags, "--out", str(tmp_path / "o")), message)


# 27. --resume with a corrupt config.json
def test_resume_with_a_corrupt_config_is_one_line(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    _one_line_error(_cli(*QUICK, "--resume", "--out", str(out)), "is not valid JSON")


# 28 and 29. a truncated raw file; no data anywhere
def test_cli_reports_a_corrupt_raw_file_in_one_line(tmp_path):
    raw = tmp_path / "data" / "Cora" / "raw"
    raw.mkdir(parents=True)
    for f in (PLANETOID / "Cora" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    (raw / "ind.cora.x").write_bytes((raw / "ind.cora.x").read_bytes()[:100])
    env = {"SRGNN_DATA": str(tmp_path / "data"), "SRGNN_CACHE": str(tmp_path / "cache")}
    _one_line_error(_cli(*QUICK, "--out", str(tmp_path / "o"), env=env), "has SHA-256")


def test_cli_reports_missing_data_in_one_line(tmp_path):
    env = {"SRGNN_DATA": str(tmp_path / "nothing"), "SRGNN_CACHE": str(tmp_path / "cache")}
    _one_line_error(_cli(*QUICK, "--out", str(tmp_path / "o"), env=env), "Raw Cora files not found")


# 30. Ctrl-C
def test_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "o"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.pubmed_bias", "--dataset", "cora", "--repeats", "40",
                                "--methods", "gcn", "--epochs", "200", "--workers", "1", "--out", str(out)],
                               cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    log = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr and "finished runs are saved" in stderr
    assert log.read_text().count("\n") >= 2


# 31, 32, 33. results.csv numeric; resume with fewer methods; r with its n
def test_results_csv_is_numeric_and_a_narrower_resume_keeps_every_method(tmp_path):
    import csv

    out = tmp_path / "o"
    _cli(*QUICK, "--out", str(out), check=True)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == ["gcn", "sr-gcn"]
    result = json.loads((out / "results.json").read_text())
    gcn = result["methods"]["gcn"]
    assert float(rows[0]["micro_f1_mean"]) == pytest.approx(gcn["micro_f1_mean"])
    assert float(rows[0]["published"]) == pytest.approx(0.683) == gcn["published"]  # a fraction, like the scores
    assert rows[1]["published"] == "" and int(rows[1]["wins_vs_base"]) == result["methods"]["sr-gcn"]["wins_vs_base"]
    # 3 sets: too few for a Pearson r, and said so.
    assert result["f1_vs_cmd_n"] == 3 and result["f1_vs_cmd_pearson_r"] is None
    resumed = _cli("--dataset", "cora", "--repeats", "3", "--methods", "gcn", "--epochs", "5", "--resume",
                   "--out", str(out), check=True)
    assert "r not given, n = 3 sets" in resumed.stdout
    assert "also covers sr-gcn" in resumed.stdout
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"gcn", "sr-gcn"}


# Found beyond the 33, of the same kind: SWA settings and ShiftRobust's other numbers.
@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "SWAConfig.lr must be a finite number > 0"),
    ({"anneal_epochs": 2.5}, "SWAConfig.anneal_epochs must be an int"),
    ({"ema_decay": 1.0}, "SWAConfig.ema_decay must lie in"),
])
def test_swa_config_refuses_bad_settings(kwargs, message):
    from srgnn.swa import SWAConfig

    with pytest.raises((TypeError, ValueError), match=message):
        SWAConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"iid_size": 0}, "iid_size must be an int >= 1"),
    ({"moments": 0}, "moments must be an int >= 1"),
    ({"kmm_lower": float("nan")}, "kmm_lower must be a finite number"),
    ({"kmm_teleport": 1.0}, "kmm_teleport must lie in"),
])
def test_shift_robust_refuses_bad_settings(cora, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShiftRobust(GCN(cora.num_features, cora.num_classes), **kwargs)
