"""Synthetic graphs with planted classes, for tests and benchmarks at any scale.

* ``synthetic_graph``: a stochastic block model with class-dependent Gaussian features.
* ``shifted_block_model``: a degree-corrected, two-level block model whose classes are made of
  communities with features of their own, so that a localized training set (one community's
  worth of a class) is a biased sample, as on real citation graphs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected


def synthetic_graph(num_nodes: int, num_classes: int, *, avg_degree: float = 10.0,
                    homophily: float = 0.8, num_features: int = 32, feature_noise: float = 1.0,
                    seed: int = 0) -> Data:
    """A stochastic-block-model graph with class-dependent Gaussian features.

    Each node draws ``avg_degree / 2`` edge endpoints; with probability ``homophily`` the
    other endpoint is a uniform node of the same class, else a uniform node of any class.
    Features are ``mu_y + feature_noise * eps`` with one random unit-scale mean per class.
    Memory is O(num_nodes * (avg_degree + num_features)), so a million nodes takes seconds.

    Returns:
        ``Data`` with ``x`` ``[N, num_features]``, undirected ``edge_index``, ``y`` ``[N]``,
        ``num_classes`` and random 10/10/80 ``train``/``val``/``test`` masks.
    """
    if num_nodes < num_classes or num_classes < 2:
        raise ValueError(f"Need num_classes >= 2 and num_nodes >= num_classes; got {num_nodes}, {num_classes}.")
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"homophily must lie in [0, 1]; got {homophily}.")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, num_nodes)
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=num_classes)
    if counts.min() == 0:
        raise ValueError(f"A class received no nodes; use more than {num_nodes} nodes for {num_classes} classes.")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    num_draws = int(num_nodes * avg_degree / 2)
    src = rng.integers(0, num_nodes, num_draws)
    same = rng.random(num_draws) < homophily
    dst = rng.integers(0, num_nodes, num_draws)
    cls = y[src[same]]
    dst[same] = order[starts[cls] + (rng.random(same.sum()) * counts[cls]).astype(np.int64)]
    keep = src != dst
    edge_index = torch.from_numpy(np.stack([src[keep], dst[keep]]))
    edge_index = coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)

    means = rng.standard_normal((num_classes, num_features)).astype(np.float32)
    x = means[y] + feature_noise * rng.standard_normal((num_nodes, num_features), dtype=np.float32)
    data = Data(x=torch.from_numpy(x), edge_index=edge_index, y=torch.from_numpy(y))
    return _labelled(data, num_classes, f"synthetic-{num_nodes}", rng)


def _labelled(data: Data, num_classes: int, name: str, rng: np.random.Generator) -> Data:
    """``data`` with random 10/10/80 train/val/test masks, ``num_classes`` and ``name``."""
    split = rng.random(data.num_nodes)
    data.train_mask = torch.from_numpy(split < 0.1)
    data.val_mask = torch.from_numpy((split >= 0.1) & (split < 0.2))
    data.test_mask = torch.from_numpy(split >= 0.2)
    data.num_classes, data.name = num_classes, name
    return data


def shifted_block_model(num_nodes: int, num_classes: int, *, communities: int = 8, avg_degree: float = 10.0,
                        homophily: float = 0.9, community_share: float = 0.9, degree_exponent: float = 2.5,
                        num_features: int = 64, community_spread: float = 1.5, feature_noise: float = 2.0,
                        seed: int = 0) -> Data:
    r"""A degree-corrected two-level block model in which localized labels are a biased sample.

    Each class is split into ``communities`` communities of random sizes. Every node draws
    ``avg_degree / 2`` edge endpoints in proportion to a power-law weight
    :math:`\theta \propto u^{-1/(\gamma - 1)}` (``degree_exponent`` :math:`\gamma`): with
    probability ``homophily`` the other endpoint is of its class, and of those, with
    probability ``community_share`` of its community; endpoints are drawn in proportion to
    :math:`\theta` too (degree correction). A node's features are its class mean plus its
    community's offset (``community_spread`` times a random direction of unit scale per
    dimension) plus ``feature_noise`` Gaussian noise: a class's communities look alike only on
    average, so a model trained on one community's nodes (what PPR-localized sampling picks)
    misjudges the others, while an IID sample sees them all. Memory is
    O(num_nodes * (avg_degree + num_features)).

    Returns:
        ``Data`` with ``x`` ``[N, num_features]``, undirected ``edge_index``, ``y`` ``[N]``,
        ``community`` ``[N]`` (class-major ids), ``num_classes`` and random 10/10/80
        ``train``/``val``/``test`` masks.
    """
    if num_classes < 2 or communities < 1 or num_nodes < 2 * num_classes * communities:
        raise ValueError(f"Need num_classes >= 2, communities >= 1 and num_nodes >= 2 * num_classes * communities; "
                         f"got {num_nodes}, {num_classes}, {communities}.")
    for name, value in (("homophily", homophily), ("community_share", community_share)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]; got {value}.")
    if degree_exponent <= 2.0:
        raise ValueError(f"degree_exponent must be > 2 (a finite mean degree); got {degree_exponent}.")
    rng = np.random.default_rng(seed)
    groups = num_classes * communities
    community = rng.choice(groups, num_nodes, p=rng.dirichlet(np.full(groups, 5.0)))
    y = community // communities
    theta = rng.random(num_nodes) ** (-1.0 / (degree_exponent - 1.0))
    theta = np.minimum(theta, np.sqrt(num_nodes))  # no node above sqrt(N) times the typical weight

    def weighted_members(labels: np.ndarray, count: int):
        """Per label, its nodes sorted with the cumulative share of theta, to draw from."""
        order = np.argsort(labels, kind="stable")
        cumulative = np.cumsum(theta[order])
        ends = np.cumsum(np.bincount(labels, minlength=count))
        starts = np.concatenate([[0], ends[:-1]])
        before = np.where(starts > 0, cumulative[np.maximum(starts - 1, 0)], 0.0)
        return order, cumulative, starts, ends, before

    def draw(members, label: np.ndarray) -> np.ndarray:
        order, cumulative, starts, ends, before = members
        total = cumulative[ends[label] - 1] - before[label]
        position = np.searchsorted(cumulative, before[label] + rng.random(label.size) * total, side="right")
        return order[np.clip(position, starts[label], ends[label] - 1)]

    num_draws = int(num_nodes * avg_degree / 2)
    src = rng.choice(num_nodes, num_draws, p=theta / theta.sum())
    kind = rng.random(num_draws)
    dst = rng.choice(num_nodes, num_draws, p=theta / theta.sum())
    same_class = kind < homophily
    same_community = kind < homophily * community_share
    in_class = same_class & ~same_community
    dst[in_class] = draw(weighted_members(y, num_classes), y[src[in_class]])
    dst[same_community] = draw(weighted_members(community, groups), community[src[same_community]])
    keep = src != dst
    edge_index = torch.from_numpy(np.stack([src[keep], dst[keep]]))
    edge_index = coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)

    class_means = rng.standard_normal((num_classes, num_features))
    offsets = community_spread * rng.standard_normal((groups, num_features))
    x = class_means[y] + offsets[community] + feature_noise * rng.standard_normal((num_nodes, num_features))
    data = Data(x=torch.from_numpy(x.astype(np.float32)), edge_index=edge_index, y=torch.from_numpy(y),
                community=torch.from_numpy(community))
    return _labelled(data, num_classes, f"shifted-block-{num_nodes}", rng)
