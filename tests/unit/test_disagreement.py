import pytest
import torch

from srgnn.estimation.disagreement import (classwise_calibration_error, disagreement_rate, estimate_error,
                                expected_calibration_error)


def test_identical_models_disagree_zero():
    logits = torch.randn(100, 4)
    assert disagreement_rate(logits, logits.clone()) == 0.0
    with pytest.raises(ValueError, match="agree on every target node"):  # GDE's 0 would say nothing
        estimate_error(logits, logits, logits.argmax(1))


def test_disagreement_on_labels_and_subset():
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 0])
    assert disagreement_rate(a, b) == 0.5
    assert disagreement_rate(a, b, nodes=torch.tensor([2, 3])) == 1.0
    assert disagreement_rate(a, b, nodes=torch.tensor([True, True, False, False])) == 0.0


def test_gde_equals_error_for_an_ensemble_calibrated_by_construction():
    """Labels and each member's prediction are independent draws from the same p:
    the ensemble is calibrated, and expected error = expected disagreement = 1 - sum p^2."""
    gen = torch.Generator().manual_seed(0)
    p = torch.distributions.Dirichlet(torch.ones(5)).sample((40000,))
    draw = lambda: torch.multinomial(p, 1, generator=gen).view(-1)  # noqa: E731
    labels, first, second = draw(), draw(), draw()
    error = float((first != labels).float().mean())
    assert estimate_error(first, second).error == pytest.approx(error, abs=0.01)
    assert error == pytest.approx(float(1 - (p ** 2).sum(1).mean()), abs=0.01)


def test_ece_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 0, 1])
    # bins: {0.9, 0.9}: acc 0.5 conf 0.9 -> 0.5*0.4; {0.6}: acc 1 conf .6 -> .25*.4; {0.7}: acc 1 -> .25*.3
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.2 + 0.1 + 0.075)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == 0.0
    assert classwise_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


def test_models_of_different_output_sizes():
    with pytest.raises(ValueError, match="different output sizes"):
        disagreement_rate(torch.randn(10, 3), torch.randn(10, 4))


def test_empty_node_set():
    with pytest.raises(ValueError, match="nodes is empty"):
        disagreement_rate(torch.randn(10, 3), torch.randn(10, 3), nodes=torch.tensor([], dtype=torch.long))


def test_study_replaces_only_its_own_section_of_the_doc(tmp_path):
    from benchmarks.study import write_section

    doc = tmp_path / "disagreement.md"
    write_section(doc, "cora", "cora v1", "# Title\n")
    write_section(doc, "pubmed", "pubmed v1", "# Title\n")
    write_section(doc, "cora", "cora v2", "# Title\n")
    text = doc.read_text()
    assert text.startswith("# Title") and "cora v2" in text and "pubmed v1" in text and "cora v1" not in text
    assert text.index("cora v2") < text.index("pubmed v1")


def test_calibration_errors_refuse_logits():
    # Regression: logits were taken as probabilities (an ECE of 4.24).
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]])
    labels = torch.tensor([0, 1])
    for error in (expected_calibration_error, classwise_calibration_error):
        with pytest.raises(ValueError, match="logits.softmax"):
            error(logits, labels)
        assert 0 <= error(logits.softmax(dim=1), labels) <= 1


def test_class_aggregated_calibration_error_sums_classes_inside_the_absolute_value():
    from srgnn.estimation.disagreement import class_aggregated_calibration_error, ensemble_vote

    # Two members, three nodes, two classes; the vote is 1/2 or 1 per class.
    first, second = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])
    vote = ensemble_vote(first, second, num_classes=2)
    assert torch.equal(vote, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))
    labels = torch.tensor([1, 0, 1])
    # By hand, with 2 bins ([0, .5] and (.5, 1]), hit - p per (node, class) entry: bin 0 holds
    # node 0 class 1 (p 0, a hit: +1), node 1's two (+.5, -.5) and node 2 class 0 (0); bin 1
    # holds node 0 class 0 (p 1, a miss: -1) and node 2 class 1 (0). |1| + |-1| over 3 nodes.
    assert class_aggregated_calibration_error(vote, labels, n_bins=2) == pytest.approx(2 / 3)
    # Class-wise ECE takes binned absolute gaps per class and averages them: (1/2 + 1/6) / 2 here.
    assert classwise_calibration_error(vote, labels, n_bins=2) == pytest.approx(1 / 3)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert class_aggregated_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


