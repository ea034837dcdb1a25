import warnings

import pytest
import torch

from srgnn import ShiftRobust, Trainer
from srgnn.models import APPNP, DGI, GAT, GCN, MLP, SGC, GraphSAGE
from srgnn.robustness.preparation import prepare
from srgnn.robustness.robust import steer
from srgnn.robustness.shift import cmd
from srgnn.graph import Graph, compact_features
from srgnn.sampling import LocalizedSampler

MODELS = [GCN, GAT, GraphSAGE, APPNP, SGC, MLP]


def _test_nodes(data, train):
    mask = torch.ones(data.num_nodes, dtype=torch.bool)
    mask[train] = False
    return mask


@pytest.mark.parametrize("model_cls", MODELS)
def test_every_model_learns_cora_and_exposes_hidden(cora, cora_published, model_cls):
    model = model_cls(cora.num_features, cora.num_classes)
    logits, hidden = model.forward_with_hidden(cora.x, cora.edge_index)
    assert logits.shape == (2708, 7) and hidden.size(0) == 2708
    scores = Trainer(model, epochs=100, seed=0).fit(cora, cora_published[0]).evaluate(
        cora, _test_nodes(cora, cora_published[0]))
    assert scores["micro_f1"] > 0.5 and 0 < scores["macro_f1"] <= 1


def test_receptive_subgraph_depth_and_layer_edges():
    # A path 0-1-2-3-4-5: logits read at node 0 (2 hops), the hidden layer alone at node 4 (1 hop).
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 4, 5], [1, 0, 2, 1, 3, 2, 4, 3, 5, 4]])
    whole = Graph(edge_index, 6)
    subset, sub = whole.receptive_subgraph([torch.tensor([0]), torch.tensor([4])], [2, 1])
    assert subset.tolist() == [0, 1, 2, 3, 4, 5]
    assert sub.depth.tolist() == [2, 1, 0, 0, 1, 0]
    into = lambda layer: sorted(set(layer.edge_index[1].tolist()))  # noqa: E731
    assert into(sub.layer(1)) == [0, 1, 4] and into(sub.layer(2)) == [0]
    assert sub.layer(1).read.tolist() == [0, 1, 4] and sub.layer(2).read.tolist() == [0]
    assert sub.layer(1) is sub.layer(1)  # kept on the subgraph, with its adjacency and attention structure
    assert whole.layer(2) is whole  # a whole graph: every edge
    # Attention adds self-loops only where the layer's output is read: node 0's one edge and loop.
    second = sub.layer(2).attention()
    assert list(zip(second.src.tolist(), second.dst.tolist())) == [(0, 0), (1, 0)]
    assert whole.attention().src.numel() == 10 + 6  # a whole graph: a loop at every node


def test_a_whole_graph_and_its_views_are_separate_kinds(cora):
    from srgnn.graph import LayerRows, Subgraph, model_inputs
    from torch_geometric.nn.models import GCN as PyGGCN

    whole = Graph.from_data(cora)
    subset, field = whole.receptive_subgraph(torch.tensor([0, 5]), 2)
    assert isinstance(field, Subgraph) and not isinstance(field, Graph)
    assert isinstance(field.layer(1), LayerRows) and whole.layer(1) is whole
    # Only the whole graph moves between devices and watches the user's tensors.
    assert not hasattr(field, "on") and not hasattr(field, "check_current")
    # One adapter: srgnn's models take the graph (CSR features); a PyG model dense rows and the tensor.
    x, edge_index = model_inputs(GCN(cora.num_features, 7), whole.x, whole)
    assert edge_index is whole and x.is_sparse_csr
    x, edge_index = model_inputs(PyGGCN(cora.num_features, 16, 2, 7), whole.x, whole)
    assert edge_index is whole.edge_index and torch.equal(x, cora.x)


def test_a_fit_validates_each_index_once_at_its_boundary(cora, cora_published, monkeypatch):
    import srgnn.robustness.preparation as preparation
    import srgnn.training.trainer as trainer

    checked = []
    for module in (trainer, preparation):
        original = module.check_index
        monkeypatch.setattr(module, "check_index", lambda index, n, name="index", original=original:
                            checked.append(name) or original(index, n, name))
    train = cora_published[0]
    iid = torch.tensor([n for n in range(200) if n not in set(train.tolist())])
    Trainer(ShiftRobust(APPNP(cora.num_features, 7), lam=0.1), epochs=2).fit(cora, train, iid_idx=iid)
    assert sorted(checked) == ["iid_idx", "train_idx"]
    checked.clear()
    prepare(ShiftRobust(APPNP(cora.num_features, 7)), cora, train, iid_idx=iid)  # the public step checks its own
    assert sorted(checked) == ["iid_idx", "train_idx"]


