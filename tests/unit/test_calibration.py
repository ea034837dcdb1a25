import pytest
import torch

from srgnn.estimation.calibration import fit_group_temperatures, fit_temperature
from srgnn.estimation.disagreement import expected_calibration_error


def _overconfident(n: int = 4000, classes: int = 4, true_temperature: float = 2.5):
    """Labels drawn from softmax(z) while the model reports z * true_temperature."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(n, classes, generator=generator) * 1.5
    labels = torch.multinomial(z.softmax(1), 1, generator=generator).view(-1)
    return z * true_temperature, labels


def test_fit_temperature_recovers_the_planted_temperature():
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(logits.softmax(1), labels)
    after = expected_calibration_error((logits / temperature).softmax(1), labels)
    assert after < 0.03 < before


def test_fit_temperature_keeps_calibrated_logits_near_one():
    logits, labels = _overconfident(true_temperature=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("logits, labels, match", [
    (torch.randn(5, 3).softmax(1), torch.zeros(5, dtype=torch.long), "takes logits"),
    (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), "logits \\[n, C\\] and labels \\[n\\]"),
    (torch.randn(5, 3), torch.full((5,), 3), "labels must lie in"),
    (torch.full((5, 3), float("nan")), torch.zeros(5, dtype=torch.long), "NaN"),
])
def test_bad_inputs_are_refused(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)


def test_weights_fit_the_temperature_of_the_population_they_weigh():
    calibrated, calibrated_labels = _overconfident(true_temperature=1.0)
    hot, hot_labels = _overconfident(true_temperature=3.0)
    logits, labels = torch.cat([calibrated, hot]), torch.cat([calibrated_labels, hot_labels])
    on_hot = torch.cat([torch.zeros(len(calibrated)), torch.ones(len(hot))])
    assert fit_temperature(logits, labels, weights=on_hot) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(logits, labels, weights=1 - on_hot) == pytest.approx(1.0, abs=0.1)
    # Weights are normalized: a constant is no weighting at all.
    assert fit_temperature(logits, labels, weights=torch.full((len(labels),), 7.0)) == pytest.approx(
        fit_temperature(logits, labels), rel=1e-6)


@pytest.mark.parametrize("weights", [-torch.ones(5), torch.ones(4), torch.zeros(5),
                                     torch.tensor([1.0, 1.0, float("inf"), 1.0, 1.0])])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="weights must be 5 finite, non-negative values"):
        fit_temperature(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), weights=weights)


def test_kmm_node_weights_bring_labelled_nodes_ppr_rows_towards_an_iid_sample(cora, cora_published):
    from srgnn.ppr import graph_ppr
    from srgnn.robustness.preparation import kmm_node_weights
    from srgnn.sampling import iid_sample
    from srgnn.robustness.shift import mmd

    nodes = cora_published[0]
    iid = iid_sample(cora, 500, seed=0, exclude=nodes)
    weights = kmm_node_weights(cora, nodes, iid)
    assert weights.shape == (nodes.numel(),) and float(weights.min()) >= 0.2 - 1e-9
    y = cora.y[nodes]
    for c in y.unique():  # each class keeps its count
        assert float(weights[y == c].sum()) == pytest.approx(float((y == c).sum()), rel=1e-6)
    rows = graph_ppr(cora, torch.cat([nodes, iid]), teleport=0.1).T.float()
    source, target = rows[:nodes.numel()], rows[nodes.numel():]
    # Measured: 0.00223 against 0.00247 unweighted; weights for other nodes' rows would not lower it.
    assert float(mmd(source, target, weights=weights.float())) < 0.95 * float(mmd(source, target))
    shuffled = weights[torch.randperm(nodes.numel(), generator=torch.Generator().manual_seed(0))]
    assert float(mmd(source, target, weights=weights.float())) < float(mmd(source, target, weights=shuffled.float()))


def test_group_temperatures_recover_each_groups_planted_temperature_and_pool_small_groups():
    cool, cool_labels = _overconfident(true_temperature=1.0)
    hot, hot_labels = _overconfident(true_temperature=3.0)
    logits, labels = torch.cat([cool, hot, hot[:5]]), torch.cat([cool_labels, hot_labels, hot_labels[:5]])
    groups = torch.cat([torch.zeros(len(cool)), torch.ones(len(hot)), torch.full((5,), 2.0)]).long()
    temperatures = fit_group_temperatures(logits, labels, groups, num_groups=4)
    assert temperatures[0] == pytest.approx(1.0, abs=0.1) and temperatures[1] == pytest.approx(3.0, rel=0.1)
    # Group 2 has 5 nodes (< min_size) and group 3 none: both take the pooled temperature.
    assert temperatures[2] == temperatures[3] == pytest.approx(fit_temperature(logits, labels), rel=1e-6)
    with pytest.raises(ValueError, match="groups must lie in"):
        fit_group_temperatures(logits, labels, groups, num_groups=2)
    with pytest.raises(ValueError, match="one int per held-out node"):
        fit_group_temperatures(logits, labels, groups[:-1], num_groups=4)


def test_hop_distances_count_hops_to_the_nearest_source():
    from srgnn import Graph

    path = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])  # 0 - 1 - 2 - 3 - 4
    graph = Graph(path, 6)  # node 5 is isolated
    assert graph.hop_distances(torch.tensor([0, 4]), max_hops=3).tolist() == [0, 1, 2, 1, 0, 4]
    assert graph.hop_distances(torch.tensor([0]), max_hops=2).tolist() == [0, 1, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="sources must be one or more node indices"):
        graph.hop_distances(torch.tensor([6]), max_hops=2)
