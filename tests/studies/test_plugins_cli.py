"""Your own model and penalty (``tests.unit.test_plugins``) through the study CLI: named as
``package.module:name``, built in the study's worker processes."""
import json

import pytest

from tests.helpers import run_main


def test_the_study_cli_trains_your_model_and_penalty(tmp_path):
    flags = ["--dataset", "cora", "--repeats", "2", "--iid-repeats", "0", "--epochs", "10", "--workers", "2",
             "--threads", "1", "--regularizer", "tests.unit.test_plugins:linear_mmd"]
    methods = "tests.unit.test_plugins:gin,sr-tests.unit.test_plugins:gin,sr-gcn"
    run_main("benchmarks.pubmed_bias", *flags, "--methods", methods, "--out", str(tmp_path / "one"))
    # a penalty with parameters: each model builds and trains its own discriminator
    run_main("benchmarks.pubmed_bias", *flags[:-1], "tests.unit.test_plugins:LogisticDiscriminator", "--methods", "sr-gcn",
             "--out", str(tmp_path / "discriminator"))
    discriminated = [json.loads(line) for line in (tmp_path / "discriminator" / "results.jsonl").read_text().splitlines()]
    assert {r["index"] for r in discriminated} == {0, 1}
    with_mmd = {(r["method"], r["index"]): r["micro_f1"] for r in map(json.loads, (tmp_path / "one" / "results.jsonl")
                                                                        .read_text().splitlines())}
    assert all(r["micro_f1"] != with_mmd["sr-gcn", r["index"]] for r in discriminated)  # another penalty trained
    run_main("benchmarks.pubmed_bias", *flags, "--methods", methods, "--batch", "2", "--out", str(tmp_path / "batched"))
    scores = {}
    for name in ("one", "batched"):
        records = [json.loads(line) for line in (tmp_path / name / "results.jsonl").read_text().splitlines()]
        scores[name] = {(r["method"], r["index"]): r["micro_f1"] for r in records}
    assert set(scores["one"]) == {(m, i) for m in methods.split(",") for i in (0, 1)}
    for key, micro in scores["one"].items():  # batched SR-GCN with the plug-in penalty equals its runs alone
        assert scores["batched"][key] == pytest.approx(micro, abs=1e-3), key
    result = json.loads((tmp_path / "one" / "results.json").read_text())
    assert result["config"]["regularizer"] == "tests.unit.test_plugins:linear_mmd"
    assert result["methods"]["sr-tests.unit.test_plugins:gin"]["n_runs"] == 2


@pytest.mark.parametrize("flag, value, message", [
    ("--methods", "tests.no_such_module:gin", "names nothing importable"),
    ("--methods", "tests.unit.test_plugins:no_such_factory", "names nothing importable"),
    ("--regularizer", "tests.unit.test_plugins:GIN.nothing", "names nothing importable"),
    ("--regularizer", "kmm", "choose cmd, mmd or package.module:name"),
])
def test_the_study_cli_refuses_a_plugin_it_cannot_load(tmp_path, flag, value, message):
    result = run_main("benchmarks.pubmed_bias", "--dataset", "cora", flag, value, "--out", str(tmp_path / "o"),
                        check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
