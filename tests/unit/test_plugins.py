"""Your own model and your own shift penalty, written here on PyG layers srgnn does not use,
train through ``Trainer`` and ``ReplicaTrainer`` (the study CLI: tests/studies/test_plugins_cli.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GINConv

from srgnn import Graph, ShiftRobust, Trainer
from srgnn.graph import model_inputs
from srgnn.batched import ReplicaTrainer
from srgnn.models import GCN, NodeClassifier


class GIN(NodeClassifier):
    """Two GIN layers (PyG's ``GINConv``); the hidden layer is the first one's output."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 16):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv1 = GINConv(nn.Linear(in_channels, hidden_channels))
        self.conv2 = GINConv(nn.Linear(hidden_channels, out_channels))

    def forward_with_hidden(self, x, edge_index):
        assert isinstance(edge_index, torch.Tensor)  # srgnn hands a model of yours the tensor, not a Graph
        hidden = F.relu(self.conv1(F.dropout(x, 0.5, self.training), edge_index))
        return self.conv2(F.dropout(hidden, 0.5, self.training), edge_index), hidden


def gin(data) -> GIN:
    """The study CLI's factory: ``--methods tests.unit.test_plugins:gin``."""
    return GIN(data.num_features, data.num_classes)


def linear_mmd(h_train, h_iid):
    """MMD with a linear kernel: the squared distance between the two means."""
    return (h_train.mean(0) - h_iid.mean(0)).pow(2).sum()


class _Reversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class LogisticDiscriminator(nn.Module):
    """A DANN-like penalty with parameters of its own: a logistic domain classifier on the
    gradient-reversed hidden rows, sized by the hidden layer on its first call (``LazyLinear``)."""

    def __init__(self):
        super().__init__()
        self.score = nn.LazyLinear(1)

    def forward(self, h_train, h_iid):
        both = _Reversal.apply(torch.cat([h_train, h_iid]))
        domain = torch.cat([h_train.new_ones(h_train.size(0)), h_train.new_zeros(h_iid.size(0))])
        return F.binary_cross_entropy_with_logits(self.score(both).view(-1), domain)


@pytest.fixture(scope="module")
def cora_graph(cora):
    return Graph.from_data(cora)


def _sets(cora_published):
    return [cora_published[0], cora_published[1]]


def test_your_model_and_penalty_train_through_the_trainer(cora_graph, cora_published):
    train = cora_published[0]
    plain = Trainer(GIN(1433, 7), epochs=60, seed=0).fit(cora_graph, train)
    robust_model = ShiftRobust(GIN(1433, 7), linear_mmd, lam=5.0)
    robust = Trainer(robust_model, epochs=60, seed=0).fit(cora_graph, train)
    assert plain.evaluate(cora_graph, torch.arange(1708, 2708))["micro_f1"] > 0.5
    assert robust.history_ != plain.history_  # the penalty entered the loss
    iid = robust.setup_.iid_idx

    def shift(trainer):
        with torch.no_grad():
            hidden = trainer.model_.forward_with_hidden(*model_inputs(trainer.model_, cora_graph.x, cora_graph))[1]
        return float(linear_mmd(hidden[train], hidden[iid]))

    assert shift(robust) < shift(plain)  # and it lowered what it measures


@pytest.mark.parametrize("penalty", [linear_mmd, "cmd"])
def test_a_model_replicas_cannot_batch_trains_replica_by_replica_as_its_trainer(cora_graph, cora_published, penalty):
    sets = _sets(cora_published)
    trainer = ReplicaTrainer(lambda: ShiftRobust(GIN(1433, 7), penalty), epochs=20).fit(cora_graph, sets, [3, 4])
    assert not trainer.batched_ and "GIN does not declare replica_batchable" in trainer.unbatched_reason_
    for model, train, seed in zip(trainer.models_, sets, [3, 4]):
        alone = Trainer(ShiftRobust(GIN(1433, 7), penalty), epochs=20, seed=seed).fit(cora_graph, train)
        assert torch.equal(model(*model_inputs(model, cora_graph.x, cora_graph)), alone.logits(cora_graph))


def test_your_penalty_on_batched_replicas_with_a_lam_each_equals_each_trainer(cora_graph, cora_published):
    sets, lams = _sets(cora_published), iter([0.5, 3.0])
    trainer = ReplicaTrainer(lambda: ShiftRobust(GCN(1433, 7), linear_mmd, lam=next(lams)), epochs=20)
    trainer.fit(cora_graph, sets, [3, 4])
    assert trainer.batched_ and trainer.unbatched_reason_ is None
    for model, train, seed, lam in zip(trainer.models_, sets, [3, 4], [0.5, 3.0]):
        alone = Trainer(ShiftRobust(GCN(1433, 7), linear_mmd, lam=lam), epochs=20, seed=seed).fit(cora_graph, train)
        with torch.no_grad():
            torch.testing.assert_close(model(cora_graph.x, cora_graph), alone.logits(cora_graph), rtol=1e-4, atol=1e-5)


def test_a_penalty_with_parameters_of_its_own_trains_with_the_model(cora_graph, cora_published):
    train, test = cora_published[0], torch.arange(1708, 2708)
    penalty = LogisticDiscriminator()
    robust = ShiftRobust(GCN(1433, 7), penalty, lam=0.1)
    first = Trainer(robust, epochs=40, seed=0).fit(cora_graph, train)
    logits, trained = first.logits(cora_graph), penalty.score.weight.detach().clone()
    assert trained.shape == (1, 32)  # sized by GCN's hidden layer
    assert first.evaluate(cora_graph, test)["micro_f1"] > 0.5
    plain = Trainer(GCN(1433, 7), epochs=40, seed=0).fit(cora_graph, train)
    assert not torch.equal(logits, plain.logits(cora_graph))  # the penalty changed the model
    # a second fit resets it: from the same seed, the same discriminator and the same model
    Trainer(robust, epochs=1, seed=0).fit(cora_graph, train)
    assert not torch.allclose(penalty.score.weight, trained)  # one epoch leaves it elsewhere: it trains
    again = Trainer(robust, epochs=40, seed=0).fit(cora_graph, train)
    assert torch.equal(penalty.score.weight, trained) and torch.equal(again.logits(cora_graph), logits)
    # ReplicaTrainer trains such a model replica by replica, each as its Trainer
    replicas = ReplicaTrainer(lambda: ShiftRobust(GCN(1433, 7), LogisticDiscriminator(), lam=0.1), epochs=40)
    replicas.fit(cora_graph, [train], [0])
    assert not replicas.batched_ and torch.equal(replicas.logits(cora_graph)[0], logits)
