"""PPR-S (push-based approximate PPR and the authors' large-graph sampler) on real PubMed and Cora."""
import numpy as np
import pytest
import torch

from srgnn.sampling import PushSampler, push_ppr
from srgnn.sampling.push import Pusher, _walk_matrix, exact_walk_ppr


def test_push_ppr_is_within_its_tolerance_of_exact_ppr_on_pubmed(pubmed):
    seeds, eps = [0, 17, 500, 9000, 19716], 1e-5
    indices, values = push_ppr(pubmed, torch.tensor(seeds), teleport=0.1, eps=eps, top_k=pubmed.num_nodes)
    exact = exact_walk_ppr(pubmed, torch.tensor(seeds), 0.1).numpy()
    degree = _walk_matrix(pubmed.edge_index, pubmed.num_nodes)[1]
    for r in range(len(seeds)):
        approx = np.zeros(pubmed.num_nodes)
        kept = indices[r] >= 0
        approx[indices[r][kept].numpy()] = values[r][kept].numpy()
        assert (approx <= exact[:, r] + 1e-6).all()  # pushes never overshoot
        assert ((exact[:, r] - approx) <= eps * np.maximum(degree, 1) + 1e-7).all()  # the push guarantee
        top = set(np.argsort(-exact[:, r], kind="stable")[:50].tolist())
        assert len(top & set(indices[r, :50].tolist())) >= 45  # top-50 overlap >= 90%


def test_push_rows_are_sorted_and_padded(cora):
    indices, values = push_ppr(cora, torch.tensor([0, 1]), eps=1e-3, top_k=3000)
    assert indices.shape == (2, 3000) and (values[:, :-1] >= values[:, 1:]).all()
    assert indices[0, 0] == 0 and indices[1, 0] == 1  # a seed's own PPR is its largest
    assert ((indices == -1) == (values == 0)).all() and (indices[0] == -1).any()  # support < N at eps 1e-3


def test_a_reused_pusher_leaves_no_state_and_blocks_do_not_change_rows(cora):
    """The working arrays are reused across blocks and calls: each block must reset what it
    touched, and a seed's row must not depend on which seeds share its block."""
    seeds = np.arange(0, 120, 7)
    pusher = Pusher(cora, 0.1, 1e-4, 60, block=4)
    first = pusher(seeds)
    again = pusher(seeds[::-1].copy())
    assert not pusher.residual.any() and not pusher.estimate.any()
    whole = push_ppr(cora, torch.from_numpy(seeds), 0.1, 1e-4, 60)  # one block of all 18 seeds
    for rows in (first, whole):
        assert torch.equal(rows[0], again[0].flip(0)) and torch.equal(rows[1], again[1].flip(0))


def test_push_sampler_fills_each_quota_from_seeds_deterministically(pubmed):
    sampler = PushSampler(pubmed, 0.01, candidates=torch.arange(pubmed.num_nodes))
    first = sampler.sample(seed=3)
    counts = torch.bincount(pubmed.y[first], minlength=3).tolist()
    assert sampler.quota == {0: 41, 1: 77, 2: 78} and counts == [41, 77, 78]  # floor(1% of 4103, 7739, 7875)
    assert sampler.report_["seeds_used"] >= 3 and sampler.report_["filled_at_random"] == 0
    assert torch.equal(first, sampler.sample(seed=3)) and not torch.equal(first, sampler.sample(seed=4))
    # Localized: the set's nodes are fewer hops apart than a uniform sample's of the same classes.
    from srgnn.sampling import iid_sample, within_class_hops

    uniform = iid_sample(pubmed, first.numel(), seed=0)
    assert within_class_hops(pubmed, [first]) < within_class_hops(pubmed, [uniform])


def test_push_sampler_reports_dropped_classes_and_refuses_empty_quotas(cora):
    sampler = PushSampler(cora, 0.01, candidates=torch.arange(cora.num_nodes), min_quota=3)
    # Cora's classes hold 351, 217, 418, 818, 426, 298, 180 nodes: quotas 3, 2, 4, 8, 4, 2, 1.
    assert sampler.dropped_classes == [1, 5, 6] and sampler.quota == {0: 3, 2: 4, 3: 8, 4: 4}
    train = sampler.sample(seed=0)
    assert sorted(set(cora.y[train].tolist())) == [0, 2, 3, 4] and train.numel() == 19
    assert sampler.report_["dropped_classes"] == [1, 5, 6]
    with pytest.raises(ValueError, match="no class reaches min_quota=10"):
        PushSampler(cora, 0.01, candidates=torch.arange(cora.num_nodes))
    with pytest.raises(ValueError, match="ratio must lie in"):
        PushSampler(cora, 1.5)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        push_ppr(cora, torch.tensor([0]), eps=0)


def test_push_sq_distances_match_exact_ppr_rows(cora):
    from srgnn.sampling import push_sq_distances

    sources, targets = torch.tensor([0, 5, 9]), torch.tensor([0, 100, 2000, 2707])
    sq = push_sq_distances(cora, sources, targets, teleport=0.1, eps=1e-7, top_k=cora.num_nodes)
    exact = exact_walk_ppr(cora, torch.cat([sources, targets]), 0.1).T  # rows: PPR vectors
    reference = torch.cdist(exact[:3], exact[3:]) ** 2
    assert sq.shape == (3, 4) and sq[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert torch.allclose(sq, reference, rtol=1e-3, atol=1e-6)


def test_kmm_on_a_graph_too_large_for_exact_ppr_asks_for_push_rows(cora, cora_published, monkeypatch):
    import srgnn.robustness.preparation
    from srgnn import ShiftRobust
    from srgnn.models import APPNP

    monkeypatch.setattr(srgnn.robustness.preparation, "MAX_EXACT_PPR_NODES", 1000)  # Cora's 2,708 nodes stand in for millions
    train = cora_published[0]
    with pytest.raises(ValueError, match="pass kmm_ppr='push'"):
        srgnn.robustness.preparation.prepare(ShiftRobust(APPNP(cora.num_features, cora.num_classes), kmm_ppr="exact"), cora, train)
    robust = ShiftRobust(APPNP(cora.num_features, cora.num_classes), kmm_ppr="push")
    weights, y = srgnn.robustness.preparation.prepare(robust, cora, train).weights, cora.y[train]
    assert weights.min() >= 0.2 - 1e-6 and not torch.allclose(weights, torch.ones_like(weights))
    for c in range(cora.num_classes):  # KMM keeps each class's total weight
        assert float(weights[y == c].sum()) == pytest.approx(float((y == c).sum()), rel=1e-4)
    with pytest.raises(ValueError, match="kmm_ppr"):
        ShiftRobust(APPNP(cora.num_features, cora.num_classes), kmm_ppr="approximate")
