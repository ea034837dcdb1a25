"""srgnn.recipes and ReNode's weights: what each computes, that each reads no label beyond the
training nodes', and that bad input is refused at the boundary."""
import copy

import pytest
import torch
from torch_geometric.data import Data

from srgnn import Recommended, ShiftRobust, Trainer
from srgnn.graph import Graph
from srgnn.models import GCN
from srgnn.recipes import SelfTraining, class_mix, correct_and_smooth, propagate_labels, shift_to_class_mix
from srgnn.robustness.renode import renode_weights


def _path(num_nodes: int = 6, labels=(0, 0, 0, 1, 1, 1)) -> Data:
    line = torch.arange(num_nodes - 1)
    edge_index = torch.stack([torch.cat([line, line + 1]), torch.cat([line + 1, line])])
    return Data(x=torch.eye(num_nodes), edge_index=edge_index, y=torch.tensor(labels))


def _scrambled(data: Data, keep: torch.Tensor, seed: int = 0) -> Data:
    """``data`` with every label outside ``keep`` replaced by a random one."""
    other = copy.copy(data)
    y = torch.randint(0, int(data.y.max()) + 1, (data.num_nodes,), generator=torch.Generator().manual_seed(seed))
    y[keep] = data.y[keep]
    other.y = y
    return other


def test_label_propagation_is_the_recurrence_with_symmetric_normalization():
    data, train = _path(), torch.tensor([0, 5])
    adj = torch.zeros(6, 6)
    adj[data.edge_index[0], data.edge_index[1]] = 1.0
    norm = adj / (adj.sum(0).sqrt().view(1, -1) * adj.sum(1).sqrt().view(-1, 1))
    seeds = torch.zeros(6, 2)
    seeds[0, 0] = seeds[5, 1] = 1.0
    expected = seeds.clone()
    for _ in range(3):
        expected = (0.9 * norm @ expected + 0.1 * seeds).clamp(0, 1)
    assert torch.allclose(propagate_labels(data, train, num_layers=3, alpha=0.9), expected, atol=1e-6)
    assert propagate_labels(data, train).argmax(1).tolist() == [0, 0, 0, 1, 1, 1]


def test_recipes_read_no_label_beyond_the_training_nodes(cora, cora_published):
    train = cora_published[0]
    other = _scrambled(cora, train)
    assert torch.equal(propagate_labels(cora, train), propagate_labels(other, train))
    probs = Trainer(GCN(cora.num_features, 7), epochs=20, seed=0).fit(cora, train).logits(cora).softmax(-1)
    assert torch.equal(correct_and_smooth(probs, cora, train), correct_and_smooth(probs, other, train))
    fitted = SelfTraining(GCN(cora.num_features, 7), per_class=30, epochs=20, seed=0).fit(cora, train)
    again = SelfTraining(GCN(cora.num_features, 7), per_class=30, epochs=20, seed=0).fit(other, train)
    assert torch.equal(fitted.logits(cora), again.logits(other))
    graph = Graph.from_data(cora)
    assert torch.equal(renode_weights(graph, train), renode_weights(Graph.from_data(other), train))


def test_self_training_adds_confident_unlabelled_nodes_per_class(cora, cora_published):
    train = cora_published[0]
    st = SelfTraining(GCN(cora.num_features, 7), rounds=1, per_class=25, epochs=30, seed=0).fit(cora, train)
    assert st.pseudo_idx_.numel() <= 7 * 25 and not torch.isin(st.pseudo_idx_, train).any()
    assert torch.bincount(st.pseudo_labels_, minlength=7).max() <= 25
    assert st.trainer_.model_ is st.model  # the last round's fit
    alone = Trainer(GCN(cora.num_features, 7), epochs=30, seed=0).fit(cora, train).logits(cora)
    assert torch.equal(SelfTraining(GCN(cora.num_features, 7), rounds=0, epochs=30, seed=0).fit(cora, train)
                       .logits(cora), alone)


def test_self_training_refits_on_the_first_fits_ppr_factors(cora, cora_published):
    # Pseudo-labels change the labels only: the second SR-APPNP fit's KMM reads the LU the first
    # one factorized, instead of factorizing the graph again.
    from srgnn.models import APPNP

    graph = Graph.from_data(cora)
    st = SelfTraining(ShiftRobust(APPNP(cora.num_features, 7), lam=0.1), rounds=1, per_class=10, epochs=5,
                      seed=0).fit(graph, cora_published[0])
    pseudo_graph = st.trainer_.graph_
    assert pseudo_graph is not graph and pseudo_graph.cache[("lu", 0.1)] is graph.cache[("lu", 0.1)]
    assert (pseudo_graph.data.y >= 0).sum() == cora_published[0].numel() + st.pseudo_idx_.numel()  # its own labels
    assert sum(key[0] == "kmm" for key in pseudo_graph.cache if isinstance(key, tuple)) == 2  # one per fit


def test_a_relabelled_graph_relabels_its_copies_on_other_devices(cora):
    graph = Graph.from_data(cora)
    adjacency = graph.adjacency("sym")
    copy_ = graph.to("cpu")
    graph.cache[("on", "other")] = copy_  # as Graph.on keeps a copy on another device
    other = copy.copy(graph.data)
    other.y = torch.zeros_like(graph.data.y)
    relabelled = graph.relabelled(other)
    assert relabelled.data is other and relabelled.cache[("on", "other")].data is other
    assert relabelled.adjacency("sym") is adjacency


def _two_cliques() -> Data:
    """Two 4-cliques (classes 0 and 1) joined by the edge 3-4."""
    pairs = [(a, b) for group in (range(4), range(4, 8)) for a in group for b in group if a != b] + [(3, 4), (4, 3)]
    return Data(x=torch.eye(8), edge_index=torch.tensor(pairs).T, y=torch.tensor([0] * 4 + [1] * 4))


