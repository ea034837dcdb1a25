"""Inputs a new user hit (issue 38): a crafted file must never run code, every feature and
label dtype trains or is refused with the fix, and nothing answers silently wrong. Each test
is named after the numbered item of the issue it guards."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from tests.helpers import copy_data as _copy, run_main
from srgnn import ShiftRobust, Trainer
from srgnn.batched import ReplicaTrainer
from srgnn.data import UnsafeFileError, load_graph
from srgnn.estimation.disagreement import estimate_error
from srgnn.graph import StaleGraphError
from srgnn.training.loop import NonFiniteLossError
from srgnn.models import APPNP, DGI, GAT, GCN, MLP, SGC, GraphSAGE
from srgnn.sampling import LocalizedSampler, PushSampler
from srgnn.training.swa import SWAConfig
from srgnn.synthetic import synthetic_graph

FAST = {"epochs": 3}


@pytest.fixture(scope="module")
def graph() -> Data:
    data = synthetic_graph(300, 3, num_features=8, seed=0)
    data.num_classes = 3
    return data


@pytest.fixture(scope="module")
def train(graph) -> torch.Tensor:
    return torch.cat([(graph.y == c).nonzero().view(-1)[:10] for c in range(3)])


def _others(data, train):
    mask = torch.ones(data.num_nodes, dtype=torch.bool)
    mask[train] = False
    return mask.nonzero().view(-1)


class _RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _one_line(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


# Security: a crafted graph file must not run code.
def test_a_crafted_graph_file_is_refused_and_runs_nothing(graph, train, tmp_path):
    marker = tmp_path / "PWNED"
    crafted, labels = tmp_path / "graph.pt", tmp_path / "train.pt"
    torch.save(_RunsCode(marker), crafted)
    torch.save(train, labels)
    result = run_main("srgnn.estimation.diagnostics", "--data", str(crafted), "--train", str(labels), check=False)
    _one_line(result, "which srgnn does not unpickle")
    with pytest.raises(UnsafeFileError):
        load_graph(crafted)
    # The same object inside a Data, or as a splits/held-out/train file, is refused too.
    torch.save(_copy(graph, note=_RunsCode(marker)), crafted)
    with pytest.raises(UnsafeFileError):
        load_graph(crafted)
    torch.save(_RunsCode(marker), labels)
    torch.save(graph, tmp_path / "plain.pt")
    _one_line(run_main("srgnn.estimation.diagnostics", "--data", str(tmp_path / "plain.pt"), "--train", str(labels),
                       check=False), "which srgnn does not unpickle")
    assert not marker.exists()
    loaded = load_graph(tmp_path / "plain.pt")  # a plain saved Data loads
    assert torch.equal(loaded.x, graph.x) and torch.equal(loaded.edge_index, graph.edge_index)


def test_a_crafted_processed_file_in_the_cache_is_rebuilt_not_unpickled(tmp_path, monkeypatch):
    from srgnn.data import load_dataset

    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    load_dataset("cora")
    processed = tmp_path / "cache" / "planetoid" / "Cora" / "processed" / "data.pt"
    marker = tmp_path / "PWNED"
    torch.save(_RunsCode(marker), processed)
    data = load_dataset("cora")
    assert not marker.exists() and data.num_nodes == 2708


def test_a_graph_file_that_holds_no_data_and_a_dict_as_labels_are_one_line(graph, train, tmp_path):
    torch.save(graph, tmp_path / "g.pt")
    torch.save({"train": train}, tmp_path / "t.pt")
    _one_line(run_main("srgnn.estimation.diagnostics", "--data", str(tmp_path / "g.pt"), "--train", str(tmp_path / "t.pt"),
                       check=False), "holds a dict with keys ['train']")
    torch.save(train, tmp_path / "t.pt")
    _one_line(run_main("srgnn.estimation.diagnostics", "--data", str(tmp_path / "t.pt"), "--train", str(tmp_path / "t.pt"),
                       check=False), "not a torch_geometric Data")


# 1. Feature dtypes train as float32, as numpy's float64 arrives.
@pytest.mark.parametrize("convert", [torch.Tensor.double, torch.Tensor.half, torch.Tensor.bfloat16,
                                     torch.Tensor.to_sparse], ids=["float64", "float16", "bfloat16", "sparse"])
def test_features_of_any_float_dtype_or_layout_train(graph, train, convert):
    reference = Trainer(GCN(8, 3), **FAST).fit(graph, train).logits(graph)
    data = _copy(graph, x=convert(graph.x))
    logits = Trainer(GCN(8, 3), **FAST).fit(data, train).logits(data)
    exact = convert in (torch.Tensor.double, torch.Tensor.to_sparse)
    assert torch.allclose(logits, reference, atol=1e-5 if exact else 0.1)
    assert data.x.dtype == convert(graph.x).dtype  # the user's object is left as it was


def test_the_diagnostics_cli_reads_float64_features(graph, train, tmp_path):
    torch.save(_copy(graph, x=graph.x.double()), tmp_path / "g.pt")
    torch.save(train, tmp_path / "t.pt")
    out = run_main("srgnn.estimation.diagnostics", "--data", str(tmp_path / "g.pt"), "--train", str(tmp_path / "t.pt"),
                   "--epochs", "3", "--reference", "5", "--json").stdout
    report = json.loads(out)
    assert report["n_labelled"] == 30 and report["hidden_model"] == "GCN" and 0 <= report["accuracy"]["value"] <= 1


# 2. What is not a model is refused where it is given; a module whose hidden layer cannot be found asks for it.
@pytest.mark.parametrize("model, message", [
    (lambda: None, "got None"),
    (lambda: GCN, "got the class GCN itself"),
])
def test_trainer_refuses_what_is_not_a_model(model, message):
    with pytest.raises(TypeError, match=f"Trainer takes a model.*{message}"):
        Trainer(model())


def test_a_module_without_a_known_hidden_layer_asks_for_its_name():
    with pytest.raises(ValueError, match="Name the submodule of Linear whose input is its last hidden layer"):
        Trainer(nn.Linear(8, 3))


def test_shift_robust_and_replica_trainer_refuse_the_wrong_model():
    with pytest.raises(TypeError, match="already shift-robust"):
        ShiftRobust(ShiftRobust(GCN(8, 3)))
    with pytest.raises(ValueError, match="Name the submodule of Linear"):
        ShiftRobust(nn.Linear(8, 3))
    with pytest.raises(TypeError, match="takes a factory.*lambda: GCN"):
        ReplicaTrainer(GCN(8, 3))


def test_a_study_plugin_that_returns_no_srgnn_model_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text("import torch\ndef linear(data):\n    return torch.nn.Linear(3, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_main("benchmarks.pubmed_bias", "--dataset", "cora", "--repeats", "1", "--epochs", "2", "--methods",
                      "my_models:linear", "--out", str(tmp_path / "o"), check=False)
    _one_line(result, "Name the submodule of Linear whose input is its last hidden layer")


# 3. Labels: unlabelled nodes (-1) at evaluation, int32 labels.
def test_evaluating_on_unlabelled_nodes_names_them_and_int32_labels_train(graph, train):
    y = graph.y.clone()
    test = _others(graph, train)
    y[test[:4]] = -1
    data = _copy(graph, y=y)
    trainer = Trainer(GCN(8, 3), **FAST).fit(data, train)
    with pytest.raises(ValueError, match="4 of the .* nodes to evaluate have no valid label"):
        trainer.evaluate(data, test)
    assert trainer.evaluate(data, test[4:])["micro_f1"] >= 0
    int32 = _copy(graph, y=graph.y.int())
    scores = Trainer(GCN(8, 3), **FAST).fit(int32, train).evaluate(int32, test)
    assert scores == Trainer(GCN(8, 3), **FAST).fit(graph, train).evaluate(graph, test)


# 4. Every model's constructor checks its arguments.
@pytest.mark.parametrize("build, message", [
    (lambda: GCN(8, 3, hidden_channels=0), "hidden_channels must be an int >= 1"),
    (lambda: GCN(8, 3, dropout=1.0), "dropout must be in \\[0, 1\\)"),
    (lambda: GCN(0, 3), "in_channels must be an int >= 1"),
    (lambda: APPNP(8, 3, alpha=1.5), "alpha is APPNP's teleport probability"),
    (lambda: APPNP(8, 3, k=0), "k must be an int >= 1"),
    (lambda: GAT(8, 3, hidden_channels=4, heads=8), "hidden_channels >= heads"),
    (lambda: GAT(8, 3, dropout=-0.1), "dropout must be a finite number >= 0"),
    (lambda: GraphSAGE(8, 0), "out_channels must be an int >= 1"),
    (lambda: MLP(8, 3, dropout=1.0), "dropout must be in \\[0, 1\\)"),
    (lambda: SGC(8, 3, k=-1), "k must be an int >= 0"),
    (lambda: DGI(8, 3, hidden_channels=0), "hidden_channels must be an int >= 1"),
    (lambda: DGI(8, 3, lr=0.0), "lr must be a finite number > 0"),
])
def test_model_constructors_refuse_bad_arguments(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


# 5. Wrong containers: a PyG dataset, a networkx graph.
def test_a_dataset_or_a_networkx_graph_is_refused_with_the_conversion(train):
    import networkx as nx
    from torch_geometric.datasets import KarateClub

    with pytest.raises(TypeError, match=r"KarateClub.*dataset\[0\]"):
        Trainer(GCN(34, 4)).fit(KarateClub(), torch.arange(4))
    with pytest.raises(TypeError, match="networkx.*from_networkx"):
        LocalizedSampler(nx.karate_club_graph())
    karate = KarateClub()[0]  # as the message says, dataset[0] trains
    labelled = torch.cat([(karate.y == c).nonzero().view(-1)[:2] for c in range(4)])
    assert Trainer(GCN(34, 4), **FAST).fit(karate, labelled).predict(karate).shape == (34,)


# 6. Other inputs.
def test_features_that_require_grad_train(graph, train):
    data = _copy(graph, x=graph.x.clone().requires_grad_())
    assert Trainer(GCN(8, 3), **FAST).fit(data, train).predict(data).shape == (300,)


def test_a_graph_on_the_meta_device_an_mps_device_and_a_huge_seed_are_refused(graph, train):
    with pytest.raises(ValueError, match="'meta' device"):
        Trainer(GCN(8, 3)).fit(_copy(graph).to("meta"), train)  # Data.to works in place
    with pytest.raises(ValueError, match="runs on the CPU or CUDA"):
        Trainer(GCN(8, 3), device="mps")
    for call in (lambda: Trainer(GCN(8, 3), seed=2 ** 70), lambda: LocalizedSampler(graph).sample(2 ** 70),
                 lambda: ReplicaTrainer(lambda: GCN(8, 3)).fit(graph, [train], [2 ** 70])):
        with pytest.raises(ValueError, match="seed.* must be an int in 0..9223372036854775807"):
            call()


def test_swa_that_is_not_a_config_and_a_method_for_logits_are_refused(graph, train):
    with pytest.raises(TypeError, match="swa must be None or an srgnn.training.swa.SWAConfig"):
        Trainer(GCN(8, 3), swa="yes")
    assert Trainer(GCN(8, 3), swa=SWAConfig()).swa is not None
    trainer = Trainer(GCN(8, 3), **FAST).fit(graph, train)
    with pytest.raises(TypeError, match=r"call it first \(e.g. trainer.logits\(data\)"):
        estimate_error(trainer.logits, trainer.logits, method="gde")
    from srgnn.estimation.acquisition import suggest_labels

    with pytest.raises(TypeError, match="logits must be a tensor"):
        suggest_labels(graph, train, 5, logits=trainer.logits)


def test_resume_with_a_non_numeric_score_is_one_line(tmp_path):
    out = tmp_path / "o"
    quick = ("--dataset", "cora", "--repeats", "1", "--methods", "mlp", "--epochs", "2", "--iid-repeats", "0")
    run_main("benchmarks.pubmed_bias", *quick, "--out", str(out))
    log = out / "results.jsonl"
    record = json.loads(log.read_text().splitlines()[0])
    log.write_text(json.dumps({**record, "micro_f1": "abc"}) + "\n")
    _one_line(run_main("benchmarks.pubmed_bias", *quick, "--resume", "--out", str(out), check=False),
              "line 1: micro_f1 is 'abc', not a finite number")


# 7. A Data whose tensors are reassigned after fit.
@pytest.mark.parametrize("field", ["x", "edge_index"])
def test_a_reassigned_graph_is_refused_not_scored_from_the_old_one(graph, train, field):
    data = _copy(graph)
    trainer = Trainer(GCN(8, 3), **FAST).fit(data, train)
    setattr(data, field, torch.zeros_like(data.x) if field == "x" else torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(StaleGraphError, match=f"data.{field} .* was reassigned"):
        trainer.evaluate(data, _others(data, train))


# 8. Penalties that are NaN, not tensors, or not scalars.
def test_a_nan_penalty_stops_training_naming_the_epoch_and_the_term(graph, train):
    def nan_after_two(h_train, h_iid, calls=[]):  # noqa: B006 - counts the calls
        calls.append(1)
        return (h_train.mean() - h_iid.mean()) * (float("nan") if len(calls) > 2 else 1.0)

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, in lam \* penalty .*cross-entropy = [0-9.]+"):
        Trainer(ShiftRobust(GCN(8, 3), nan_after_two), epochs=10).fit(graph, train)
    with pytest.raises(NonFiniteLossError, match="epoch 0"):  # a constant NaN is no longer ignored
        Trainer(ShiftRobust(GCN(8, 3), lambda a, b: torch.tensor(float("nan"))), **FAST).fit(graph, train)


@pytest.mark.parametrize("penalty, message", [(lambda a, b: 0.5, "returned 0.5"),
                                              (lambda a, b: (a.mean(0) - b.mean(0)) ** 2, "shape \\(16,\\)")])
def test_a_penalty_that_is_no_scalar_tensor_is_refused(graph, train, penalty, message):
    with pytest.raises(TypeError, match=f"must return a differentiable scalar tensor.*{message}"):
        Trainer(ShiftRobust(GCN(8, 3, hidden_channels=16), penalty), **FAST).fit(graph, train)


# 9. Early stopping on training nodes, or on none.
def test_early_stopping_on_training_nodes_or_no_nodes_is_refused(graph, train):
    trainer = Trainer(GCN(8, 3), patience=5, **FAST)
    with pytest.raises(ValueError, match="val_idx shares 30 node"):
        trainer.fit(graph, train, val_idx=train)
    with pytest.raises(ValueError, match="val_idx is empty"):
        trainer.fit(graph, train, val_idx=torch.empty(0, dtype=torch.long))


# 10. Estimates that cannot be right.
def test_estimates_refuse_labels_outside_the_classes_and_an_ensemble_that_always_agrees(graph, train):
    logits = torch.randn(300, 3)
    nodes = _others(graph, train)[:20]
    with pytest.raises(ValueError, match="held_out labels must be classes 0..2"):
        estimate_error(logits, method="atc", held_out=(nodes, torch.full((20,), 7)))
    with pytest.raises(TypeError, match="held_out must be a pair"):
        estimate_error(logits, method="atc", held_out=nodes)
    with pytest.raises(ValueError, match="agree on every target node"):
        estimate_error(logits, logits.clone(), logits * 2, method="gde", n_bootstrap=10)


def test_the_cli_refuses_a_held_out_file_of_ids_alone(graph, train, tmp_path):
    torch.save(graph, tmp_path / "g.pt")
    torch.save(train, tmp_path / "t.pt")
    torch.save(_others(graph, train)[:20], tmp_path / "h.pt")
    _one_line(run_main("srgnn.estimation.diagnostics", "--data", str(tmp_path / "g.pt"), "--train", str(tmp_path / "t.pt"),
                       "--method", "atc", "--held-out", str(tmp_path / "h.pt"), check=False),
              "held_out must be a pair (node ids [m], labels [m])")


# 11. Samplers on graphs they cannot localize in.
def test_samplers_refuse_an_edgeless_or_directed_graph(graph):
    with pytest.raises(ValueError, match="needs a graph with edges"):
        LocalizedSampler(_copy(graph, edge_index=torch.empty(2, 0, dtype=torch.long)), per_class=5)
    directed = graph.edge_index[:, graph.edge_index[0] < graph.edge_index[1]]
    with pytest.raises(ValueError, match="PushSampler needs an undirected graph"):
        PushSampler(_copy(graph, edge_index=directed), ratio=0.1)


# 12. The study CLI's output folder, and one-line errors everywhere.
def test_an_empty_out_and_a_second_study_on_one_out_are_refused(tmp_path):
    from benchmarks.runlog import RunLog

    _one_line(run_main("benchmarks.pubmed_bias", "--out", "", check=False), "the output folder is empty")
    out = tmp_path / "o"
    out.mkdir()
    first = RunLog(out / "results.jsonl", ("method", "split", "index"))  # a study running on --out
    try:
        _one_line(run_main("benchmarks.pubmed_bias", "--dataset", "cora", "--repeats", "1", "--methods", "mlp",
                           "--out", str(out), check=False), "another study is writing to")
    finally:
        first.close()
    assert not (out / "config.json").exists()  # the refused study wrote nothing


@pytest.mark.parametrize("module, flags, message", [
    ("srgnn.estimation.diagnostics", ["--dataset", "cora"], "one of the arguments --train --published-set is required"),
    ("benchmarks.pubmed_bias", ["--repeats", "0"], "--repeats must be >= 1"),
    ("benchmarks.pubmed_bias", ["--epochs", "x"], "invalid int value"),
])
def test_cli_errors_are_one_line_without_the_usage_block(module, flags, message, tmp_path):
    _one_line(run_main(module, *flags, "--out", str(tmp_path / "o"), check=False) if module.startswith("bench")
              else run_main(module, *flags, check=False), message)


# Of the same kinds, found at other public boundaries.
def test_float_nodes_nan_kmm_inputs_and_bad_held_out_labels_are_refused_before_any_work(graph, train):
    from srgnn.estimation.diagnostics import bias_report
    from srgnn.robustness.shift import kmm_weights

    with pytest.raises(TypeError, match="nodes must hold integer node indices"):
        estimate_error(torch.randn(300, 3), torch.randn(300, 3), nodes=torch.rand(5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        kmm_weights(torch.full((5, 3), float("nan")), torch.randn(6, 3), torch.zeros(5, dtype=torch.long))
    held = _others(graph, train)[:10]
    with pytest.raises(ValueError, match="held_out labels must be classes 0..2 of the graph"):
        bias_report(graph, train, method="atc", held_out=(held, torch.full((10,), 9)), epochs=10 ** 6)
