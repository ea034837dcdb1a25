"""Bad inputs at the library's public boundary, by component: each is refused with a message
that names the problem and the fix, never a silent wrong result or a crash deep in torch."""
from __future__ import annotations

import pytest
import torch

from srgnn import ShiftRobust, Trainer
from srgnn.batched import ReplicaTrainer
from srgnn.models import GCN
from srgnn.sampling import LocalizedSampler, degree_biased_sample, load_published_splits
from tests.helpers import SEEDS_DIR, copy_data as _copy


@pytest.fixture(scope="module")
def train(cora):
    return LocalizedSampler(cora).sample(0)


# ShiftRobust's settings

@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -1.0])
def test_shift_robust_refuses_a_non_finite_or_negative_lam(cora, lam):
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        ShiftRobust(GCN(cora.num_features, cora.num_classes), lam=lam)


@pytest.mark.parametrize("kwargs, message", [
    ({"iid_size": 0}, "iid_size must be an int >= 1"),
    ({"moments": 0}, "moments must be an int >= 1"),
    ({"kmm_lower": float("nan")}, "kmm_lower must be a finite number"),
    ({"kmm_teleport": 1.0}, "kmm_teleport must lie in"),
])
def test_shift_robust_refuses_bad_settings(cora, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShiftRobust(GCN(cora.num_features, cora.num_classes), **kwargs)


# Trainer and ReplicaTrainer: settings, training sets, models

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


def test_patience_without_val_idx_is_refused(cora, train):
    with pytest.raises(ValueError, match="patience=5 .* no val_idx"):
        Trainer(GCN(cora.num_features, cora.num_classes), patience=5).fit(cora, train)


def test_repeated_training_nodes_are_refused(cora, train):
    with pytest.raises(ValueError, match="repeats 99 node"):
        Trainer(GCN(cora.num_features, cora.num_classes), epochs=2).fit(cora, torch.cat([train, train[:1].repeat(99)]))


def test_a_model_with_too_few_classes_is_refused(cora, train):
    with pytest.raises(ValueError, match="3 output classes but the labels have 7.*out_channels=7"):
        Trainer(GCN(cora.num_features, 3), epochs=2).fit(cora, train)
    with pytest.raises(ValueError, match="3 output classes"):
        ReplicaTrainer(lambda: GCN(cora.num_features, 3), epochs=2).fit(cora, [train], [0])


def test_nan_features_at_evaluate_and_predict_are_refused(cora, train):
    trainer = Trainer(GCN(cora.num_features, cora.num_classes), epochs=2).fit(cora, train)
    x = cora.x.clone()
    x[5, 3] = float("nan")
    bad = _copy(cora, x=x)
    with pytest.raises(ValueError, match="NaN or infinite values in 1 node"):
        trainer.evaluate(bad, torch.arange(100))
    with pytest.raises(ValueError, match="NaN or infinite"):
        trainer.predict(bad)


def test_replica_trainer_without_sets_says_so(cora):
    with pytest.raises(ValueError, match="train_sets is empty"):
        ReplicaTrainer(lambda: GCN(cora.num_features, cora.num_classes)).fit(cora, [], [])


# Graphs: dtypes and features

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


def test_a_graph_built_from_a_data_object_names_from_data(cora):
    from srgnn import Graph
    with pytest.raises(TypeError, match=r"Graph.from_data\(data\)"):
        Graph(cora)


# Samplers and published splits

def test_sampler_refuses_a_directed_graph(cora):
    keep = cora.edge_index[0] < cora.edge_index[1]
    with pytest.raises(ValueError, match="undirected graph.*to_undirected"):
        LocalizedSampler(_copy(cora, edge_index=cora.edge_index[:, keep]))


@pytest.mark.parametrize("sketch_dim", [0, -5, 2.5, "big"])
def test_sampler_refuses_a_bad_sketch_dim(cora, sketch_dim):
    with pytest.raises(ValueError, match="sketch_dim must be None"):
        LocalizedSampler(cora, sketch_dim=sketch_dim)


@pytest.mark.parametrize("per_class, error", [(0, ValueError), (2.5, TypeError)])
def test_degree_biased_sample_refuses_a_bad_per_class(cora, per_class, error):
    with pytest.raises(error, match="per_class must be an int >= 1"):
        degree_biased_sample(cora, per_class=per_class, seed=0)


def test_splits_of_another_graph_are_refused(cora, pubmed, tmp_path):
    cora_file = SEEDS_DIR / "localized_seeds_cora.p"
    with pytest.raises(ValueError, match="published sets of cora"):
        load_published_splits(cora_file, 19717)
    renamed = tmp_path / "sets.p"  # without the dataset in its name, the class counts give it away
    renamed.write_bytes(cora_file.read_bytes())
    with pytest.raises(ValueError, match="another dataset"):
        load_published_splits(renamed, data=pubmed)
    assert len(load_published_splits(cora_file, data=cora)) == 100


# The data cache

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


def test_an_unwritable_cache_is_named(tmp_path, monkeypatch):
    from srgnn.data import CacheNotWritableError, load_dataset

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SRGNN_CACHE", str(blocker / "cache"))
    with pytest.raises(CacheNotWritableError, match="set SRGNN_CACHE to a directory you can write"):
        load_dataset("cora")


# SWA's settings

@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "SWAConfig.lr must be a finite number > 0"),
    ({"anneal_epochs": 2.5}, "SWAConfig.anneal_epochs must be an int"),
    ({"ema_decay": 1.0}, "SWAConfig.ema_decay must lie in"),
])
def test_swa_config_refuses_bad_settings(kwargs, message):
    from srgnn.training.swa import SWAConfig

    with pytest.raises((TypeError, ValueError), match=message):
        SWAConfig(**kwargs)
