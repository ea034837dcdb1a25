"""Mini-batch training (``Trainer(batch_size=..., num_neighbors=...)``) and its neighbour sampler."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from srgnn import ShiftRobust, Trainer
from srgnn.training.loader import HAS_COMPILED_SAMPLER, TorchNeighborSampler, neighbor_loader, with_fan_outs
from srgnn.models import GAT, GCN, SGC, GraphSAGE


@pytest.mark.parametrize("model, features", [(GCN, None), (GraphSAGE, None), (GAT, None), (GCN, 8)])
def test_one_batch_of_full_neighbourhoods_is_a_full_batch_epoch(cora, cora_published, model, features):
    """With every neighbour sampled and one batch holding the whole training set (and the whole
    IID sample), each mini-batch epoch is the full-batch epoch: the same losses and weights, up
    to float rounding (the sums run over other rows in another order). Dropout is off, since
    the two draw their masks over different rows. ``features=8`` projects the features on 8 dense
    columns, fewer than the hidden layer's 16, so GCN's first layer propagates before multiplying by W."""
    train = cora_published[0]
    data = cora.clone()
    if features is not None:
        data.x = cora.x @ torch.randn(cora.num_features, features, generator=torch.Generator().manual_seed(0))

    def fit(**options) -> Trainer:
        robust = ShiftRobust(model(data.num_features, data.num_classes, dropout=0.0), "cmd", lam=1.0,
                             instance_weights="kmm")
        return Trainer(robust, epochs=4, seed=3, **options).fit(data, train)

    full, mini = fit(), fit(batch_size=train.numel())
    assert len(mini.history_) == 4
    assert torch.allclose(torch.tensor(full.history_), torch.tensor(mini.history_), rtol=0, atol=1e-5)
    assert torch.allclose(full.logits(data), mini.logits(data), rtol=0, atol=2e-5)
    # Adam divides by the root of each gradient's square, so a weight whose gradient is near 0
    # moves by up to a step either way on a rounding difference: 1e-4 is 1% of a step (lr 0.01).
    for a, b in zip(full.model_.parameters(), mini.model_.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-4)
    # Not equal by construction: a wrong normalization of the sampled rows moves the first loss.
    assert full.history_[0] != pytest.approx(full.history_[-1], abs=1e-3)


def test_sampled_mini_batches_learn_cora(cora, cora_published):
    train = cora_published[0]
    test = ~torch.isin(torch.arange(cora.num_nodes), train)
    trainer = Trainer(ShiftRobust(GCN(cora.num_features, cora.num_classes), "cmd"), epochs=30, batch_size=70,
                      num_neighbors=[10, 5]).fit(cora, train)
    assert len(trainer.history_) == 30 and trainer.history_[-1] < trainer.history_[0]
    assert trainer.evaluate(cora, test)["micro_f1"] > 0.6


def test_full_neighbourhoods_are_the_k_hop_subgraph(cora):
    seeds = torch.tensor([0, 5, 100, 2000])
    batch = neighbor_loader(cora, [-1, -1])(seeds)
    subset, *_ = k_hop_subgraph(seeds, 2, cora.edge_index, num_nodes=cora.num_nodes)
    assert torch.equal(batch.n_id[:4], seeds) and batch.batch_size == 4
    assert set(batch.n_id.tolist()) == set(subset.tolist())
    assert sum(batch.num_sampled_nodes) == batch.n_id.numel()


def test_fan_outs_bound_each_nodes_sampled_neighbours_and_the_seed_fixes_the_draw(cora):
    seeds = torch.arange(0, 300, 7)
    batch = neighbor_loader(cora, [3, 2], seed=1)(seeds)
    edges = set(map(tuple, cora.edge_index.t().tolist()))
    assert all(tuple(e) in edges for e in batch.n_id[batch.edge_index].t().tolist())
    first_hop = batch.edge_index[:, : batch.num_sampled_edges[0]]
    in_degree = torch.bincount(cora.edge_index[1], minlength=cora.num_nodes)
    per_seed = torch.bincount(first_hop[1], minlength=seeds.numel())
    assert torch.equal(per_seed, in_degree[seeds].clamp_max(3))  # min(3, degree) distinct neighbours each
    assert first_hop.t().unique(dim=0).size(0) == first_hop.size(1)
    again = neighbor_loader(cora, [3, 2], seed=1)(seeds)
    other = neighbor_loader(cora, [3, 2], seed=2)(seeds)
    assert torch.equal(batch.n_id, again.n_id) and torch.equal(batch.edge_index, again.edge_index)
    assert not torch.equal(batch.n_id, other.n_id)


def test_a_loader_with_other_fan_outs_shares_the_index_and_samples_as_a_new_one(cora):
    seeds = torch.arange(0, 300, 7)
    two_hops = neighbor_loader(cora, [3, 2], seed=1)
    one_hop = with_fan_outs(two_hops, [4], seed=5)
    assert one_hop.node_sampler.colptr is two_hops.node_sampler.colptr  # the CSC built once
    fresh = neighbor_loader(cora, [4], seed=5)(seeds)
    batch = one_hop(seeds)
    assert len(batch.num_sampled_nodes) == 2
    assert torch.equal(batch.n_id, fresh.n_id) and torch.equal(batch.edge_index, fresh.edge_index)
    # The copy leaves the original's fan-outs and draws alone.
    assert torch.equal(two_hops(seeds).n_id, neighbor_loader(cora, [3, 2], seed=1)(seeds).n_id)


@pytest.mark.skipif(not HAS_COMPILED_SAMPLER, reason="needs pyg-lib or torch-sparse")
def test_torch_sampler_takes_the_nodes_pyg_lib_takes_with_full_neighbourhoods(cora):
    from torch_geometric.loader import NeighborLoader

    seeds = torch.arange(0, 2708, 97)
    ours = NeighborLoader(cora, [-1, -1], neighbor_sampler=TorchNeighborSampler(cora, [-1, -1]))(seeds)
    theirs = NeighborLoader(cora, [-1, -1])(seeds)
    assert torch.equal(ours.n_id, theirs.n_id) and ours.num_sampled_nodes == theirs.num_sampled_nodes


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 32, "num_neighbors": [10]}, "has 1 fan-out(s), but GCN has 2 message-passing layer"),
    ({"batch_size": 32, "num_neighbors": [10, 0]}, "each fan-out must be an int >= 1, or -1"),
    ({"num_neighbors": [10, 10]}, "pass batch_size too"),
])
def test_bad_mini_batch_options_are_refused(cora, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Trainer(GCN(cora.num_features, cora.num_classes), **options)


def test_a_model_of_the_whole_graph_is_refused_mini_batches(cora):
    with pytest.raises(ValueError, match="cannot train on sampled neighbourhoods"):
        Trainer(SGC(cora.num_features, cora.num_classes), batch_size=32)


def test_the_iid_batch_is_sampled_only_as_deep_as_the_hidden_layer(cora, cora_published):
    """The shift term reads the IID nodes' hidden layer: a two-layer model's IID batch takes the
    fan-out of its first layer, one hop, and holds far fewer nodes than the labelled batch."""
    from srgnn.graph import Graph
    from srgnn.training.minibatch import MiniBatches
    from srgnn.robustness.preparation import prepare

    train = cora_published[0]
    robust = ShiftRobust(GraphSAGE(cora.num_features, cora.num_classes), "cmd")
    graph = Graph.from_data(cora)
    setup = prepare(robust, graph, train, 0)
    batches = MiniBatches(robust, setup, graph, train, 0, torch.device("cpu"), batch_size=140, num_neighbors=[7, 3])
    iid = setup.iid_idx[:140]
    deep, shallow = batches.loader(iid), batches.iid_loader(iid)
    assert len(shallow.num_sampled_nodes) == 2 and len(deep.num_sampled_nodes) == 3
    first_hop = shallow.edge_index[:, : shallow.num_sampled_edges[0]]
    in_degree = torch.bincount(cora.edge_index[1], minlength=cora.num_nodes)
    assert torch.equal(torch.bincount(first_hop[1], minlength=iid.numel()), in_degree[iid].clamp_max(3))
    assert shallow.num_nodes < deep.num_nodes


@pytest.mark.parametrize("model", [GCN, GraphSAGE])
def test_a_sampled_batch_computes_each_layer_at_the_nodes_it_reads(cora, model):
    """On a sampled batch (seeds first, then each hop's new nodes) GCN and GraphSAGE compute
    layer l only at the R_l nodes within ``hops - l`` hops of the seeds: the hidden layer has
    R_1 rows and the logits one per seed, equal to those of the same batch computed on every row."""
    from srgnn.graph import Graph, Subgraph

    torch.manual_seed(0)
    net = model(cora.num_features, cora.num_classes).eval()
    seeds = torch.arange(0, 2708, 50)
    batch = neighbor_loader(cora, [4, 3], seed=0)(seeds)
    in_degree = Graph.from_data(cora).in_degree()
    trimmed = Subgraph.from_batch(batch, in_degree, cora.x[batch.n_id], torch.device("cpu"))
    every_row = Subgraph(trimmed.edge_index, trimmed.num_nodes, x=trimmed.x, full_degree=trimmed.full_degree,
                         depth=trimmed.depth)
    logits, hidden = net.forward_with_hidden(trimmed.x, trimmed)
    full_logits, full_hidden = net.forward_with_hidden(every_row.x, every_row)
    within_one_hop = batch.num_sampled_nodes[0] + batch.num_sampled_nodes[1]
    assert logits.shape == (seeds.numel(), cora.num_classes) and hidden.size(0) == within_one_hop
    assert full_logits.size(0) == full_hidden.size(0) == batch.num_nodes > within_one_hop
    assert torch.allclose(logits, full_logits[: seeds.numel()], atol=1e-5)
    assert torch.allclose(hidden, full_hidden[:within_one_hop], atol=1e-5)


def _pyg_loader(data, train, num_neighbors, batch_size, seed=0):
    """PyG's NeighborLoader over the training nodes, as a user builds it (with srgnn's torch
    sampler where neither pyg-lib nor torch-sparse is installed)."""
    from torch_geometric.loader import NeighborLoader

    from srgnn.training.loader import HAS_COMPILED_SAMPLER, TorchNeighborSampler

    sampler = None if HAS_COMPILED_SAMPLER else TorchNeighborSampler(data, num_neighbors,
                                                                    torch.Generator().manual_seed(seed))
    return NeighborLoader(data, num_neighbors, input_nodes=train, batch_size=batch_size, shuffle=True,
                          neighbor_sampler=sampler)


@pytest.mark.parametrize("build", [lambda d: GCN(d.num_features, 7, dropout=0.0),
                                   lambda d: ShiftRobust(GCN(d.num_features, 7, dropout=0.0), "cmd")])
def test_your_loader_with_whole_neighbourhoods_trains_the_full_batch_model(cora, cora_published, build):
    # One batch of every training node with every neighbour and no dropout: the same loss, so
    # the same model as full-batch training, up to the order of float sums.
    train = cora_published[0]
    full = Trainer(build(cora), epochs=30, seed=0).fit(cora, train)
    loader = _pyg_loader(cora, train, [-1, -1], batch_size=train.numel())
    batched = Trainer(build(cora), epochs=30, seed=0).fit(cora, train, loader=loader)
    torch.testing.assert_close(batched.logits(cora), full.logits(cora), rtol=1e-3, atol=1e-4)


def test_pyg_graphsage_trains_on_your_neighbor_loader_shift_robust(cora, cora_published):
    from torch_geometric.nn.models import GraphSAGE as PyGGraphSAGE

    train, test = cora_published[0], torch.arange(1708, 2708)
    loader = _pyg_loader(cora, train, [10, 10], batch_size=32)
    model = ShiftRobust(PyGGraphSAGE(cora.num_features, 32, 2, out_channels=7), "cmd")
    trainer = Trainer(model, epochs=30, seed=0).fit(cora, train, loader=loader)
    assert trainer.evaluate(cora, test)["micro_f1"] > 0.55
    assert len(trainer.history_) == 30


def test_a_loader_is_checked_where_it_is_given(cora, cora_published):
    train = cora_published[0]
    with pytest.raises(ValueError, match="not both"):
        Trainer(GCN(cora.num_features, 7), batch_size=16).fit(cora, train, loader=[])
    with pytest.raises(TypeError, match="iterate again"):
        Trainer(GCN(cora.num_features, 7), epochs=1).fit(cora, train, loader=(b for b in []))
    outside = _pyg_loader(cora, torch.arange(2000, 2100), [5, 5], batch_size=50)
    with pytest.raises(ValueError, match="is not a training node; build the loader with input_nodes=train_idx"):
        Trainer(GCN(cora.num_features, 7), epochs=1).fit(cora, train, loader=outside)
