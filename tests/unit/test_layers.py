"""The building blocks every model shares: the dropout mask and the sparse-input product."""
import pytest
import torch
from torch_geometric.utils import to_undirected

from srgnn.kernels.layers import SparseInputLinear, _transposed, _transposed_product, dropout, keep_mask, relu_dropout


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_keep_mask_keeps_one_minus_p_independently(p):
    gen = torch.Generator().manual_seed(0)
    mask = keep_mask(200_003, p, generator=gen)  # not a multiple of 8
    assert mask.dtype == torch.bool and mask.shape == (200_003,)
    assert float(mask.float().mean()) == pytest.approx(1 - p, abs=0.005)
    # Neighbouring entries (bits of one byte for p = 0.5) are independent: P(both kept) = (1-p)^2.
    both = (mask[:-1] & mask[1:]).float().mean()
    assert float(both) == pytest.approx((1 - p) ** 2, abs=0.005)
    assert torch.equal(mask, keep_mask(200_003, p, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(mask, keep_mask(200_003, p, generator=torch.Generator().manual_seed(1)))


def test_keep_mask_at_one_half_is_the_bits_of_random_bytes():
    # Entry 8 i + j is bit j of byte i, so the CPU (NumPy) and GPU (torch) unpacking agree.
    mask = keep_mask(1003, 0.5, generator=torch.Generator().manual_seed(3))
    random_bytes = torch.randint(0, 256, (126,), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    bits = (random_bytes.view(-1, 1).long() >> torch.arange(8)) & 1
    assert torch.equal(mask, bits.view(-1)[:1003].bool())


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dense_dropout_scales_kept_entries_forward_and_backward(p):
    x = torch.randn(300, 7, dtype=torch.float64, requires_grad=True)
    keep = keep_mask(x.numel(), p, generator=torch.Generator().manual_seed(0))
    out = dropout(x, p, True, keep)
    expected = x.detach() * keep.view_as(x) / (1 - p)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad * keep.view_as(x) / (1 - p))


@pytest.mark.parametrize("read_hidden", [False, True])
def test_fused_relu_dropout_equals_relu_then_dropout_bit_for_bit(read_hidden):
    a = torch.randn(500, 32, requires_grad=True)
    bias = torch.randn(32, requires_grad=True)
    weight = torch.randn(32, 3)

    def loss_and_grads(fused: bool):
        torch.manual_seed(5)
        pre = a * 1.0  # a fresh tensor, as from a product: the fused layer overwrites it
        if fused:
            hidden, dropped = relu_dropout(pre, bias, 0.5, True)
        else:
            hidden = torch.relu(pre + bias)
            dropped = dropout(hidden, 0.5, True)
        loss = (dropped @ weight).square().sum() + (hidden[:40].sum() if read_hidden else 0)
        return [loss.detach(), hidden.detach(), dropped.detach(), *torch.autograd.grad(loss, (a, bias))]

    for fused, unfused in zip(loss_and_grads(True), loss_and_grads(False)):
        assert torch.equal(fused, unfused)


def test_fused_relu_dropout_in_eval_is_relu():
    a, bias = torch.randn(50, 8), torch.randn(8)
    hidden, dropped = relu_dropout(a, bias, 0.5, False)
    assert torch.equal(hidden, torch.relu(a + bias)) and dropped is hidden


def test_sparse_dropout_keeps_the_masked_entries_alone_and_rescales(cora):
    from srgnn.graph import compact_features

    x = compact_features(cora.x)
    keep = keep_mask(x.values().numel(), 0.5, generator=torch.Generator().manual_seed(0))
    out = dropout(x, 0.5, True, keep)
    assert out.values().numel() == int(keep.sum())  # on the CPU the dropped entries are not stored
    expected = torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), x.values() * keep * 2, x.shape)
    assert torch.equal(out.to_dense(), expected.to_dense())
    torch.manual_seed(0)
    assert float(dropout(x, 0.5, True).values().numel() / x.values().numel()) == pytest.approx(0.5, abs=0.01)
    assert dropout(x, 0.5, False) is x


def test_sparse_dropout_keeps_empty_and_fully_dropped_rows():
    # rows: 0 has two entries, 1 none, 2 one (dropped), 3 two (one kept)
    x = torch.sparse_csr_tensor(torch.tensor([0, 2, 2, 3, 5]), torch.tensor([0, 3, 1, 0, 2]),
                                torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), (4, 4))
    out = dropout(x, 0.5, True, torch.tensor([True, True, False, False, True]))
    assert out.crow_indices().tolist() == [0, 2, 2, 2, 3]
    assert torch.equal(out.to_dense(), torch.tensor([[2.0, 0, 0, 4], [0] * 4, [0] * 4, [0, 0, 10, 0]]))


def test_sparse_input_product_and_its_backward_equal_dense(cora):
    from srgnn.graph import compact_features

    torch.manual_seed(0)
    x = dropout(compact_features(cora.x), 0.5, True)
    grad = torch.randn(cora.num_nodes, 16)
    dense = x.to_dense()
    torch.testing.assert_close(_transposed(x).to_dense(), dense.T)
    torch.testing.assert_close(_transposed_product(x, grad), dense.T @ grad, rtol=1e-5, atol=1e-5)
    layer = SparseInputLinear(cora.num_features, 16)
    reference = torch.nn.Linear(cora.num_features, 16)
    reference.load_state_dict(layer.state_dict())
    layer(x).backward(grad)
    reference(dense).backward(grad)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("heads,concat", [(8, True), (1, True), (2, False)])
