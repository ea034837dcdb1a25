import pytest
import torch

from srgnn import ShiftRobust, Trainer
from srgnn.batched import LockstepTrainer, ReplicaTrainer
from srgnn.models import APPNP, GCN, MLP, GraphSAGE
from srgnn.sampling import iid_sample

BUILDERS = {
    "gcn": lambda d: GCN(d.num_features, d.num_classes),
    "sr-gcn-cmd": lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd"),
    "sr-sage-mmd": lambda d: ShiftRobust(GraphSAGE(d.num_features, d.num_classes), "mmd"),
    "sr-mlp-kmm": lambda d: ShiftRobust(MLP(d.num_features, d.num_classes), "cmd", instance_weights="kmm"),
    # a penalty strong enough that the cap acts at every step, per replica
    "sr-appnp-capped": lambda d: ShiftRobust(APPNP(d.num_features, d.num_classes), lam=100.0, max_pull=0.5),
    # weights from each replica's own labels and IID logits
    "sr-gcn-label-shift": lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd", label_shift=True),
    "sr-gcn-conditional": lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd", conditional=True),
}


# Few epochs: rounding that differs with the batch's shapes (a dense bmm's blocking) can meet a
# gradient that is zero up to rounding, which Adam turns into a full step (SR-MLP with KMM
# weights on Cora: 1e-8 apart after 5 epochs, 3e-4 after 20); a wrong mask shows at epoch one.
@pytest.mark.parametrize("name", BUILDERS)
def test_a_batch_of_replicas_equals_each_replica_alone(cora, cora_published, name):
    build, sets, seeds = (lambda: BUILDERS[name](cora)), cora_published[:3], [5, 6, 7]
    batched = ReplicaTrainer(build, epochs=5).fit(cora, sets, seeds).logits(cora)
    for train, seed, logits in zip(sets, seeds, batched):
        alone = ReplicaTrainer(build, epochs=5).fit(cora, [train], [seed]).logits(cora)[0]
        torch.testing.assert_close(logits, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


@pytest.mark.parametrize("name", BUILDERS)
def test_each_replica_of_a_batch_is_the_trainers_run_with_its_seed(cora, cora_published, name):
    build, sets, seeds = (lambda: BUILDERS[name](cora)), cora_published[:3], [5, 6, 7]
    batched = ReplicaTrainer(build, epochs=5).fit(cora, sets, seeds).logits(cora)
    for train, seed, logits in zip(sets, seeds, batched):
        sequential = Trainer(build(), epochs=5, seed=seed).fit(cora, train).logits(cora)
        torch.testing.assert_close(logits, sequential, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_each_replica_is_the_trainers_run_there(cora, cora_published):
    # Both draw their masks from the GPU's generator after the same set-up.
    build, sets, seeds = (lambda: BUILDERS["sr-gcn-cmd"](cora)), cora_published[:2], [5, 6]
    batched = ReplicaTrainer(build, epochs=5, device="cuda").fit(cora, sets, seeds).logits(cora)
    for train, seed, logits in zip(sets, seeds, batched):
        sequential = Trainer(build(), epochs=5, seed=seed, device="cuda").fit(cora, train).logits(cora)
        torch.testing.assert_close(logits, sequential, rtol=1e-4, atol=1e-4)


def test_replicas_score_what_the_trainer_scores(cora, cora_published):
    build, sets, seeds = (lambda: GCN(cora.num_features, 7)), cora_published[:4], [0, 1, 2, 3]
    test = torch.ones(cora.num_nodes, dtype=torch.bool)
    test[torch.cat(sets)] = False
    batched = [s["micro_f1"] for s in ReplicaTrainer(build, epochs=200).fit(cora, sets, seeds).evaluate(cora, [test] * 4)]
    sequential = [Trainer(build(), epochs=200, seed=s).fit(cora, t).evaluate(cora, test)["micro_f1"]
                  for t, s in zip(sets, seeds)]
    assert batched == pytest.approx(sequential, abs=1e-3)


def test_models_it_cannot_batch_train_one_by_one_and_mismatched_seeds_are_refused(cora, cora_published):
    trainer = ReplicaTrainer(lambda: APPNP(cora.num_features, 7), epochs=3).fit(cora, cora_published[:2], [0, 1])
    assert not trainer.batched_ and "APPNP does not declare replica_batchable" in trainer.unbatched_reason_
    alone = Trainer(APPNP(cora.num_features, 7), epochs=3, seed=1).fit(cora, cora_published[1])
    assert torch.equal(trainer.logits(cora)[1], alone.logits(cora))
    with pytest.raises(ValueError, match="one seed per training set"):
        ReplicaTrainer(lambda: GCN(cora.num_features, 7), epochs=1).fit(cora, cora_published[:2], [0])


def _appnp_variants(data):
    """A study's three APPNP runs of one seed: plain on a biased set and on an IID set, SR-APPNP."""
    return [APPNP(data.num_features, data.num_classes), APPNP(data.num_features, data.num_classes),
            ShiftRobust(APPNP(data.num_features, data.num_classes), "cmd", lam=0.1)]


@pytest.mark.parametrize("dataset", ["cora", "citeseer"])
def test_lockstep_models_are_the_trainers_runs_with_their_shared_seed(request, monkeypatch, dataset):
    data = request.getfixturevalue(dataset)
    biased = request.getfixturevalue("cora_published")[0] if dataset == "cora" else \
        torch.cat([torch.nonzero(data.y == c).view(-1)[:20] for c in range(data.num_classes)])
    sets = [biased, iid_sample(data, biased.numel(), seed=3, exclude=biased), biased]
    inner_runs = []  # Trainer runs started inside LockstepTrainer.fit
    monkeypatch.setattr("srgnn.batched.replicas.Trainer",
                        lambda *args, **kwargs: inner_runs.append(1) or Trainer(*args, **kwargs))
    lockstep = LockstepTrainer(_appnp_variants(data), epochs=10, seed=7).fit(data, sets).logits(data)
    # APPNP reaches nearly all of Cora: one lockstep job. On CiteSeer (largest component: 64%
    # of the nodes) it trains on a subgraph, whose masks' shapes differ by set: one run each.
    assert len(inner_runs) == (0 if dataset == "cora" else 3)
    for model, train, logits in zip(_appnp_variants(data), sets, lockstep):
        alone = Trainer(model, epochs=10, seed=7).fit(data, train).logits(data)
        torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(lockstep[0], lockstep[1]) and not torch.allclose(lockstep[0], lockstep[2])


def test_lockstep_refuses_what_it_cannot_share(cora, cora_published):
    appnp = APPNP(cora.num_features, 7)
    with pytest.raises(ValueError, match="srgnn.Trainer"):
        LockstepTrainer([appnp, GCN(cora.num_features, 7)])
    with pytest.raises(ValueError, match="srgnn.Trainer"):
        LockstepTrainer([appnp, APPNP(cora.num_features, 7, hidden_channels=64)])
    with pytest.raises(ValueError, match="one training set per model"):
        LockstepTrainer([appnp, APPNP(cora.num_features, 7)], epochs=1).fit(cora, cora_published[:1])


def test_early_stopping_and_swa_work_on_every_route_as_the_trainer(cora, cora_published):
    # The options are the same on all three trainers; with patience or SWA the replicas and the
    # lockstep models train one by one, each exactly as its Trainer, and say so.
    from srgnn.training.swa import SWAConfig

    sets, seeds = cora_published[:2], [5, 6]
    val = [torch.arange(2000, 2300), torch.arange(2300, 2600)]
    options = {"epochs": 30, "patience": 3, "swa": SWAConfig(start=0.5)}
    replicas = ReplicaTrainer(lambda: GCN(cora.num_features, 7), **options).fit(cora, sets, seeds, val_sets=val)
    lockstep = LockstepTrainer([APPNP(cora.num_features, 7), ShiftRobust(APPNP(cora.num_features, 7))], seed=5,
                               **options).fit(cora, sets, val_sets=val)
    for trainer in (replicas, lockstep):
        assert not trainer.batched_ and "patience, swa" in trainer.unbatched_reason_
    for r in range(2):
        alone = Trainer(GCN(cora.num_features, 7), seed=seeds[r], **options).fit(cora, sets[r], val_idx=val[r])
        assert torch.equal(replicas.logits(cora)[r], alone.logits(cora))
    alone = Trainer(ShiftRobust(APPNP(cora.num_features, 7)), seed=5, **options).fit(cora, sets[1], val_idx=val[1])
    assert torch.equal(lockstep.logits(cora)[1], alone.logits(cora))


def test_every_trainer_option_works_on_the_batched_routes_or_is_refused(cora, cora_published):
    sets, seeds = cora_published[:2], [3, 4]
    build = lambda: GCN(cora.num_features, 7)  # noqa: E731
    options = {"epochs": 5, "optimizer": "sgd", "batch_size": 64, "num_neighbors": [5, 5]}
    batched = ReplicaTrainer(build, **options).fit(cora, sets, seeds)
    assert not batched.batched_ and "batch_size" in batched.unbatched_reason_
    for train, seed, predicted in zip(sets, seeds, batched.predict(cora)):
        alone = Trainer(build(), seed=seed, **options).fit(cora, train)
        assert torch.equal(predicted, alone.predict(cora))
    # SGD on the batched route: each replica as its Trainer with SGD
    sgd = ReplicaTrainer(build, epochs=5, optimizer="sgd").fit(cora, sets, seeds)
    assert sgd.batched_
    for train, seed, logits in zip(sets, seeds, sgd.logits(cora)):
        alone = Trainer(build(), epochs=5, seed=seed, optimizer="sgd").fit(cora, train).logits(cora)
        torch.testing.assert_close(logits, alone, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="warm_start=True continues a fitted model"):
        ReplicaTrainer(build, warm_start=True)
    with pytest.raises(ValueError, match="optimizer"):
        LockstepTrainer([APPNP(cora.num_features, 7)], optimizer="lbfgs")
    with pytest.raises(ValueError, match="pass batch_size too"):
        ReplicaTrainer(build, num_neighbors=[5, 5])
