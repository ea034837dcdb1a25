"""PyG's models as they are, through the Trainer and ShiftRobust: no subclass, no wrapper to write."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.nn import models as pyg

from srgnn import ShiftRobust, Trainer
from srgnn.models import GCN, PyGModel


def _others(data, train):
    mask = torch.ones(data.num_nodes, dtype=torch.bool)
    mask[train] = False
    return mask.nonzero().view(-1)


def test_pygs_gcn_trains_as_it_is_and_is_left_as_it_was_given(cora, cora_published):
    train = cora_published[0]
    model = pyg.GCN(1433, 64, 2, 7, dropout=0.5)
    trainer = Trainer(ShiftRobust(model), seed=0).fit(cora, train)
    assert trainer.evaluate(cora, _others(cora, train))["micro_f1"] > 0.6
    assert not model.convs[1]._forward_pre_hooks  # the hook that reads the hidden layer is gone
    assert model.convs[0].lin.weight.grad is not None  # its own parameters were the ones trained


def test_the_hidden_layer_is_the_input_of_the_last_layer_or_the_one_named(cora):
    model = pyg.GraphSAGE(1433, 32, 3, 7).eval()
    logits, hidden = PyGModel(model).forward_with_hidden(cora.x, cora.edge_index)
    assert PyGModel(model).hidden_site == "convs.2" and hidden.shape == (2708, 32) and logits.shape == (2708, 7)
    expected = model.convs[1](model.act(model.convs[0](cora.x, cora.edge_index)), cora.edge_index).relu()
    torch.testing.assert_close(hidden, expected)

    class TwoLayers(nn.Module):  # not PyG's: the hidden layer is named
        def __init__(self):
            super().__init__()
            self.first, self.last, self.in_channels, self.out_channels = nn.Linear(1433, 16), nn.Linear(16, 7), 1433, 7

        def forward(self, x, edge_index):
            return self.last(self.first(x).tanh())

    _, hidden = PyGModel(TwoLayers(), hidden_site="last").forward_with_hidden(cora.x, cora.edge_index)
    assert hidden.shape == (2708, 16) and float(hidden.abs().max()) <= 1.0
    with pytest.raises(ValueError, match="has no submodule 'nope'"):
        PyGModel(TwoLayers(), hidden_site="nope")
    with pytest.raises(ValueError, match="Sequential has no positive int in_channels; pass PyGModel"):
        PyGModel(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), hidden_site="1")


@pytest.mark.slow
def test_pygs_gcn_graphsage_and_gat_score_near_srgnns_gcn(cora, cora_published):
    """On 3 published Cora sets, PyG's GCN, GraphSAGE and GAT (one head, its default) alone
    and shift-robust score within 2 points of srgnn's GCN (68.6; GAT 66.7 alone, 69.3
    shift-robust). The GAT paper's 8 heads with dropout 0.6 score 61.7 alone under the
    Trainer's defaults, and shift-robust collapse to 11.0 unless capped (max_pull=1: 68.2); the
    collapse warning says so."""
    def score(build, robust: bool) -> float:
        scores = []
        for seed, train in enumerate(cora_published[:3]):
            model = ShiftRobust(build()) if robust else build()
            scores.append(Trainer(model, seed=seed).fit(cora, train).evaluate(cora, _others(cora, train))["micro_f1"])
        return sum(scores) / len(scores)

    reference = score(lambda: GCN(1433, 7), robust=False)
    for build in (lambda: pyg.GCN(1433, 64, 2, 7, dropout=0.5), lambda: pyg.GraphSAGE(1433, 64, 2, 7, dropout=0.5),
                  lambda: pyg.GAT(1433, 64, 2, 7, dropout=0.5)):
        for robust in (False, True):
            assert score(build, robust) > reference - 0.02


def test_a_pyg_model_with_lazy_input_width_takes_its_shapes_in_the_preparation(cora, cora_published):
    # in_channels=-1: PyG's lazy layers; the fit's preparation gives them their shapes, outside
    # the random stream, so a fit depends on its seed alone
    train = cora_published[0]
    model = pyg.GCN(-1, 32, 2, 7)
    robust = ShiftRobust(PyGModel(model, in_channels=1433), "mmd")  # the width the input is checked against
    first = Trainer(robust, epochs=20, seed=0).fit(cora, train).logits(cora)
    assert model.convs[0].lin.weight.shape == (32, 1433)
    again = Trainer(robust, epochs=20, seed=0).fit(cora, train).logits(cora)
    assert torch.equal(first, again)
