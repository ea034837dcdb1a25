"""Bad input to the study command line: each is refused in one line that names the problem
and the fix (exit status 2), with no traceback, before any run where it can be."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import PLANETOID, REPO, SEEDS_DIR, run_main

QUICK = ["--dataset", "cora", "--repeats", "3", "--methods", "gcn,sr-gcn", "--epochs", "5"]


def _cli(*args, env=None, check=False):
    return run_main("benchmarks.pubmed_bias", *args, env=env, check=check)


def _one_line_error(result, message: str, status: int = 2) -> None:
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


# Flags, refused before any data is read

@pytest.mark.parametrize("flag", ["--lam", "--lam-linear"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli_refuses_a_non_finite_lam(flag, value, tmp_path):
    _one_line_error(_cli(flag, value, "--out", str(tmp_path / "o")), "must be finite numbers >= 0")


def test_splits_path_needs_splits_published(tmp_path):
    result = _cli("--splits-path", str(SEEDS_DIR / "localized_seeds_pubmed.p"), "--out", str(tmp_path / "o"))
    _one_line_error(result, "--splits-path is read only with --splits published")


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


# Splits files

class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


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


def test_cli_refuses_splits_of_another_graph_in_one_line(tmp_path):
    renamed = tmp_path / "sets.p"
    renamed.write_bytes((SEEDS_DIR / "localized_seeds_cora.p").read_bytes())
    result = _cli("--splits", "published", "--splits-path", str(renamed), "--out", str(tmp_path / "o"))
    _one_line_error(result, "another dataset")


def test_cli_refuses_pubmeds_splits_on_cora_in_one_line(tmp_path):
    result = _cli("--dataset", "cora", "--splits", "published", "--splits-path",
                  str(SEEDS_DIR / "localized_seeds_pubmed.p"), "--out", str(tmp_path / "o"))
    _one_line_error(result, "published sets of pubmed")


# Data files

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


# Resuming and interrupting

def test_resume_with_a_corrupt_config_is_one_line(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    _one_line_error(_cli(*QUICK, "--resume", "--out", str(out)), "is not valid JSON")


def test_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "o"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.pubmed_bias", "--dataset", "cora", "--repeats", "40",
                                "--methods", "gcn", "--epochs", "200", "--workers", "1", "--out", str(out)],
                               cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True,
                               # A suite started in the background inherits SIGINT ignored, and so would the study.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr and "finished runs are saved" in stderr
    assert log.read_text().count("\n") >= 2


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


def test_published_sets_are_found_in_srgnn_data_or_the_seeds_dir_named(tmp_path):
    # Without --seeds-dir the sets come from $SRGNN_DATA; a folder without them is named.
    missing = run_main("benchmarks.sampler_shift", "--datasets", "cora", "--seeds-dir", str(tmp_path), check=False)
    _one_line_error(missing, f"no published sets for 'cora' in {tmp_path}")
    nowhere = run_main("benchmarks.sampler_shift", "--datasets", "cora", env={**os.environ, "SRGNN_DATA": str(tmp_path)},
                       check=False)
    _one_line_error(nowhere, "set SRGNN_DATA to the folder that holds srgnn_localized_seeds/")


def test_the_stated_sample_methods_are_refused_on_published_sets(tmp_path):
    result = _cli("--dataset", "citeseer", "--splits", "published", "--splits-path",
                  str(SEEDS_DIR / "localized_seeds_citeseer.p"), "--methods", "gcn,mix-recommended",
                  "--out", str(tmp_path / "o"))
    _one_line_error(result, "--methods mix-recommended read a sample drawn from the validation nodes")
