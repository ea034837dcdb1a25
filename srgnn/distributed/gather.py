r"""Each rank's share of a step's nodes, and every rank's rows gathered back with gradients.

A data-parallel step splits its global batch of B nodes over W ranks (``shard``). Cross-entropy is
a mean over nodes, so each rank's part of it is a sum over its share; CMD and MMD are not, so
the shift term is computed on every rank's rows together (``gather_rows``). Its backward sums,
for each rank's rows, what every rank's loss sends them: W times one process's gradient, which
DDP's average over the ranks brings back to one process's.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.distributed._functional_collectives import all_gather_single


def process_group() -> tuple[int, int]:
    """This process's rank and the world size; a clear error outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("srgnn.distributed needs a process group: launch with torchrun (torchrun --nproc_per_node "
                           "2 your_script.py) and call torch.distributed.init_process_group() first, with 'gloo' on "
                           "CPUs or 'nccl' on GPUs.")
    return dist.get_rank(), dist.get_world_size()


def shard(nodes: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous share of ``nodes`` ``[B]``: ``tensor_split`` into ``world_size``
    parts, so when ``world_size`` does not divide B the first ``B % world_size`` ranks take one
    node more (the remainder rule). Concatenated in rank order, the shares are ``nodes``."""
    return nodes.tensor_split(world_size)[rank]


def shard_sizes(count: int, world_size: int) -> list[int]:
    """The share of each rank when ``count`` nodes are split by ``shard``."""
    return [count // world_size + (r < count % world_size) for r in range(world_size)]


def gather_rows(rows: Tensor, sizes: list[int], group: dist.ProcessGroup | None = None) -> Tensor:
    """Every rank's ``rows`` ``[sizes[r], d]`` concatenated in rank order, ``[sum(sizes), d]``,
    differentiable (``all_gather_single``, whose backward reduce-scatters the gradients
    with a sum; ``torch.distributed.nn.functional.all_gather``, the public spelling, is deprecated for it). Ranks may hold different
    row counts: each pads to the largest, and the padding is cut off again."""
    process_group()
    if rows.size(0) != sizes[dist.get_rank(group)]:
        raise ValueError(f"This rank holds {rows.size(0)} rows, but sizes says {sizes[dist.get_rank(group)]}.")
    padded = F.pad(rows, (0, 0, 0, max(sizes) - rows.size(0)))
    parts = all_gather_single(padded, 0, group or dist.group.WORLD).view(len(sizes), *padded.shape)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])