def test_correct_and_smooth_spreads_the_training_labels_over_undecided_predictions():
    data, train = _two_cliques(), torch.tensor([0, 7])
    undecided = torch.full((8, 2), 0.5)
    assert correct_and_smooth(undecided, data, train).argmax(1).tolist() == [0] * 4 + [1] * 4
    # The correction at alpha 1.0 (no anchoring) averages the residuals over the graph, and
    # autoscale then gives every node a correction as large as the training nodes' mean one:
    # with residuals 0.55 and 0.45 the larger wins everywhere, a labelled node included.
    leaning = torch.tensor([[0.45, 0.55]] * 8)
    assert correct_and_smooth(leaning, data, train).argmax(1).tolist() == [0] * 8
    assert correct_and_smooth(leaning, data, train, correction_alpha=0.8).argmax(1).tolist() == [0] * 4 + [1] * 4


def test_renode_weighs_nodes_near_another_class_least():
    # Two labelled nodes per class on a path; nodes 2 and 3 sit at the class boundary.
    data = _path(8, (0, 0, 0, 0, 1, 1, 1, 1))
    graph, train = Graph.from_data(data), torch.tensor([0, 3, 4, 7])
    weights = renode_weights(graph, train)
    assert weights.min() >= 0.5 and weights.max() <= 1.5
    assert weights[[1, 2]].max() < weights[[0, 3]].min()
    robust = ShiftRobust(GCN(8, 2), None, instance_weights="renode")
    trainer = Trainer(robust, epochs=2).fit(data, train)
    assert torch.equal(trainer.setup_.weights, weights) and trainer.setup_.iid_idx is None


def test_class_mix_counts_each_class_with_laplace_smoothing():
    assert torch.allclose(class_mix(torch.tensor([0, 0, 1]), 3), torch.tensor([3, 2, 1], dtype=torch.float64) / 6)
    assert torch.allclose(class_mix(torch.tensor([0, 0, 1]), 3, smoothing=0), torch.tensor([2 / 3, 1 / 3, 0.0],
                                                                                          dtype=torch.float64))


def test_shifting_to_a_class_mix_is_bayes_rule_under_that_mix():
    # Two 1-D Gaussian classes: the posterior under a uniform mix, shifted to the mix q, is the
    # posterior under q, computed directly.
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    log_likelihood = torch.stack([-(x + 1) ** 2 / 2, -(x - 1) ** 2 / 2], dim=1)
    uniform, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    expected = (log_likelihood + q.double().log()).log_softmax(1)
    assert torch.allclose(shift_to_class_mix(log_likelihood, uniform, q), expected)
    assert torch.allclose(shift_to_class_mix(log_likelihood, q, q), log_likelihood.log_softmax(1))
    # Nodes the likelihood leaves undecided go to the larger class; clear ones stay.
    assert shift_to_class_mix(log_likelihood, uniform, q).argmax(1)[6] == 0
    assert shift_to_class_mix(log_likelihood, uniform, q).argmax(1)[-1] == 1


@pytest.mark.parametrize("call, message", [
    (lambda: class_mix(torch.tensor([0.0, 1.0]), 2), "integer classes"),
    (lambda: class_mix(torch.tensor([0, 2]), 2), "classes 0..1"),
    (lambda: class_mix(torch.tensor([], dtype=torch.long), 2, smoothing=0), "smoothing > 0"),
    (lambda: shift_to_class_mix(torch.zeros(3, 2), torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])),
     "smooth the estimate"),
    (lambda: shift_to_class_mix(torch.zeros(3, 2), torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.2, 0.6])),
     "one share per class (2)"),
    (lambda: shift_to_class_mix(torch.zeros(3, 2), torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5])),
     "sum to 1"),
    (lambda: shift_to_class_mix(torch.zeros(3, 2, dtype=torch.long), torch.tensor([0.5, 0.5]),
                                torch.tensor([0.5, 0.5])), "float [N, C]"),
])
def test_class_mix_refuses_bad_input_with_the_fix(call, message):
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert message in str(err.value)


@pytest.mark.parametrize("call, message", [
    (lambda d, t: propagate_labels(d, t, alpha=1.5), "alpha must be in (0, 1]"),
    (lambda d, t: propagate_labels(d, t, num_layers=0), "num_layers"),
    (lambda d, t: correct_and_smooth(torch.zeros(6, 2), d, t), "class probabilities"),
    (lambda d, t: correct_and_smooth(torch.full((5, 2), 0.5), d, t), "[num_nodes=6, C]"),
    (lambda d, t: SelfTraining(GCN(6, 2), rounds=-1), "rounds"),
    (lambda d, t: SelfTraining(GCN(6, 2), per_class=0), "per_class"),
    (lambda d, t: SelfTraining(GCN(6, 2), epoch=5), "epoch"),
    (lambda d, t: SelfTraining(GCN(6, 2)).logits(d), "Call fit()"),
    (lambda d, t: propagate_labels(d, torch.tensor([0, 1])), "Class(es) [1] have no training node"),
    (lambda d, t: Recommended(epochs=1).fit(d, t, sample_idx=torch.tensor([5, 2])), "must lie outside train_idx"),
    (lambda d, t: Recommended(epochs=1).fit(d, t, sample_idx=torch.tensor([9])), "sample_idx"),
])
def test_bad_input_is_refused_with_the_fix(call, message):
    with pytest.raises((ValueError, TypeError, RuntimeError, IndexError)) as err:
        call(_path(), torch.tensor([0, 5]))
    assert message in str(err.value)
