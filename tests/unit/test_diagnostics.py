"""The bias report (``srgnn.estimation.diagnostics``) on real Cora."""
from __future__ import annotations

import pytest
import matplotlib.pyplot as plt
import torch

from tests.helpers import SEEDS_DIR, run_main
from srgnn.estimation.diagnostics import bias_report
from srgnn.models import GCN
from srgnn.sampling import default_pool, iid_sample

QUICK = {"models": (GCN,), "n_reference": 20, "folds": 2, "n_bootstrap": 20, "epochs": 30}


@pytest.fixture(scope="module")
def reports(cora, cora_published):
    biased = cora_published[0]
    iid = iid_sample(cora, biased.numel(), seed=3, candidates=default_pool(cora))
    return bias_report(cora, biased, **QUICK), bias_report(cora, iid, **QUICK)


def test_a_published_localized_set_is_more_shifted_than_iid_sets_of_its_size(reports):
    biased, iid = reports
    # Raw bag-of-words moments are noisy on Cora (the set sits at the IID sets' 84th percentile);
    # propagated features and the hidden layer separate it from every IID set.
    for shift in (biased.propagated_shift, biased.hidden_shift):
        assert shift.value > shift.reference_high and shift.percentile == 1.0
    for name in ("feature_shift", "propagated_shift", "hidden_shift"):
        assert getattr(iid, name).value < getattr(biased, name).value


def test_the_degree_shift_is_the_labelled_nodes_mean_degree_against_iid_sets(cora, cora_published, reports):
    from torch_geometric.utils import degree
    biased, iid = reports
    in_degree = degree(cora.edge_index[1], cora.num_nodes)
    assert biased.degree_shift.value == pytest.approx(float(in_degree[cora_published[0]].mean()))
    # The reference sets are uniform, so their mean degree sits near the graph's.
    assert biased.degree_shift.reference_mean == pytest.approx(float(in_degree.mean()), rel=0.15)
    assert "mean degree:" in str(biased)


def test_the_report_holds_an_interval_and_its_drop(reports):
    biased, _ = reports
    a = biased.accuracy
    assert 0.0 <= a.low <= a.value <= a.high <= 1.0
    assert biased.estimated_drop == pytest.approx(biased.held_out_accuracy - a.value)
    assert biased.n_labelled == 140 and biased.n_unlabelled == 2708 - 140
    assert "estimated accuracy on unlabelled nodes" in str(biased)


def test_the_cli_reports_on_a_published_set_and_draws_it(tmp_path):
    # the published sets are found through $SRGNN_DATA when no --splits-path is given
    figure = tmp_path / "bias.png"
    out = run_main("srgnn.estimation.diagnostics", "--dataset", "cora", "--published-set", "0", "--epochs", "20",
                   "--reference", "10", "--plot", str(figure)).stdout
    assert "feature shift: above" in out and "labelled nodes: 140" in out and f"figure: {figure}" in out
    image = plt.imread(figure)
    assert image.shape[0] > 600 and image.shape[1] > 900 and image[..., :3].std() > 0.05  # drawn, not blank


@pytest.mark.parametrize("name, message", [("bias.txt", "name a .png, .pdf, .svg file"),
                                           ("missing/bias.png", "does not exist")])
def test_a_figure_path_that_cannot_be_written_is_refused_before_training(tmp_path, name, message):
    result = run_main("srgnn.estimation.diagnostics", "--dataset", "cora", "--published-set", "0",
                      "--plot", str(tmp_path / name), check=False)
    assert result.returncode == 2 and message in result.stderr


def test_each_shift_keeps_its_reference_values(cora, cora_published):
    report = bias_report(cora, cora_published[0], **{**QUICK, "n_reference": 12})
    for shift in (report.feature_shift, report.propagated_shift, report.hidden_shift, report.degree_shift):
        assert len(shift.reference) == 12
        assert shift.percentile == pytest.approx(sum(r < shift.value for r in shift.reference) / 12)


@pytest.mark.parametrize("kwargs, message", [
    ({"models": ()}, "models is empty"),
    ({"n_bootstrap": 0}, "n_bootstrap"),
    ({"folds": 141}, "more than the 140 labelled nodes"),
])
def test_bad_requests_are_refused(cora, cora_published, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bias_report(cora, cora_published[0], **{**QUICK, **kwargs})


def test_a_labelled_set_missing_a_class_is_refused(cora):
    with pytest.raises(ValueError, match="no training node"):
        bias_report(cora, torch.nonzero(cora.y == 0).view(-1)[:20], **QUICK)


def test_a_class_with_one_labelled_node_cannot_be_held_out(cora):
    train = torch.cat([torch.nonzero(cora.y == c).view(-1)[:1 if c == 0 else 5] for c in range(7)])
    with pytest.raises(ValueError, match="a class has a single labelled node"):
        bias_report(cora, train, **QUICK)


def test_iid_labels_reach_the_estimate_and_are_left_out_of_its_targets(cora, cora_published):
    from srgnn import Trainer

    biased = cora_published[0]
    val = cora.val_mask.nonzero().view(-1)
    val = val[~torch.isin(val, biased)]
    report = bias_report(cora, biased, **QUICK, method="held_out", held_out=(val, cora.y[val]))
    assert report.n_iid_labelled == val.numel() and "reading 449 IID labels" in str(report)
    # method="held_out" is the report's first model's accuracy on those nodes: that model,
    # retrained with the report's seed, gives it.
    trainer = Trainer(GCN(cora.num_features, cora.num_classes), epochs=QUICK["epochs"], seed=0).fit(cora, biased)
    assert report.accuracy.value == pytest.approx(float((trainer.predict(cora)[val] == cora.y[val]).double().mean()))
    atc = bias_report(cora, biased, **QUICK, method="atc", held_out=(val, cora.y[val])).accuracy
    assert atc.method == "atc" and 0.0 <= atc.low <= atc.value <= atc.high <= 1.0


def test_held_out_nodes_inside_the_labelled_set_and_label_methods_without_them_are_refused(cora, cora_published):
    biased = cora_published[0]
    val = cora.val_mask.nonzero().view(-1)[:50]
    with pytest.raises(ValueError, match="held_out would go unread: pass method='atc'"):
        bias_report(cora, biased, **QUICK, held_out=(val, cora.y[val]))
    with pytest.raises(ValueError, match="held_out nodes must lie outside train_idx"):
        bias_report(cora, biased, **QUICK, method="atc", held_out=(biased[:5], cora.y[biased[:5]]))
    result = run_main("srgnn.estimation.diagnostics", "--dataset", "cora", "--published-set", "0", "--method", "atc",
                      "--splits-path", str(SEEDS_DIR / "localized_seeds_cora.p"), check=False)
    assert result.returncode == 2 and "--method atc reads labels: pass --held-out" in result.stderr