def test_receptive_subgraph_matches_pyg_k_hop_subgraph(cora):
    from torch_geometric.utils import k_hop_subgraph

    within = lambda group, hops: k_hop_subgraph(group, hops, cora.edge_index, num_nodes=cora.num_nodes)[0]  # noqa: E731
    groups, hops = [torch.tensor([0, 500, 2000]), torch.tensor([7, 1500])], [3, 1]
    subset, sub = Graph(cora.edge_index, cora.num_nodes).receptive_subgraph(groups, hops)
    assert torch.equal(subset, torch.cat([within(g, h) for g, h in zip(groups, hops)]).unique())
    # depth: the largest hops - distance over the groups, from PyG's neighbourhoods hop by hop.
    depth = torch.zeros(cora.num_nodes, dtype=torch.long)
    for group, group_hops in zip(groups, hops):
        for distance in range(group_hops, -1, -1):
            depth[within(group, distance)] = torch.clamp_min(depth[within(group, distance)], group_hops - distance)
    assert torch.equal(sub.depth, depth[subset])


@pytest.mark.parametrize("model_cls", [GCN, GAT, GraphSAGE, MLP])
def test_receptive_subgraph_gives_the_full_graph_outputs_at_the_targets(pubmed, model_cls):
    from srgnn.training.subgraph import loss_subgraph

    model = model_cls(pubmed.num_features, pubmed.num_classes).eval()
    targets = torch.tensor([0, 17, 500, 9000, 19716])
    x, edge_index, y, (local,) = loss_subgraph(model, pubmed, [targets], torch.device("cpu"))
    assert x.size(0) < pubmed.num_nodes / 2 and torch.equal(y[local], pubmed.y[targets])
    with torch.no_grad():
        full = model.forward_with_hidden(compact_features(pubmed.x), pubmed.edge_index)
        sub = model.forward_with_hidden(x, edge_index)
    for whole, part in zip(full, sub):
        torch.testing.assert_close(part[local], whole[targets], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_cls", [GCN, GAT, GraphSAGE, MLP])
def test_nodes_read_at_the_hidden_layer_only_need_its_smaller_receptive_field(pubmed, model_cls):
    from srgnn.training.subgraph import loss_subgraph

    model = model_cls(pubmed.num_features, pubmed.num_classes).eval()
    labelled, iid = torch.tensor([0, 17, 500]), torch.arange(1000, 19717, 40)
    x, edge_index, _, (local_labelled, local_iid) = loss_subgraph(
        model, pubmed, [labelled, iid], torch.device("cpu"), hidden_only=[False, True])
    wide, *_ = loss_subgraph(model, pubmed, [labelled, iid], torch.device("cpu"))
    if model_cls is not MLP:
        assert x.size(0) < wide.size(0)
    with torch.no_grad():
        logits, hidden = model.forward_with_hidden(compact_features(pubmed.x), pubmed.edge_index)
        sub_logits, sub_hidden = model.forward_with_hidden(x, edge_index)
    torch.testing.assert_close(sub_logits[local_labelled], logits[labelled], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sub_hidden[local_labelled], hidden[labelled], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sub_hidden[local_iid], hidden[iid], rtol=1e-5, atol=1e-6)


def test_models_needing_the_whole_graph_train_on_it(cora):
    from srgnn.training.subgraph import loss_subgraph

    for model in (GCN(cora.num_features, 7, batch_norm=True), APPNP(cora.num_features, 7)):
        x, *_ = loss_subgraph(model, cora, [torch.tensor([0, 1])], torch.device("cpu"))
        assert x.size(0) == cora.num_nodes


def test_csr_matmul_equals_the_dense_product_and_leaves_autograd_to_torch(cora):
    from srgnn.kernels.propagation import csr_matmul, normalized_adjacency

    adj = normalized_adjacency(cora.edge_index, cora.num_nodes)
    h = torch.randn(cora.num_nodes, 6)
    expected = adj.to_dense() @ h
    torch.testing.assert_close(csr_matmul(adj, h), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(csr_matmul(adj, h), adj @ h)  # the same MKL product, without the extra passes
    h.requires_grad_()
    out = csr_matmul(adj, h)  # an input that needs a gradient takes torch's own product
    out.sum().backward()
    torch.testing.assert_close(h.grad, adj.to_dense().T @ torch.ones_like(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["sym", "row"])
def test_appnp_rows_equal_propagation_at_the_targets(cora, norm):
    from srgnn.kernels.propagation import adjacency_pair, appnp_propagate, appnp_rows

    adj = adjacency_pair(cora.edge_index, cora.num_nodes, norm)  # "row" is not symmetric
    targets, h = torch.tensor([3, 0, 2000, 17]), torch.randn(cora.num_nodes, 5)
    torch.testing.assert_close(appnp_rows(adj, targets, 0.1, 10) @ h, appnp_propagate(adj, h, 0.1, 10)[targets],
                               rtol=1e-5, atol=1e-6)


def test_appnp_trains_on_the_rows_of_its_operator_at_the_read_nodes(cora, cora_published, monkeypatch):
    from srgnn.kernels.propagation import TargetRows
    from srgnn.training.subgraph import loss_subgraph

    model = APPNP(cora.num_features, 7).eval()
    labelled, iid = torch.tensor([5, 0, 40]), torch.tensor([40, 2000, 7])
    x, rows, y, (local_labelled, local_iid) = loss_subgraph(model, cora, [labelled, iid], torch.device("cpu"),
                                                            [False, True])
    assert isinstance(rows, TargetRows) and sorted(rows.targets.tolist()) == [0, 5, 40]
    with torch.no_grad():
        logits, hidden = model.forward_with_hidden(compact_features(cora.x), cora.edge_index)
        row_logits, row_hidden = model.forward_with_hidden(x, rows)
    torch.testing.assert_close(row_logits[labelled], logits[labelled], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(row_hidden[iid], hidden[iid])
    # Training on the rows follows the same path as propagating the whole graph.
    train = cora_published[0]
    fit = lambda: Trainer(ShiftRobust(APPNP(cora.num_features, 7), "cmd", 0.1), epochs=30, seed=0).fit(cora, train)
    on_rows = fit()
    monkeypatch.setattr(APPNP, "target_rows", lambda self, *args: None)
    whole = fit()
    torch.testing.assert_close(torch.tensor(on_rows.history_), torch.tensor(whole.history_), rtol=1e-4, atol=1e-5)
    assert torch.equal(on_rows.predict(cora), whole.predict(cora))


@pytest.mark.parametrize("model_cls", [SGC, DGI])
def test_models_on_whole_graph_features_train_on_the_target_rows(cora, model_cls):
    from srgnn.training.subgraph import loss_subgraph

    model = (DGI(cora.num_features, 7, hidden_channels=64, pretrain_epochs=5) if model_cls is DGI
             else SGC(cora.num_features, 7)).eval()
    labelled, iid = torch.tensor([5, 0, 40]), torch.tensor([40, 2000, 7])
    x, edge_index, y, (local_labelled, local_iid) = loss_subgraph(model, cora, [labelled, iid], torch.device("cpu"))
    assert edge_index is None and x.size(0) == 5 and torch.equal(y[local_iid], cora.y[iid])
    with torch.no_grad():
        whole = model(compact_features(cora.x), cora.edge_index)
        rows = model(x, None)
    torch.testing.assert_close(rows[local_labelled], whole[labelled])
    torch.testing.assert_close(rows[local_iid], whole[iid])


def test_dgi_embeddings_then_linear_classifier(cora, cora_published):
    model = DGI(cora.num_features, cora.num_classes, hidden_channels=128, pretrain_epochs=30)
    scores = Trainer(model, epochs=100).fit(cora, cora_published[0]).evaluate(cora, _test_nodes(cora, cora_published[0]))
    assert scores["micro_f1"] > 0.4


def test_training_is_bitwise_deterministic_on_cpu(cora, cora_published):
    runs = [Trainer(ShiftRobust(GCN(cora.num_features, 7)), epochs=30, seed=3, device="cpu")
            .fit(cora, cora_published[1]).logits(cora) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = Trainer(GCN(cora.num_features, 7), epochs=30, seed=4, device="cpu").fit(cora, cora_published[1]).logits(cora)
    assert not torch.equal(runs[0], other)


def test_cmd_regularization_lowers_train_iid_cmd(cora, cora_published):
    train = cora_published[2]
    plain = Trainer(GCN(cora.num_features, 7), seed=0).fit(cora, train)
    robust_model = ShiftRobust(GCN(cora.num_features, 7), "cmd", lam=5.0)
    robust = Trainer(robust_model, seed=0).fit(cora, train)
    iid = robust.setup_.iid_idx

    def hidden_cmd(trainer):
        with torch.no_grad():
            hidden = trainer.model_.forward_with_hidden(trainer.graph_.x, trainer.graph_)[1].cpu()
        return cmd(hidden[train], hidden[iid]).item()

    assert hidden_cmd(robust) < 0.7 * hidden_cmd(plain)


def test_kmm_weights_on_real_ppr_rows_hold_constraints(cora, cora_published):
    train = cora_published[0]
    robust = ShiftRobust(APPNP(cora.num_features, 7), "cmd")
    setup = prepare(robust, cora, train, seed=0)
    assert robust.instance_weights == "kmm"
    beta, y = setup.weights, cora.y[train]
    assert float(beta.min()) >= 0.2 - 1e-6
    for c in range(7):
        assert float(beta[y == c].sum()) == pytest.approx(20.0, abs=1e-3)
    # The QP minimizes this MMD (on the PPR rows at the KMM teleport).
    from srgnn.ppr import graph_ppr
    from srgnn.robustness.shift import mmd

    rows = graph_ppr(cora, torch.cat([train, setup.iid_idx]), robust.kmm_teleport).T
    source, target = rows[: train.numel()], rows[train.numel():]
    assert mmd(source, target, weights=beta.double()) < mmd(source, target)  # uniform weights are feasible
    # The same QP on the rows themselves: the weights agree to the solver's tolerance.
    from srgnn.robustness.shift import kmm_weights

    torch.testing.assert_close(beta.double(), kmm_weights(source, target, cora.y[train]), rtol=0, atol=1e-4)


def test_ppr_sq_distances_equal_those_between_the_ppr_rows(cora):
    from srgnn.ppr import graph_ppr, graph_ppr_sq_distances

    sources, targets = torch.tensor([0, 5, 2000]), torch.tensor([5, 1, 0, 2707, 40])
    rows = graph_ppr(cora, torch.cat([sources, targets])).T
    expected = torch.cdist(rows[:3], rows[3:]).pow(2)
    distances = graph_ppr_sq_distances(cora, sources, targets)
    torch.testing.assert_close(distances, expected, rtol=1e-9, atol=1e-15)
    assert distances[1, 0] == 0 and distances[0, 2] == 0  # node 5 to itself, node 0 to itself


def test_feature_dimension_mismatch(cora, cora_published):
    with pytest.raises(ValueError, match="expects 100 input features; got x with 1433"):
        Trainer(GCN(100, 7)).fit(cora, cora_published[0])


def test_training_nodes_without_labels(cora, cora_published):
    data = cora.clone()
    data.y = data.y.clone()
    data.y[cora_published[0][:3]] = -1
    with pytest.raises(ValueError, match="3 training node\\(s\\) have no valid label"):
        Trainer(GCN(1433, 7)).fit(data, cora_published[0])


def test_iid_nodes_overlapping_training_nodes(cora, cora_published):
    train = cora_published[0]
    with pytest.raises(ValueError, match="IID node\\(s\\) are also training nodes"):
        Trainer(ShiftRobust(GCN(1433, 7))).fit(cora, train, iid_idx=torch.cat([train[:5], torch.arange(2000, 2100)]))


def test_empty_class(cora, cora_published):
    train = cora_published[0]
    train = train[cora.y[train] != 3]
    with pytest.raises(ValueError, match=r"Class\(es\) \[3\] have no training node"):
        Trainer(GCN(1433, 7)).fit(cora, train)


def test_unknown_regularizer():
    with pytest.raises(ValueError, match="regularizer='wasserstein' is not supported; expected one of"):
        ShiftRobust(GCN(10, 2), regularizer="wasserstein")


@pytest.mark.parametrize("model", [GCN, MLP])
def test_a_model_without_a_hidden_layer_is_refused(model):
    with pytest.raises(ValueError, match=f"{model.__name__} needs num_layers >= 2"):
        model(10, 2, num_layers=1)
    assert model(10, 2, num_layers=3).forward_with_hidden(torch.randn(4, 10), torch.tensor([[0, 1], [1, 0]]))[1].shape == (4, 32)


def test_tensors_on_different_devices(cora, cora_published):
    with pytest.raises(ValueError, match="different devices"):
        Trainer(GCN(1433, 7)).fit(cora, cora_published[0].to("meta"))


def test_dann_baseline_trains(cora, cora_published):
    model = ShiftRobust(GCN(1433, 7), "dann", lam=0.1)
    scores = Trainer(model, epochs=50).fit(cora, cora_published[0]).evaluate(cora, _test_nodes(cora, cora_published[0]))
    # the discriminator took the hidden layer's width and trained with the model
    assert model.discriminator.layers[0].weight.shape == (32, 32) and scores["micro_f1"] > 0.5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_closely(cora, cora_published):
    train = cora_published[0]
    cpu = Trainer(ShiftRobust(GCN(1433, 7)), seed=0, device="cpu").fit(cora, train).evaluate(cora, _test_nodes(cora, train))
    gpu = Trainer(ShiftRobust(GCN(1433, 7)), seed=0, device="cuda").fit(cora, train).evaluate(cora, _test_nodes(cora, train))
    assert abs(cpu["micro_f1"] - gpu["micro_f1"]) < 0.05


def test_default_device_follows_srgnn_device(monkeypatch):
    monkeypatch.setenv("SRGNN_DEVICE", "cuda:7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Trainer(GCN(10, 2))
    assert Trainer(GCN(10, 2), device="cpu").device == torch.device("cpu")  # a named device wins
    monkeypatch.setenv("SRGNN_DEVICE", "gpu")
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        Trainer(GCN(10, 2))


def test_a_graph_keeps_one_copy_per_device_and_refuses_use_after_an_in_place_edit(cora):
    from srgnn.graph import StaleGraphError

    data = cora.clone()
    graph = Graph.from_data(data)
    assert graph.x.is_sparse_csr and graph.edge_index is data.edge_index  # already on the CPU: no copy
    meta = graph.on("meta")
    assert meta.x.device.type == "meta" and meta.edge_index.device.type == "meta"
    assert graph.on("meta") is meta and graph.on("cpu") is graph  # one copy per device, kept on the graph
    data.edge_index.add_(0)  # an in-place edit, however small: what the graph keeps may be stale
    with pytest.raises(StaleGraphError, match="modified in place.*Graph.from_data"):
        graph.adjacency()


def test_two_graphs_never_share_what_they_keep(cora, citeseer):
    first, second = Graph.from_data(cora), Graph.from_data(cora.clone())
    assert first.adjacency() is first.adjacency()  # built once per graph
    assert first.adjacency() is not second.adjacency() and second.cache.keys() == {("adjacency", "sym", torch.float32)}
    other = Graph.from_data(citeseer)
    assert other.adjacency().matrix.shape == (3327, 3327) and first.adjacency().matrix.shape == (2708, 2708)
    # SGC's propagated features: shared by every SGC on one graph, never across graphs or features.
    on_first = SGC(cora.num_features, 7).node_features(first.x, first)
    assert SGC(cora.num_features, 7).node_features(first.x, first) is on_first
    assert SGC(cora.num_features, 7).node_features(second.x, second) is not on_first
    assert SGC(cora.num_features, 7).node_features(first.x.clone(), first) is not on_first  # not the graph's x
    first.clear()
    assert first.cache == {} and SGC(cora.num_features, 7).node_features(first.x, first) is not on_first


def test_training_leaves_nothing_on_the_users_tensors(cora, cora_published):
    data = cora.clone()
    for model in (GCN(1433, 7), ShiftRobust(APPNP(1433, 7)), SGC(1433, 7), GAT(1433, 7)):
        trainer = Trainer(model, epochs=2).fit(data, cora_published[0])
        trainer.evaluate(data, _test_nodes(data, cora_published[0]))
    for tensor in (data.x, data.edge_index, data.y):
        assert vars(tensor) == {}  # no attribute set on a tensor: state lives on the Graph


def test_evaluating_after_an_in_place_edit_of_the_data_is_refused(cora, cora_published):
    from srgnn.graph import StaleGraphError

    data = cora.clone()
    trainer = Trainer(GCN(1433, 7), epochs=2).fit(data, cora_published[0])
    assert trainer.graph_.data is data
    data.x[0, 0] += 1.0
    with pytest.raises(StaleGraphError):
        trainer.evaluate(data, torch.arange(10))


def test_model_and_input_on_different_devices_is_a_clear_error(cora):
    with pytest.raises(ValueError, match="GCN is on cpu but x is on meta"):
        GCN(1433, 7)(cora.x.to("meta"), cora.edge_index)


def test_cuda_request_without_cuda_is_clear():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Trainer(GCN(10, 2), device="cuda")


def test_kmm_weights_are_solved_once_per_set_and_shared_by_models(cora, cora_published, monkeypatch):
    import srgnn.robustness.preparation

    calls = []
    solve = srgnn.robustness.preparation.graph_ppr_sq_distances
    monkeypatch.setattr(srgnn.robustness.preparation, "graph_ppr_sq_distances", lambda *a, **k: calls.append(1) or solve(*a, **k))
    train, graph = cora_published[4], Graph.from_data(cora)
    first = prepare(ShiftRobust(APPNP(cora.num_features, 7)), graph, train, seed=11)
    second = prepare(ShiftRobust(SGC(cora.num_features, 7)), graph, train, seed=11)
    other_iid = prepare(ShiftRobust(SGC(cora.num_features, 7)), graph, train, seed=12)
    assert len(calls) == 2 and torch.equal(first.weights, second.weights)
    assert not torch.equal(first.weights, other_iid.weights)
    # Kept on that graph alone: another graph, or a Data, solves again.
    again = prepare(ShiftRobust(APPNP(cora.num_features, 7)), Graph.from_data(cora), train, seed=11)
    prepare(ShiftRobust(APPNP(cora.num_features, 7)), cora, train, seed=11)
    assert len(calls) == 4 and torch.equal(again.weights, first.weights)


def test_early_stopping_reads_validation_nodes_on_the_receptive_field(cora, cora_published):
    train = cora_published[2]
    val = torch.tensor([i for i in range(2000, 2300) if i not in set(train.tolist())])
    test = _test_nodes(cora, train)
    test[val] = False
    # Patience 20: at 5 this set's validation accuracy plateaus within 10 epochs, before training.
    trainer = Trainer(GCN(cora.num_features, 7), epochs=200, patience=20, seed=0).fit(cora, train, val_idx=val)
    # It stopped early, and the restored best-on-validation model is a trained one.
    assert len(trainer.history_) < 200 and trainer.evaluate(cora, test)["micro_f1"] > 0.5


def test_validation_reads_its_own_receptive_field_and_leaves_training_as_it_is(cora, cora_published):
    # The training steps run on the training nodes' receptive field alone, with the same dropout
    # masks, whether or not validation nodes are watched (they get a field of their own).
    train = cora_published[2]
    val = torch.tensor([i for i in range(2000, 2300) if i not in set(train.tolist())])
    plain = Trainer(GCN(cora.num_features, 7), epochs=30, seed=0).fit(cora, train)
    watched = Trainer(GCN(cora.num_features, 7), epochs=30, patience=30, validate_every=5, seed=0).fit(
        cora, train, val_idx=val)
    assert watched.history_ == plain.history_


def test_dgi_pretrains_once_per_graph(cora):
    graph = Graph.from_data(cora)
    model = DGI(cora.num_features, 7, hidden_channels=32, pretrain_epochs=2)
    first = model.node_features(graph.x, graph)
    assert DGI(cora.num_features, 7, hidden_channels=32, pretrain_epochs=2).node_features(graph.x, graph) is first
    assert model.node_features(graph.x, Graph.from_data(cora)) is not first  # another graph pretrains again
    assert model.node_features(cora.x, cora.edge_index) is not first  # a plain edge_index keeps nothing


def test_dgi_embeddings_file_shares_one_pretraining_between_processes(cora, tmp_path, monkeypatch):
    path = tmp_path / "dgi.pt"
    first = DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=2, embeddings_file=path)
    written = first.node_features(cora.x.clone(), cora.edge_index)  # pretrains and writes the file
    assert path.exists() and not list(tmp_path.glob("*.partial"))

    def no_pretraining(*args):
        raise AssertionError("pretrained although the file holds these embeddings")

    loading = DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=2, embeddings_file=path)
    with monkeypatch.context() as patch:
        patch.setattr(loading, "_pretrain", no_pretraining)
        # A new x misses the in-memory cache, as another process would.
        assert torch.equal(loading.node_features(cora.x.clone(), cora.edge_index), written)
    # Other settings or other features do not match the file: pretrained again, and rewritten.
    other = DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=2, pretrain_seed=1, embeddings_file=path)
    reseeded = other.node_features(cora.x.clone(), cora.edge_index)
    assert not torch.equal(reseeded, written)
    edited = cora.x.clone()
    edited[0, 0] += 1.0
    with monkeypatch.context() as patch:
        patch.setattr(other, "_pretrain", lambda *a: reseeded + 1)
        assert torch.equal(other.node_features(edited, cora.edge_index), reseeded + 1)
    # A file that is not ours is left alone, with a clear error.
    foreign = tmp_path / "notes.pt"
    foreign.write_text("not a tensor file")
    with pytest.raises(ValueError, match="does not hold DGI embeddings written by srgnn.*delete it or pass another path"):
        DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=2, embeddings_file=foreign).node_features(
            cora.x.clone(), cora.edge_index)
    assert foreign.read_text() == "not a tensor file"


def test_dgi_pretraining_is_seeded_on_its_own(cora):
    # Studies shard sets over worker processes: the embeddings must not depend on the random
    # state of whichever run pretrains first, and pretraining must not consume that state.
    def embed(global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        model = DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=3)
        state = torch.get_rng_state()
        features = model.node_features(cora.x.clone(), cora.edge_index)  # a new x: pretrains again
        drawn = torch.rand(3)
        torch.set_rng_state(state)
        assert torch.equal(drawn, torch.rand(3))  # the caller's random state is as it was
        return features

    first = embed(1)
    torch.testing.assert_close(first, embed(2), rtol=0, atol=0)
    other = DGI(cora.num_features, 7, hidden_channels=16, pretrain_epochs=3, pretrain_seed=1)
    assert not torch.equal(other.node_features(cora.x.clone(), cora.edge_index), first)


def test_the_papers_label_balanced_iid_sample_is_an_explicit_option(cora, cora_published):
    train = cora_published[0]
    uniform = ShiftRobust(GCN(1433, 7))
    paper = ShiftRobust(GCN(1433, 7), iid="label-balanced")
    assert uniform.iid == "uniform" and prepare(uniform, cora, train, seed=0).iid_idx.numel() == 500  # reads no label
    iid = prepare(paper, cora, train, seed=0).iid_idx
    assert torch.bincount(cora.y[iid], minlength=7).tolist() == [20] * 7  # 140 / 7 per class, by the true labels
    assert bool((iid < 1500).all()) and not torch.isin(iid, train).any()  # the paper's pool, no training node
    with pytest.raises(ValueError, match="iid='labels' is not supported"):
        ShiftRobust(GCN(1433, 7), iid="labels")


def _pulls(loss, weight):
    return torch.autograd.grad(loss, weight, retain_graph=True)[0]


def test_a_capped_penalty_never_pulls_harder_than_max_pull_times_the_labels():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    weight = torch.randn(8, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    hidden = x @ weight
    ce, penalty = hidden[:10].pow(2).mean(), 100 * cmd(hidden[:10], hidden[10:])
    capped = steer(ce, penalty, [weight], max_pull=2.0)
    assert float(_pulls(capped, weight).norm()) == pytest.approx(float(2 * _pulls(ce, weight).norm()), rel=1e-5)
    assert steer(ce, penalty / 1e6, [weight], max_pull=2.0) is not None
    weak = penalty / 1e6
    torch.testing.assert_close(_pulls(steer(ce, weak, [weight], max_pull=2.0), weight), _pulls(weak, weight))


def test_a_deconflicted_penalty_loses_its_pull_against_the_labels():
    generator = torch.Generator().manual_seed(0)  # float64: the check is exact algebra, not rounding
    x = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    weight = torch.randn(8, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    hidden = x @ weight
    ce, penalty = hidden[:10].pow(2).mean(), cmd(hidden[:10], hidden[10:])
    g_c = _pulls(ce, weight)
    opposed = -penalty if float((_pulls(penalty, weight) * g_c).sum()) > 0 else penalty  # pulls against the labels
    g_p = _pulls(opposed, weight)
    total = _pulls(ce + steer(ce, opposed, [weight], deconflict=True), weight)
    torch.testing.assert_close(total, g_c + g_p - (g_p * g_c).sum() / (g_c * g_c).sum() * g_c, rtol=1e-5, atol=1e-6)
    left = (total - g_c).flatten()  # what is left of the penalty's pull is orthogonal to the labels'
    assert float(left @ g_c.flatten()) == pytest.approx(0.0, abs=1e-5 * float(left.norm() * g_c.norm()))
    agreeing = -opposed  # a pull along the labels' is left as it is
    torch.testing.assert_close(_pulls(steer(ce, agreeing, [weight], deconflict=True), weight), _pulls(agreeing, weight))


def test_replicas_are_steered_each_against_their_own_labels():
    generator = torch.Generator().manual_seed(2)
    x, weight = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in ((50, 8), (8, 4)))
    stacked = torch.stack([weight, 3 * weight]).requires_grad_()
    hiddens = [x @ stacked[0], x @ stacked[1]]
    ce = torch.stack([h[:10].pow(2).mean() for h in hiddens])
    penalty = torch.stack([100 * cmd(h[:10], h[10:]) for h in hiddens])
    together = _pulls((ce + steer(ce, penalty, [stacked], max_pull=2.0, deconflict=True)).sum(), stacked)
    for r, scale in enumerate((1.0, 3.0)):
        alone = (scale * weight).requires_grad_()
        h = x @ alone
        ce_r, penalty_r = h[:10].pow(2).mean(), 100 * cmd(h[:10], h[10:])
        expected = _pulls(ce_r + steer(ce_r, penalty_r, [alone], max_pull=2.0, deconflict=True), alone)
        torch.testing.assert_close(together[r], expected, rtol=1e-4, atol=1e-6)


def test_the_cap_acts_on_appnp_whose_hidden_layer_the_labels_read_through_a_twin(cora, cora_published):
    # APPNP's fused ReLU-dropout returns the hidden layer and a dropped twin; the labels reach the
    # parameters beneath both, so the cap weighs the pulls there.
    robust = ShiftRobust(APPNP(1433, 7), lam=100.0, instance_weights=None, max_pull=1.0).train()
    setup = prepare(robust, cora, cora_published[0], seed=0)
    params = [p for p in robust.model.parameters()]
    terms = robust.loss_terms(cora.x, cora.edge_index, cora.y, cora_published[0], setup.iid_idx, setup.weights)
    ce_pull = torch.cat([g.flatten() for g in torch.autograd.grad(terms["cross-entropy"], params[:2],
                                                                    retain_graph=True)]).norm()
    penalty_pull = torch.cat([g.flatten() for g in torch.autograd.grad(terms["lam * penalty"], params[:2])]).norm()
    assert float(penalty_pull) == pytest.approx(float(ce_pull), rel=1e-4)


def test_a_collapse_on_raw_counts_is_reported_and_a_capped_penalty_avoids_it():
    from srgnn.data import load_dataset
    from srgnn.training.trainer import ShiftCollapseWarning

    photo = load_dataset("amazon-photo")  # bag-of-words counts, as PyG gives them
    train = LocalizedSampler(photo, sketch_dim=64).sample(0)  # a sketch: exact distances take 15 s here
    with pytest.warns(ShiftCollapseWarning, match="training accuracy 0.*lam=1.0.*max_pull=1"):
        Trainer(ShiftRobust(GCN(745, 8)), seed=0).fit(photo, train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShiftCollapseWarning)  # a fit that trains says nothing
        trainer = Trainer(ShiftRobust(GCN(745, 8), max_pull=1.0), seed=0).fit(photo, train)
    assert trainer.evaluate(photo, train)["micro_f1"] > 0.9


@pytest.mark.parametrize("max_pull", ["x", 0, -1.0])
def test_a_cap_that_is_not_a_positive_number_auto_or_none_is_refused(max_pull):
    with pytest.raises(ValueError, match="max_pull must be a"):
        ShiftRobust(GCN(8, 3), max_pull=max_pull)
    assert ShiftRobust(APPNP(8, 3)).max_pull == 1.0 and ShiftRobust(GCN(8, 3)).max_pull is None  # "auto"


def test_label_shift_weights_only_a_built_in_distance_and_only_as_a_flag():
    with pytest.raises(ValueError, match="label_shift=True weights the rows of 'cmd' or 'mmd'"):
        ShiftRobust(GCN(8, 3), "dann", label_shift=True)
    with pytest.raises(TypeError, match="label_shift must be True or False"):
        ShiftRobust(GCN(8, 3), label_shift="yes")
    with pytest.raises(ValueError, match="mini-batch training does not compute"):
        Trainer(ShiftRobust(GCN(8, 3), label_shift=True), batch_size=16)


def test_the_conditional_penalty_only_with_cmd_and_only_full_batch():
    for options in ({"regularizer": "mmd"}, {"label_shift": True}):
        with pytest.raises(ValueError, match="conditional=True compares the classes one by one with 'cmd'"):
            ShiftRobust(GCN(8, 3), conditional=True, **options)
    with pytest.raises(TypeError, match="conditional must be True or False"):
        ShiftRobust(GCN(8, 3), conditional=1)
    with pytest.raises(ValueError, match="mini-batch training does not compute"):
        Trainer(ShiftRobust(GCN(8, 3), conditional=True), batch_size=16)
