"""The building blocks every model shares: the dropout mask and the sparse-input product."""
import pytest
import torch

from srgnn.models.base import SparseInputLinear, _transposed, _transposed_product, dropout, keep_mask


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


def test_sparse_dropout_drops_stored_entries_and_rescales(cora):
    from srgnn.trainer import model_input

    x = model_input(cora.x)
    torch.manual_seed(0)
    out = dropout(x, 0.5, True)
    assert torch.equal(out.crow_indices(), x.crow_indices()) and torch.equal(out.col_indices(), x.col_indices())
    kept = out.values() != 0
    assert float(kept.float().mean()) == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(out.values()[kept], 2 * x.values()[kept])
    assert dropout(x, 0.5, False) is x


def test_sparse_input_product_and_its_backward_equal_dense(cora):
    from srgnn.trainer import model_input

    torch.manual_seed(0)
    x = dropout(model_input(cora.x), 0.5, True)  # the transpose plan comes from x's pattern
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
