import pytest
import torch

from srgnn import ReplicaTrainer, ShiftRobust, Trainer
from srgnn.models import APPNP, GCN, MLP, GraphSAGE

BUILDERS = {
    "gcn": lambda d: GCN(d.num_features, d.num_classes),
    "sr-gcn-cmd": lambda d: ShiftRobust(GCN(d.num_features, d.num_classes), "cmd"),
    "sr-sage-mmd": lambda d: ShiftRobust(GraphSAGE(d.num_features, d.num_classes), "mmd"),
    "sr-mlp-kmm": lambda d: ShiftRobust(MLP(d.num_features, d.num_classes), "cmd", instance_weights="kmm"),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_a_batch_of_replicas_equals_each_replica_alone(cora, cora_published, name):
    build, sets, seeds = (lambda: BUILDERS[name](cora)), cora_published[:3], [5, 6, 7]
    batched = ReplicaTrainer(build, epochs=20).fit(cora, sets, seeds).logits(cora)
    for train, seed, logits in zip(sets, seeds, batched):
        alone = ReplicaTrainer(build, epochs=20).fit(cora, [train], [seed]).logits(cora)[0]
        torch.testing.assert_close(logits, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_replicas_start_where_the_trainer_starts_and_score_like_it(cora, cora_published):
    build, train = (lambda: GCN(cora.num_features, 7)), cora_published[0]
    untrained = ReplicaTrainer(build, epochs=1, lr=0.0).fit(cora, [train], [3]).logits(cora)[0]
    torch.testing.assert_close(untrained, Trainer(build(), epochs=1, lr=0.0, seed=3).fit(cora, train).logits(cora))
    test = torch.ones(cora.num_nodes, dtype=torch.bool)
    test[train] = False
    sets, seeds = cora_published[:8], list(range(8))
    batched = [s["micro_f1"] for s in ReplicaTrainer(build, epochs=100).fit(cora, sets, seeds).evaluate(cora, [test] * 8)]
    sequential = [Trainer(build(), epochs=100, seed=s).fit(cora, t).evaluate(cora, test)["micro_f1"]
                  for t, s in zip(sets, seeds)]
    # Different dropout streams, the same distribution: the means agree within noise.
    assert abs(sum(batched) / 8 - sum(sequential) / 8) < 0.02


def test_unsupported_models_and_mismatched_seeds_are_refused(cora, cora_published):
    with pytest.raises(ValueError, match="srgnn.Trainer"):
        ReplicaTrainer(lambda: APPNP(cora.num_features, 7), epochs=1).fit(cora, cora_published[:1], [0])
    with pytest.raises(ValueError, match="one seed per training set"):
        ReplicaTrainer(lambda: GCN(cora.num_features, 7), epochs=1).fit(cora, cora_published[:2], [0])
