"""Input checks for the public boundary: one place, messages a user can act on.

Internals trust their inputs; every public entry point calls these first.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor


def check_data(data) -> None:
    """Refuse anything but a ``torch_geometric.data.Data``, naming how to get one from what was
    passed: a PyG dataset (``dataset[0]``), a networkx graph, a ``srgnn.Graph``'s owner."""
    from torch_geometric.data import Data, Dataset

    if isinstance(data, Data):
        return
    kind = f"{type(data).__module__}.{type(data).__qualname__}"
    if isinstance(data, Dataset):
        fix = "pass one graph of it, dataset[0]"
    elif type(data).__module__.startswith("networkx"):
        fix = ("convert it with torch_geometric.utils.from_networkx(g) (node attributes become x and y; "
               "relabel string node ids with networkx.convert_node_labels_to_integers first)")
    else:
        fix = "build one: Data(x=features [N, F], edge_index=[2, E] node ids, y=labels [N])"
    raise TypeError(f"Expected a torch_geometric.data.Data graph; got a {kind}: {fix}.")


def check_graph(data, *, require_labels: bool = False, require_features: bool = False) -> None:
    """Check a ``Data`` object: float finite features if asked (``require_features``; a pass
    over all of ``x``, 70 ms on PubMed, which ``srgnn.graph.Graph.from_data`` makes once per
    graph), an integer in-range ``edge_index`` on a real device, integer labels if asked."""
    check_data(data)
    num_nodes = data.num_nodes
    for name in ("x", "edge_index", "y"):
        value = getattr(data, name, None)
        if isinstance(value, Tensor) and value.device.type == "meta":
            raise ValueError(f"data.{name} is on the 'meta' device, which holds shapes but no values; "
                             "build the graph on a real device (data.to('cpu')).")
    x = getattr(data, "x", None)
    if x is None and require_features:
        raise ValueError("data.x is missing: the graph has no node features. Give it some, e.g. "
                         "data.x = torch.eye(data.num_nodes) or a degree one-hot "
                         "(torch_geometric.transforms.OneHotDegree).")
    if x is not None:
        if x.dim() != 2 or x.size(0) != num_nodes:
            raise ValueError(f"data.x must have shape [num_nodes={num_nodes}, F]; got {tuple(x.shape)}.")
        if require_features and not x.is_floating_point():
            raise TypeError(f"data.x has dtype {x.dtype}; models need float features: data.x = data.x.float().")
        values = x.values() if x.is_sparse else x.to_dense() if x.is_sparse_csr else x
        if require_features and not torch.isfinite(values).all():
            bad = int((~torch.isfinite(x.to_dense() if x.layout != torch.strided else x)).any(dim=1).sum())
            raise ValueError(f"data.x contains NaN or infinite values in {bad} node(s); "
                             "impute or drop them first (e.g. torch.nan_to_num).")
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        raise ValueError("data.edge_index is missing; a graph needs edges as a [2, E] integer tensor.")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"data.edge_index must have shape [2, E]; got {tuple(edge_index.shape)}.")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise TypeError(f"data.edge_index has dtype {edge_index.dtype}; it must hold integer node ids: "
                        "data.edge_index = data.edge_index.long().")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise IndexError(
            f"data.edge_index refers to node {int(edge_index.max())} (or a negative index) "
            f"but the graph has {num_nodes} nodes (valid: 0..{num_nodes - 1}).")
    if require_labels:
        y = getattr(data, "y", None)
        if y is None:
            raise ValueError("data.y is required here: the graph carries no node labels.")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"data.y has dtype {y.dtype}; labels must be integer class ids 0..C-1: "
                            "data.y = data.y.long() (or argmax of one-hot rows).")
        if y.view(-1).numel() != num_nodes:
            raise ValueError(f"data.y has {y.numel()} entries but the graph has {num_nodes} nodes.")


def check_undirected(data, owner: str) -> None:
    """Refuse a directed or edgeless graph where PPR distances need a symmetric graph with edges."""
    from torch_geometric.utils import is_undirected

    if not is_undirected(data.edge_index, num_nodes=data.num_nodes):
        raise ValueError(f"{owner} needs an undirected graph (its PPR distances assume a symmetric PageRank "
                         "matrix), but data.edge_index is directed; pass a copy with "
                         "edge_index=torch_geometric.utils.to_undirected(data.edge_index).")
    source, target = data.edge_index
    if not bool((source != target).any()):
        raise ValueError(f"{owner} needs a graph with edges: data.edge_index has none besides self-loops, so every "
                         "node is equally far from every seed and no set can be localized.")


def check_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int, refused unless it is an integer (not a bool) in ``minimum..maximum``."""
    bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int {bounds}; got {value!r}.")
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{name} must be an int {bounds}; got {value!r}.")
    return int(value)


#: The largest seed torch's generators take (``torch.manual_seed`` reads a signed 64-bit int).
MAX_SEED = 2**63 - 1


def check_seed(value, name: str = "seed") -> int:
    """``value`` as a random seed: an int in ``0..MAX_SEED``."""
    return check_int(value, name, minimum=0, maximum=MAX_SEED)


def check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a float, refused unless finite and at least (``strict``: above) ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}.")
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return float(value)


def check_probability(value, name: str) -> float:
    """``value`` as a float in ``[0, 1)``, as a dropout rate must be."""
    value = check_number(value, name)
    if value >= 1.0:
        raise ValueError(f"{name} must be in [0, 1): a rate of 1 drops everything; got {value!r}.")
    return value


def check_fraction(value, name: str) -> float:
    """``value`` as a float in ``(0, 1]``, as a propagation's weight on its neighbours must be."""
    value = check_number(value, name)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1]: the weight each step gives the neighbours; got {value!r}.")
    return value


def as_tensor(value, name: str, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.as_tensor(value, dtype)``, with an error naming ``name`` and the fix for what is
    not numbers: a method not called (``trainer.logits`` for ``trainer.logits(data)``), a dict."""
    if callable(value) and not isinstance(value, Tensor):
        what = getattr(value, "__qualname__", type(value).__name__)
        raise TypeError(f"{name} must be a tensor; got the callable {what}: call it first "
                        "(e.g. trainer.logits(data), not trainer.logits).")
    try:
        return torch.as_tensor(value, dtype=dtype)
    except (TypeError, RuntimeError, ValueError):
        detail = f" with keys {sorted(map(str, value))[:5]}" if isinstance(value, dict) else ""
        raise TypeError(f"{name} must be a tensor (or an array or nested list of numbers); got a "
                        f"{type(value).__name__}{detail}.") from None


def check_index(index, num_nodes: int, name: str = "index") -> Tensor:
    """Return ``index`` as a 1-D LongTensor after checking its range."""
    index = as_tensor(index, name)
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
