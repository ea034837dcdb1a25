"""Loader for the SR-GNN authors' published localized training sets (pickled lists of ints)."""
from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data

from .localized import _registry_entry


class _ListsOfIntsUnpickler(pickle.Unpickler):
    """Admits only the opcodes of lists and ints: any global (a class or function) is refused,
    so a tampered file cannot run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: a splits file may hold only lists of ints")


def load_published_splits(path: str | os.PathLike, num_nodes: int | None = None, *,
                          data: Data | None = None) -> list[Tensor]:
    """Read ``localized_seeds_<name>.p``: a pickled list of lists of node ids.

    Returns one ``LongTensor`` per set. With ``num_nodes`` (or ``data``), every id is
    range-checked, and a file named for a registered dataset (``localized_seeds_cora.p``) is
    refused for a graph of another size. With ``data``, each set must also hold the same
    number of nodes of every class of ``data.y``, as the published sets do: sets made for
    another graph are refused. Raises ``ValueError`` for anything but a non-empty list of
    non-empty lists of ints.
    """
    if data is not None:
        num_nodes = data.num_nodes if num_nodes is None else num_nodes
        if num_nodes != data.num_nodes:
            raise ValueError(f"num_nodes={num_nodes} but data has {data.num_nodes} nodes; pass one of them.")
    with open(path, "rb") as f:
        payload = f.read()
    try:
        splits = _ListsOfIntsUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(f"{path} is not a valid splits file (a pickled list of lists of ints): {err}") from err
    if not isinstance(splits, list) or not splits or not all(
            isinstance(s, list) and s and all(type(i) is int for i in s) for s in splits):
        raise ValueError(f"{path} must hold a non-empty list of non-empty lists of ints.")
    tensors = [torch.tensor(s, dtype=torch.long) for s in splits]
    if num_nodes is None:
        return tensors
    named = re.fullmatch(r"localized_seeds_(\w+)\.p", Path(path).name)
    info = _registry_entry(named.group(1)) if named else None
    if info is not None and info["num_nodes"] != num_nodes:
        raise ValueError(f"{path} holds the published sets of {named.group(1)} ({info['num_nodes']} nodes), "
                         f"but the graph has {num_nodes} nodes; pass localized_seeds_<this dataset>.p.")
    for i, t in enumerate(tensors):
        if int(t.min()) < 0 or int(t.max()) >= num_nodes:
            raise IndexError(f"Set {i} of {path} has node ids outside 0..{num_nodes - 1}; "
                             "is it for another dataset?")
    if data is not None:
        y = data.y.view(-1).cpu()
        num_classes = int(getattr(data, "num_classes", None) or int(y.max()) + 1)
        for i, t in enumerate(tensors):
            counts = torch.bincount(y[t], minlength=num_classes)
            if bool((counts != counts[0]).any()) or int(counts[0]) == 0:
                raise ValueError(f"Set {i} of {path} holds {counts.tolist()} nodes of the graph's "
                                 f"{num_classes} classes, not the same number of each as a published set "
                                 "does; is the file for another dataset?")
    return tensors
