import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn.robustness.shift import cmd, conditional_cmd, kmm_weights, kmm_weights_from_sq_distances, label_shift_weights, mmd

MEASURES = [cmd, mmd]


def _pair(seed, n, m, d):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen, dtype=torch.float64), torch.rand(m, d, generator=gen, dtype=torch.float64)


sizes = dict(seed=st.integers(0, 10_000), n=st.integers(2, 40), m=st.integers(2, 40), d=st.integers(1, 8))


@pytest.mark.parametrize("measure", MEASURES)
@settings(max_examples=30, deadline=None)
@given(**sizes)
def test_zero_on_identical_symmetric_nonnegative(measure, seed, n, m, d):
    a, b = _pair(seed, n, m, d)
    assert measure(a, a.clone()).item() == pytest.approx(0.0, abs=1e-9)
    assert measure(a, b).item() >= 0.0
    assert measure(a, b).item() == pytest.approx(measure(b, a).item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("measure", MEASURES)
@settings(max_examples=30, deadline=None)
@given(seed=sizes["seed"], d=sizes["d"], shift=st.floats(0.05, 0.5))
def test_larger_shift_is_larger(measure, seed, d, shift):
    a, _ = _pair(seed, 30, 30, d)
    assert measure(a, a + 2 * shift).item() > measure(a, a + shift).item() > 0


@pytest.mark.parametrize("measure", MEASURES)
@settings(max_examples=20, deadline=None)
@given(**sizes)
def test_gradients_flow(measure, seed, n, m, d):
    a, b = _pair(seed, n, m, d)
    a.requires_grad_(True)
    measure(a, b + 0.3).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    a.grad = None
    measure(a, a.detach().clone()).backward()
    assert torch.isfinite(a.grad).all()


def test_cmd_bounds_normalization():
    a, b = _pair(0, 20, 20, 3)
    assert cmd(a, b, moments=1, bounds=(0.0, 2.0)).item() == pytest.approx(cmd(a, b, moments=1).item() / 2)


def test_cmd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="n, d\\]"):
        cmd(torch.rand(4, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match="n, d\\]"):
        cmd(torch.rand(2, 4, 3), torch.rand(3, 4, 3))
    with pytest.raises(ValueError, match="\\[n, d\\]"):
        kmm_weights(torch.rand(2, 4, 3), torch.rand(2, 4, 3), torch.zeros(4))


def test_kmm_constraints_and_lower_mmd():
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    target = torch.randn(200, 4, generator=gen, dtype=torch.float64) + torch.tensor([0.8, 0, 0, 0.0])
    labels = torch.arange(60) % 3
    beta = kmm_weights(source, target, labels, lower=0.2)
    assert beta.shape == (60,) and float(beta.min()) >= 0.2 - 1e-9
    for c in range(3):
        assert float(beta[labels == c].sum()) == pytest.approx(20.0, abs=1e-6)
    achieved = mmd(source, target, weights=beta).item()
    assert achieved < 0.8 * mmd(source, target).item()
    # The weighted MMD, recomputed independently.
    from srgnn.robustness.shift import rbf_kernel

    g = (1.0, 0.1, 1e-3)
    w = beta / 60
    manual = w @ rbf_kernel(source, source, g) @ w - 2 * w @ rbf_kernel(source, target, g).mean(1) \
        + rbf_kernel(target, target, g).mean()
    assert achieved == pytest.approx(manual.item(), rel=1e-6, abs=1e-9)
    assert mmd(source, target, weights=torch.ones(60, dtype=torch.float64)).item() == pytest.approx(
        mmd(source, target).item(), rel=1e-9)
    # An upper bound binds where the unbounded weights exceed it, and the class sums still hold.
    assert float(beta.max()) > 1.5
    capped = kmm_weights(source, target, labels, lower=0.2, upper=1.5)
    assert float(capped.max()) <= 1.5 + 1e-9 and float(capped.min()) >= 0.2 - 1e-9
    for c in range(3):
        assert float(capped[labels == c].sum()) == pytest.approx(20.0, abs=1e-6)
    assert achieved <= mmd(source, target, weights=capped).item() + 1e-12  # the cap can only cost


def test_kmm_from_squared_distances_equals_kmm_on_the_rows():
    gen = torch.Generator().manual_seed(1)
    source, target = torch.randn(12, 3, generator=gen, dtype=torch.float64), torch.randn(30, 3, generator=gen,
                                                                                      dtype=torch.float64)
    labels = torch.arange(12) % 2
    from_rows = kmm_weights(source, target, labels)
    sq = kmm_weights_from_sq_distances(torch.cdist(source, source) ** 2, torch.cdist(source, target) ** 2, labels)
    assert torch.equal(from_rows, sq)
    with pytest.raises(ValueError, match="source_sq \\[n, n\\] and cross_sq \\[n, m\\]"):
        kmm_weights_from_sq_distances(torch.rand(12, 11), torch.rand(12, 30), labels)
    with pytest.raises(ValueError, match="labels has 11 entries for 12 source nodes"):
        kmm_weights_from_sq_distances(torch.rand(12, 12), torch.rand(12, 30), labels[:11])


@pytest.mark.parametrize("lower,upper", [(1.5, None), (-0.1, None), (0.2, 0.5)])
def test_kmm_infeasible_bounds_raise(lower, upper):
    with pytest.raises(ValueError, match="infeasible"):
        kmm_weights(torch.rand(10, 2), torch.rand(10, 2), torch.zeros(10), lower=lower, upper=upper)


def test_cmd_and_mmd_of_a_batch_equal_each_entry_alone():
    torch.manual_seed(0)
    a, b = torch.randn(4, 30, 8), torch.randn(4, 50, 8) * 1.5
    for measure in (cmd, mmd):
        batched = measure(a, b)
        assert batched.shape == (4,)
        torch.testing.assert_close(batched, torch.stack([measure(a[i], b[i]) for i in range(4)]))


def test_a_standardized_cmd_is_scale_free_and_batches():
    a, b = torch.randn(50, 8) * 0.1, torch.randn(60, 8) * 0.1 + 0.05
    plain, scaled = cmd(a, b), cmd(a, b, standardize=True)
    torch.testing.assert_close(cmd(30 * a, 30 * b, standardize=True), scaled, rtol=1e-5, atol=0)  # the plain CMD's terms grow as 30^k
    assert float(cmd(30 * a, 30 * b)) > 100 * float(plain)
    batched = cmd(torch.stack([a[:40], 2 * a[10:]]), torch.stack([b, 3 * b]), standardize=True)
    torch.testing.assert_close(batched, torch.stack([cmd(a[:40], b, standardize=True),
                                                     cmd(2 * a[10:], 3 * b, standardize=True)]))
    with pytest.raises(ValueError, match="bounds or standardize"):
        cmd(a, b, bounds=(-1, 1), standardize=True)


def test_a_weighted_cmd_is_the_cmd_of_rows_repeated_by_their_weights():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    counts = torch.tensor([1, 3, 1, 2, 1, 4])
    torch.testing.assert_close(cmd(a, b, weights=counts.double()), cmd(a.repeat_interleave(counts, 0), b))
    assert cmd(a, b, weights=torch.ones(6, dtype=torch.float64)) == cmd(a, b)
    batch = cmd(torch.stack([a, a]), torch.stack([b, b]), weights=torch.stack([counts.double(), torch.ones(6).double()]))
    torch.testing.assert_close(batch, torch.stack([cmd(a, b, weights=counts.double()), cmd(a, b)]))
    with pytest.raises(ValueError, match=r"weights must be \(6,\), one per row"):
        cmd(a, b, weights=torch.ones(5))
    # weighting b's rows is weighting a's, with the roles swapped (CMD is symmetric)
    torch.testing.assert_close(cmd(b, a, weights_b=counts.double()), cmd(a, b, weights=counts.double()))


def test_label_shift_weights_give_labelled_rows_the_targets_predicted_class_mix():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # uniform, as a localized set
    # a target predicted (confidently) 1/2 class 0, 1/4 class 1, 1/4 class 2
    target_logits = 50.0 * torch.eye(3)[torch.tensor([0, 0, 1, 2])]
    weights = label_shift_weights(labels, target_logits)
    torch.testing.assert_close(weights, torch.tensor([1.5, 1.5, 0.75, 0.75, 0.75, 0.75]))
    assert weights.mean().item() == pytest.approx(1.0)
    # the class mix the weights give is the target's
    mix = torch.zeros(3).index_add(0, labels, weights) / weights.sum()
    torch.testing.assert_close(mix, torch.tensor([0.5, 0.25, 0.25]))
    logits = torch.randn(4, 3, requires_grad=True)
    assert not label_shift_weights(labels, logits).requires_grad
    with pytest.raises(ValueError, match="disagree on the batch"):
        label_shift_weights(labels.expand(2, 6), target_logits)


def test_conditional_cmd_compares_each_class_with_the_target_rows_predicted_in_it():
    torch.manual_seed(0)
    a, b = torch.randn(9, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    hard = 1e4 * torch.eye(3, dtype=torch.float64)[predicted]  # softmax exactly one-hot
    by_hand = sum((labels == c).double().mean() * cmd(a[labels == c], b[predicted == c]) for c in range(3))
    torch.testing.assert_close(conditional_cmd(a, b, labels, hard), by_hand)
    batched = conditional_cmd(torch.stack([a, 2 * a]), torch.stack([b, b]), labels.expand(2, 9), hard.expand(2, 7, 3))
    torch.testing.assert_close(batched, torch.stack([by_hand, conditional_cmd(2 * a, b, labels, hard)]))
    # a class no labelled row has adds nothing
    four = torch.cat([hard, torch.zeros(7, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(conditional_cmd(a, b, labels, four), by_hand)
    with pytest.raises(ValueError, match="labels must be"):
        conditional_cmd(a, b, labels[:5], hard)


def test_conditional_cmd_ignores_the_class_mix_that_the_marginal_cmd_pulls_at():
    torch.manual_seed(1)
    centres = 3.0 * torch.randn(2, 5, dtype=torch.float64)
    labels = torch.tensor([0] * 20 + [1] * 20)  # a uniform labelled set
    rows = centres[labels] + 0.1 * torch.randn(40, 5, dtype=torch.float64)
    # the target: the same class-conditional rows, in a 90 / 10 class mix
    target_labels = torch.tensor([0] * 36 + [1] * 4)
    target = centres[target_labels] + 0.1 * torch.randn(40, 5, dtype=torch.float64)
    logits = 1e4 * torch.eye(2, dtype=torch.float64)[target_labels]
    assert conditional_cmd(rows, target, labels, logits) < 0.1 * cmd(rows, target)
    # the target's class probabilities are an estimate, not a path for gradients
    logits = logits.clone().requires_grad_()
    rows.requires_grad_()
    conditional_cmd(rows, target, labels, logits).backward()
    assert logits.grad is None and rows.grad is not None