def _calibrated(n: int, classes: int = 4, seed: int = 0):
    """Logits whose softmax p is the true class distribution: labels drawn from p."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, classes, generator=gen)
    labels = torch.multinomial(logits.softmax(1), 1, generator=gen).view(-1)
    return logits, labels


@pytest.mark.parametrize("method", ["confidence", "doc", "atc", "held_out"])
def test_confidence_estimators_recover_a_calibrated_models_error(method):
    logits, labels = _calibrated(40000)
    error = float((logits.argmax(1) != labels).double().mean())
    held = torch.arange(20000)  # held-out nodes drawn like the targets
    estimate = estimate_error(logits, nodes=torch.arange(20000, 40000), method=method,
                              held_out=(held, labels[held]), n_bootstrap=200)
    assert estimate.error == pytest.approx(error, abs=0.015)
    assert estimate.low < estimate.error < estimate.high and estimate.high - estimate.low < 0.05
    assert float(estimate) == estimate.error and estimate.method == method


def test_doc_and_atc_see_a_shift_that_raw_confidence_misses():
    """An overconfident model (logits doubled): average confidence underestimates its error;
    held-out labels drawn like the targets correct it."""
    logits, labels = _calibrated(40000, seed=1)
    logits = 2.0 * logits
    error = float((logits.argmax(1) != labels).double().mean())
    held, targets = torch.arange(10000), torch.arange(10000, 40000)
    naive = estimate_error(logits, nodes=targets, method="confidence").error
    assert naive < error - 0.05
    for method in ("doc", "atc"):
        corrected = estimate_error(logits, nodes=targets, method=method, held_out=(held, labels[held])).error
        assert corrected == pytest.approx(error, abs=0.015)


def test_held_out_error_is_the_error_on_the_held_out_nodes_whatever_the_targets():
    logits, labels = _calibrated(1000, seed=2)
    held = torch.arange(0, 1000, 3)
    error = float((logits.argmax(1)[held] != labels[held]).double().mean())
    for targets in (torch.arange(500), torch.arange(500, 1000)):
        assert estimate_error(logits, nodes=targets, method="held_out", held_out=(held, labels[held])).error == error


def test_gde_bootstrap_interval_covers_the_estimate_and_is_seeded():
    a, b = torch.randint(0, 3, (2000,)), torch.randint(0, 3, (2000,))
    first = estimate_error(a, b, n_bootstrap=100, seed=1)
    assert first.low < first.error < first.high and first == estimate_error(a, b, n_bootstrap=100, seed=1)


@pytest.mark.parametrize("call, message", [
    (lambda x: estimate_error(x), "at least two models"),
    (lambda x: estimate_error(x, x, n_bootstrap=0), "n_bootstrap must be an int >= 1"),
    (lambda x: estimate_error(x, method="atc"), "needs held_out"),
    (lambda x: estimate_error(x, method="oracle"), "not an estimator"),
    (lambda x: estimate_error(x, method="confidence", kind="probs"), "rows are not probabilities"),
    (lambda x: estimate_error(x.argmax(1), method="confidence"), "labels carry no confidence"),
])
def test_bad_estimator_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(50, 3))


def test_the_calibrated_ece_floor_is_the_ece_of_labels_drawn_from_the_model_and_falls_with_n():
    from srgnn.estimation.disagreement import calibrated_ece_floor

    logits, _ = _calibrated(20000, seed=3)
    probs = logits.softmax(1).double()
    small, large = calibrated_ece_floor(probs[:200]), calibrated_ece_floor(probs)
    assert large < 0.01 < small  # ~1/sqrt(n): the floor of 200 nodes is many times that of 20,000
    labels = torch.multinomial(probs[:200], 1, generator=torch.Generator().manual_seed(9)).view(-1)
    assert abs(expected_calibration_error(probs[:200], labels) - small) < 0.04
    with pytest.raises(ValueError, match="n_draws must be an int >= 1"):
        calibrated_ece_floor(probs, n_draws=0)
