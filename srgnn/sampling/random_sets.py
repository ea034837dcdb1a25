"""Unbiased and degree-biased training sets: the references and a second bias family."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import degree

from .._validation import check_graph, check_index, check_int, check_number, check_seed


def _candidates(data: Data, candidates: Tensor | None, exclude: Tensor | None) -> Tensor:
    check_graph(data)
    nodes = torch.arange(data.num_nodes) if candidates is None else check_index(candidates, data.num_nodes, "candidates")
    if exclude is not None:
        exclude = check_index(exclude, data.num_nodes, "exclude")
        nodes = nodes[~torch.isin(nodes, exclude.cpu())]
    return torch.unique(nodes.cpu())


def iid_sample(data: Data, size: int, seed: int, candidates: Tensor | None = None,
               balanced: bool = False, *, exclude: Tensor | None = None) -> Tensor:
    """``size`` nodes drawn uniformly without replacement, ``[size]``.

    By default no label is read: the sample is what an unbiased annotator would label.
    ``balanced=True`` draws ``size // C`` nodes per class *using the true labels*, as the
    SR-GNN authors' code does for its "IID" sample; that leaks the labels of unlabelled
    nodes into training, so it is only for reproducing their numbers.

    Args:
        candidates: nodes to draw from (indices or mask); default every node.
        exclude: nodes never drawn (e.g. the biased training set).
    """
    size = check_int(size, "size")
    nodes = _candidates(data, candidates, exclude)
    gen = torch.Generator().manual_seed(check_seed(seed))
    if not balanced:
        if size > nodes.numel():
            raise ValueError(f"size={size} exceeds the {nodes.numel()} candidate nodes.")
        return nodes[torch.randperm(nodes.numel(), generator=gen)[:size]]
    check_graph(data, require_labels=True)
    y = data.y.view(-1).cpu()[nodes]
    classes = torch.unique(y)
    per_class = size // classes.numel()
    picks = []
    for c in classes:
        members = nodes[y == c]
        if members.numel() < per_class:
            raise ValueError(f"Class {int(c)} has {members.numel()} candidates; balanced size={size} needs {per_class}.")
        picks.append(members[torch.randperm(members.numel(), generator=gen)[:per_class]])
    return torch.cat(picks)


def degree_biased_sample(data: Data, per_class: int, seed: int, candidates: Tensor | None = None,
                         power: float = 1.0) -> Tensor:
    """A popularity-biased set: per class, ``per_class`` nodes drawn without replacement with
    probability proportional to ``degree ** power`` (``power=0`` is uniform per class).

    Models annotators who label well-known (highly cited) nodes. ``[per_class * C]``.
    """
    per_class = check_int(per_class, "per_class")
    power = check_number(power, "power")
    check_graph(data, require_labels=True)
    nodes = _candidates(data, candidates, None)
    weight = degree(data.edge_index[0].cpu(), data.num_nodes).clamp_min(1.0) ** power
    y = data.y.view(-1).cpu()
    gen = torch.Generator().manual_seed(check_seed(seed))
    picks = []
    for c in range(int(getattr(data, "num_classes", None) or int(y.max()) + 1)):
        members = nodes[y[nodes] == c]
        if members.numel() < per_class:
            raise ValueError(f"Class {c} has {members.numel()} candidates but per_class={per_class}; lower per_class.")
        picks.append(members[torch.multinomial(weight[members], per_class, replacement=False, generator=gen)])
    return torch.cat(picks)
