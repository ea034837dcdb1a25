"""Where to label next: ``srgnn.estimation.acquisition.suggest_labels``."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from srgnn.estimation.acquisition import propagated_embedding, suggest_labels
from srgnn.graph import Graph


def two_cliques(size: int = 6) -> Data:
    """Two cliques joined by one edge; clique 0's nodes share feature 0, clique 1's feature 1."""
    edges = [(i, j) for c in (0, size) for i in range(c, c + size) for j in range(c, c + size) if i != j]
    edges += [(size - 1, size), (size, size - 1)]
    x = torch.zeros(2 * size, 2)
    x[:size, 0], x[size:, 1] = 1.0, 1.0
    return Data(x=x, edge_index=torch.tensor(edges).T, y=torch.arange(2 * size) // size)


def test_the_first_pick_covers_the_clique_with_no_label():
    data = two_cliques()
    picked = suggest_labels(data, torch.tensor([0, 1]), 1)
    assert picked.tolist()[0] >= 6


def test_picks_are_distinct_unlabelled_candidates_and_seeded(cora):
    train = torch.arange(0, 140)
    candidates = torch.arange(100, 2708, 3)
    picked = suggest_labels(cora, train, 20, candidates=candidates, max_candidates=500, seed=1)
    assert picked.numel() == 20 == picked.unique().numel()
    assert set(picked.tolist()) <= set(candidates.tolist()) - set(train.tolist())
    assert torch.equal(picked, suggest_labels(cora, train, 20, candidates=candidates, max_candidates=500, seed=1))


def test_entropy_weights_steer_picks_to_uncertain_nodes():
    data = two_cliques()
    train = torch.tensor([0, 6])  # each clique has a label; only clique 1 is uncertain
    logits = torch.zeros(12, 2)
    logits[:6, 0] = 10.0
    picked = suggest_labels(data, train, 1, logits=logits)
    assert picked.item() >= 6
    logits = torch.zeros(12, 2)
    logits[6:, 1] = 10.0  # now clique 0 is the uncertain one
    assert suggest_labels(data, train, 1, logits=logits).item() < 6


def test_embedding_rows_are_unit_and_match_a_dense_computation():
    data = two_cliques()
    graph = Graph.from_data(data)
    emb = propagated_embedding(graph, hops=2)
    assert torch.allclose(emb.norm(dim=1), torch.ones(12))
    a = torch.zeros(12, 12)
    a[data.edge_index[0], data.edge_index[1]] = 1.0
    a += torch.eye(12)
    d = a.sum(1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    x = data.x / data.x.sum(1, keepdim=True)
    assert torch.allclose(emb, torch.nn.functional.normalize(a_hat @ a_hat @ x, dim=1), atol=1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"k": 11}, ValueError, "more than the 10 unlabelled"),
    ({"k": 0}, ValueError, "k"),
    ({"k": 1, "logits": torch.zeros(5, 2)}, ValueError, "logits must be finite"),
    ({"k": 1, "candidates": torch.tensor([99])}, IndexError, "candidates contains node 99"),
    ({"k": 1, "temperature": 0.0}, ValueError, "temperature"),
])
def test_bad_requests_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        suggest_labels(two_cliques(), torch.tensor([0, 6]), **kwargs)
