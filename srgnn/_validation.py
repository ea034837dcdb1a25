"""Input checks for the public boundary: one place, messages a user can act on.

Internals trust their inputs; every public entry point calls these first.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def check_graph(data, *, require_labels: bool = False) -> None:
    """Check a ``Data`` object: finite features, in-range edges, labels if asked."""
    num_nodes = data.num_nodes
    x = getattr(data, "x", None)
    if x is not None:
        if x.size(0) != num_nodes:
            raise ValueError(f"data.x has {x.size(0)} rows but the graph has {num_nodes} nodes.")
        # A pass over all of x (70 ms on PubMed) per fit: remembered per version of x, so a
        # study checks it once and an in-place edit is checked again.
        if x.is_floating_point() and getattr(x, "srgnn_finite_version", None) != x._version:
            if not torch.isfinite(x).all():
                bad = int((~torch.isfinite(x)).any(dim=1).sum())
                raise ValueError(
                    f"data.x contains NaN or infinite values in {bad} node(s); "
                    "impute or drop them before training (e.g. torch.nan_to_num).")
            x.srgnn_finite_version = x._version
    edge_index = data.edge_index
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"data.edge_index must have shape [2, E]; got {tuple(edge_index.shape)}.")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise IndexError(
            f"data.edge_index refers to node {int(edge_index.max())} (or a negative index) "
            f"but the graph has {num_nodes} nodes (valid: 0..{num_nodes - 1}).")
    if require_labels and getattr(data, "y", None) is None:
        raise ValueError("data.y is required here: the graph carries no node labels.")


def check_index(index, num_nodes: int, name: str = "index") -> Tensor:
    """Return ``index`` as a 1-D LongTensor after checking its range."""
    index = torch.as_tensor(index)
    if index.dtype == torch.bool:
        if index.numel() != num_nodes:
            raise ValueError(f"{name} is a mask of length {index.numel()}; expected {num_nodes}.")
        return index.nonzero().view(-1)
    if index.is_floating_point():
        raise TypeError(f"{name} must hold integer node indices; got dtype {index.dtype}.")
    index = index.long().view(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_nodes):
        raise IndexError(
            f"{name} contains node {int(index.max()) if int(index.max()) >= num_nodes else int(index.min())}, "
            f"outside the graph's range 0..{num_nodes - 1}.")
    return index


def check_choice(value: str | None, choices: Sequence[str | None], name: str) -> None:
    """Raise ``ValueError`` naming the accepted values when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(choices)}.")


def check_same_device(**tensors: Tensor) -> torch.device:
    """Raise when tensors live on different devices; return the common device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"Tensors are on different devices ({listing}); move them with .to(device) first.")
    return next(iter(devices.values()))


def check_num_layers(num_layers: int, model: str) -> None:
    """Models with a hidden layer (the one SR-GNN regularizes) need at least two layers."""
    if num_layers < 2:
        raise ValueError(f"{model} needs num_layers >= 2 (its hidden layer is what a shift regularizer "
                         f"reads); got {num_layers}.")