def test_sparse_gat_conv_equals_pyg_gat_conv(cora, heads, concat):
    from torch_geometric.nn import GATConv

    from srgnn.models.gat import SparseGATConv

    torch.manual_seed(0)
    reference = GATConv(16, 4, heads=heads, concat=concat, dropout=0.0)
    torch.manual_seed(0)
    ours = SparseGATConv(16, 4, heads=heads, concat=concat, dropout=0.0)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), ours.parameters()))  # same init
    # Cora's edges plus a self-loop that must be replaced, not doubled.
    edge_index = torch.cat([cora.edge_index, torch.tensor([[5], [5]])], 1)
    x = torch.randn(cora.num_nodes, 16, requires_grad=True)
    expected, got = reference(x, edge_index), ours(x, edge_index)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(expected, [x, *reference.parameters()], grad),
                    torch.autograd.grad(got, [x, *ours.parameters()], grad)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_sparse_gat_conv_attention_dropout_is_inverted_dropout(cora):
    from srgnn.models.gat import SparseGATConv

    conv = SparseGATConv(16, 4, heads=2, dropout=0.5).train()
    x = torch.randn(cora.num_nodes, 16)
    with torch.no_grad():
        torch.manual_seed(0)
        first = conv(x, cora.edge_index)
        torch.manual_seed(0)
        assert torch.equal(conv(x, cora.edge_index), first)  # the global seed decides the masks
        # Unbiased: averaged over masks, the output approaches the eval-mode one (measured:
        # mean absolute gap 0.037 after 200 draws, 0.018 after 800, for outputs of mean size 0.63).
        mean = torch.stack([conv(x, cora.edge_index) for _ in range(200)]).mean(0)
        expected = conv.eval()(x, cora.edge_index)
    assert float((mean - expected).abs().mean()) < 0.1 * float(expected.abs().mean())


def _directed_graph(num_nodes: int = 30, num_edges: int = 90, features: int = 12):
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(0, num_nodes, (num_edges,), generator=generator)
    dst = (src + torch.randint(1, num_nodes, (num_edges,), generator=generator)) % num_nodes  # no self-loops
    edge_index = torch.stack([src, dst]).unique(dim=1)
    assert to_undirected(edge_index).size(1) > edge_index.size(1) + 50  # most edges have no reverse
    return torch.randn(num_nodes, features, generator=generator), edge_index


def _assert_equals_pyg_on_a_directed_graph(model, convs, activation, weight_pairs):
    """``model``'s hidden layer, logits and weight gradients against two PyG convs holding its
    weights; ``weight_pairs`` lists (srgnn weight, PyG weight) whose gradients must agree."""
    x, edge_index = _directed_graph()
    logits, hidden = model.forward_with_hidden(x, edge_index)
    expected_hidden = activation(convs[0](x, edge_index))
    expected = convs[1](expected_hidden, edge_index)
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(logits, expected)
    # The backward multiplies by the adjacency's transpose, which is not the adjacency here.
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    (logits * weights).sum().backward()
    (expected * weights).sum().backward()
    for ours, theirs in weight_pairs:
        torch.testing.assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize("hidden", [8, 32])  # 32: a widening first layer, propagated before W
def test_gcn_equals_pyg_gcn_conv_on_a_directed_graph(hidden):
    # PyG's flow: node i aggregates its in-neighbours (edge_index[1] == i), normalized by in-degree.
    from torch_geometric.nn import GCNConv

    from srgnn.models import GCN

    model = GCN(12, 3, hidden_channels=hidden).eval()
    convs = [GCNConv(12, hidden), GCNConv(hidden, 3)]
    with torch.no_grad():
        for conv, lin, bias in zip(convs, model.lins, model.biases):
            conv.lin.weight.copy_(lin.weight)
            conv.bias.copy_(bias)
    _assert_equals_pyg_on_a_directed_graph(model, convs, torch.tanh,
                                           [(lin.weight, conv.lin.weight) for conv, lin in zip(convs, model.lins)])


def test_graphsage_equals_pyg_sage_conv_on_a_directed_graph():
    from torch_geometric.nn import SAGEConv

    from srgnn.models import GraphSAGE

    model = GraphSAGE(12, 3, hidden_channels=8).eval()
    convs = [SAGEConv(12, 8), SAGEConv(8, 3)]
    with torch.no_grad():
        for conv, root, neighbour in zip(convs, model.roots, model.neighbours):
            conv.lin_r.weight.copy_(root.weight)
            conv.lin_l.bias.copy_(root.bias)
            conv.lin_l.weight.copy_(neighbour.weight)
    pairs = [(ours, theirs) for conv, root, neighbour in zip(convs, model.roots, model.neighbours)
             for ours, theirs in ((root.weight, conv.lin_r.weight), (neighbour.weight, conv.lin_l.weight))]
    _assert_equals_pyg_on_a_directed_graph(model, convs, torch.relu, pairs)
