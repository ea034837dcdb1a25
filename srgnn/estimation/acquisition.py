r"""Where to label next: the unlabelled nodes whose labels would widen a biased labelled set most.

A localized labelled set covers a few neighbourhoods; the model is unsure, and wrong, far from
them. ``suggest_labels`` picks ``k`` nodes greedily for a weighted facility-location objective
(Nemhauser et al., 1978: greedy is within :math:`1 - 1/e` of the best set),

.. math::
    F(S) = \sum_u w_u \max_{s \in L \cup S} \mathrm{sim}(u, s),

over target nodes :math:`u`, with :math:`L` the labelled set,
:math:`\mathrm{sim}(u, v) = \exp((\cos(h_u, h_v) - 1) / \tau)` on propagated features
:math:`h = \hat A^K X` (the nodes SGC would treat alike; :math:`\tau` = ``temperature``) and
:math:`w_u` the trained model's predictive entropy at :math:`u` (1 without a model). Each pick
is the candidate that most raises the similarity of uncertain nodes to their nearest label, so
picks land in regions the labelled set leaves uncovered, spread over them rather than piled on
the most uncertain few.

The defaults (entropy weights, :math:`\tau = 0.1`) were chosen on validation nodes of 10
generated localized Cora sets (GCN and SR-GCN) and 6 PubMed sets (GCN) against plain cosine
similarity, unweighted coverage and top-entropy picks, the rule (highest mean gain over random
picks) fixed before the runs (docs/acquisition.md).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import as_tensor, check_index, check_int, check_number
from ..graph import Graph
from ..kernels.propagation import sgc_features


def propagated_embedding(graph: Graph, hops: int = 2) -> Tensor:
    r"""Unit rows of :math:`\hat A^K D_x^{-1} X` (features scaled to sum 1, then ``hops``
    propagation steps), ``[N, F]``: cosine similarity between rows is ``suggest_labels``'s
    similarity."""
    x = graph.data.x if graph.data is not None else graph.x
    x = (x.to_dense() if x.is_sparse or x.is_sparse_csr else x).float()
    x = x / x.abs().sum(1, keepdim=True).clamp_min(1e-12)
    return torch.nn.functional.normalize(sgc_features(graph.adjacency("sym"), x, hops), dim=1)


def _entropy(logits: Tensor) -> Tensor:
    log_p = logits.double().log_softmax(1)
    return -(log_p.exp() * log_p).sum(1)


def suggest_labels(graph: Graph | Data, train_idx: Tensor, k: int, *, logits: Tensor | None = None,
                   candidates: Tensor | None = None, hops: int = 2, temperature: float | None = 0.1, max_candidates: int = 4096,
                   max_targets: int = 20_000, seed: int = 0) -> Tensor:
    """The ``k`` nodes to label next, in pick order, ``[k]``.

    Args:
        graph: the graph with its features (``Data`` or ``srgnn.Graph``).
        train_idx: the labelled nodes ``[n]``.
        k: how many nodes to suggest.
        logits: a model's outputs ``[N, C]`` (``trainer.logits(graph)``, called) trained on ``train_idx``: nodes
            weigh by its predictive entropy. ``None`` weighs every node alike (pure coverage).
        candidates: nodes that may be suggested ``[m]`` (default: every unlabelled node).
        hops: propagation steps of the similarity's features.
        temperature: the similarity kernel's width; ``None`` uses the plain cosine similarity.
        max_candidates, max_targets: above these, a seeded uniform subsample of the candidates
            (and of the nodes whose coverage is scored) keeps memory at
            ``max_candidates * max_targets`` floats, whatever the graph's size.
        seed: the subsamples' seed (unused on graphs under both limits).
    """
    graph = graph if isinstance(graph, Graph) else Graph.from_data(graph)
    n = graph.num_nodes
    k = check_int(k, "k")
    train_idx = check_index(train_idx, n, "train_idx")
    check_int(hops, "hops", minimum=0)
    if temperature is not None:
        check_number(temperature, "temperature", strict=True)
    max_candidates, max_targets = check_int(max_candidates, "max_candidates"), check_int(max_targets, "max_targets")
    unlabelled = torch.ones(n, dtype=torch.bool)
    unlabelled[train_idx] = False
    pool = torch.zeros(n, dtype=torch.bool)
    pool[torch.arange(n) if candidates is None else check_index(candidates, n, "candidates")] = True
    pool = (pool & unlabelled).nonzero().view(-1)
    if k > pool.numel():
        raise ValueError(f"k={k} is more than the {pool.numel()} unlabelled candidate node(s); ask for at most "
                         f"{pool.numel()}, or pass more candidates.")
    if logits is None:
        weight = torch.ones(n, dtype=torch.float64)
    else:
        logits = as_tensor(logits, "logits").detach().cpu()
        if logits.dim() != 2 or logits.size(0) != n or not torch.isfinite(logits).all():
            raise ValueError(f"logits must be finite [N, C] model outputs for the graph's N={n} nodes; got shape "
                             f"{tuple(logits.shape)}.")
        weight = _entropy(logits)
    generator = torch.Generator().manual_seed(seed)

    def subsample(nodes: Tensor, limit: int) -> Tensor:
        return nodes if nodes.numel() <= limit else nodes[torch.randperm(nodes.numel(), generator=generator)[:limit]]

    pool = subsample(pool, max_candidates)
    targets = subsample(torch.arange(n), max_targets)
    embedding = propagated_embedding(graph.on("cpu"), hops)

    def kernel(nodes: Tensor) -> Tensor:  # [len(nodes), T]
        cosine = embedding[nodes] @ embedding[targets].T
        return cosine if temperature is None else cosine.sub_(1.0).div_(temperature).exp_()

    similarity = kernel(pool)  # [m, T]
    covered = kernel(train_idx).amax(0)  # [T]: each target's similarity to its nearest label
    weight = weight[targets].float()
    picked: list[int] = []
    for _ in range(k):
        gain = (similarity - covered).clamp_min_(0) @ weight  # [m]
        gain[picked] = -1.0  # a pick never gains again, but ties at 0 must not repeat it
        best = int(gain.argmax())
        picked.append(best)
        covered = torch.maximum(covered, similarity[best])
    return pool[torch.tensor(picked)]


__all__ = ["propagated_embedding", "suggest_labels"]
