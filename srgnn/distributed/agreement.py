"""Whether every rank was given the same graph and the same labelled nodes: one hash
all-reduce at the start of a data-parallel fit, before any rank trains on a graph the others
do not have."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


class RanksDisagreeError(ValueError):
    """The ranks of a data-parallel fit were given different inputs."""


def fingerprint(tensor: Tensor | None) -> int:
    """A signed 63-bit hash of ``tensor``'s shape, dtype and values (0 for ``None``)."""
    if tensor is None:
        return 0
    array = np.ascontiguousarray(tensor.detach().cpu().numpy())
    digest = hashlib.sha256(f"{tuple(array.shape)}{array.dtype}".encode() + array.tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_same_inputs(inputs: dict[str, Tensor | None], device: torch.device) -> None:
    """Raise ``RanksDisagreeError`` naming each input whose hash differs between ranks.

    One all-reduce of the hashes with MAX and one with MIN: they agree on every rank exactly
    when every rank holds the same values."""
    hashes = torch.tensor([fingerprint(value) for value in inputs.values()], dtype=torch.long, device=device)
    high, low = hashes.clone(), hashes.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    differ = [name for name, hi, lo in zip(inputs, high.tolist(), low.tolist()) if hi != lo]
    if differ:
        raise RanksDisagreeError(
            f"The ranks were given different {', '.join(differ)}: every rank must load the same graph and the same "
            "labelled nodes (same file, same seed); data parallelism splits the batches, not the graph.")
