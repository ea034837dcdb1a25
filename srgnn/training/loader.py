"""Mini-batches of a large graph: PyG's ``NeighborLoader``, whose batches a model runs on as a
``srgnn.graph.Subgraph`` (``Subgraph.from_batch``).

``NeighborLoader`` samples with pyg-lib or torch-sparse. Neither has a wheel for every torch
build (none for this project's CPU torch 2.13), so where neither is installed the loader gets
``TorchNeighborSampler``: PyG's ``NeighborSampler`` with its homogeneous sampling step written
in torch, returning the same ``SamplerOutput`` layout (seeds first, then each hop's new nodes in
order of first appearance; edges from the sampled neighbour to the node it was sampled for).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import NeighborSampler, SamplerOutput

#: Whether PyG has a compiled sampling backend here (``torch.ops.pyg`` or ``torch_sparse``).
HAS_COMPILED_SAMPLER = torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE


class TorchNeighborSampler(NeighborSampler):
    """``torch_geometric.sampler.NeighborSampler`` for homogeneous graphs, sampling in torch.

    Each hop, every frontier node keeps all its in-neighbours where its fan-out is ``-1`` or at
    least its degree, else a uniform sample of ``fan-out`` of them without replacement (random
    keys sorted within each node's CSC segment). Seeded by ``generator``."""

    def __init__(self, data: Data, num_neighbors: list[int], generator: torch.Generator | None = None):
        with warnings.catch_warnings():
            # PyG warns that its own compiled-less sampling is deprecated; this class replaces it.
            warnings.filterwarnings("ignore", message=".*without a 'pyg-lib' installation", category=UserWarning)
            super().__init__(data, num_neighbors)
        self.generator = generator

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None, **kwargs) -> SamplerOutput:
        if isinstance(seed, dict) or seed_time is not None or self.replace or self.disjoint:
            raise NotImplementedError("TorchNeighborSampler samples homogeneous graphs without replacement, "
                                      "time or disjoint subgraphs; install pyg-lib for those.")
        colptr, row = self.colptr, self.row
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        local[seed] = torch.arange(seed.numel())
        nodes, rows, cols, edges = [seed], [], [], []
        num_nodes, num_edges = [seed.numel()], []
        frontier, frontier_local, count = seed, torch.arange(seed.numel()), seed.numel()
        for fan_out in self.num_neighbors.get_mapped_values():
            start, degree = colptr[frontier], colptr[frontier + 1] - colptr[frontier]
            owner = torch.repeat_interleave(torch.arange(frontier.numel()), degree)
            offset = torch.arange(owner.numel()) - torch.repeat_interleave(degree.cumsum(0) - degree, degree)
            position = start[owner] + offset  # every in-edge of the frontier, in CSC order
            if fan_out >= 0:
                # Rank the edges of each node by a random key; keep the first fan_out of each.
                keys = torch.rand(owner.numel(), generator=self.generator)
                order = torch.argsort(owner.double() + keys.double(), stable=True)  # owner-major, random within
                rank = torch.empty_like(order)
                rank[order] = offset  # offset is the rank within each owner's (contiguous) segment
                keep = rank < fan_out
                position, owner = position[keep], owner[keep]
            neighbour = row[position]
            fresh = neighbour[local[neighbour] < 0]
            # New nodes in order of first appearance, as PyG numbers them.
            unique, inverse = torch.unique(fresh, return_inverse=True)
            first = torch.full((unique.numel(),), fresh.numel(), dtype=torch.long).scatter_reduce_(
                0, inverse, torch.arange(fresh.numel()), "amin")
            new = unique[torch.argsort(first)]
            local[new] = torch.arange(count, count + new.numel())
            rows.append(local[neighbour])
            cols.append(frontier_local[owner])
            edges.append(position)
            nodes.append(new)
            num_nodes.append(new.numel())
            num_edges.append(position.numel())
            frontier, frontier_local, count = new, local[new], count + new.numel()
        return SamplerOutput(node=torch.cat(nodes), row=torch.cat(rows), col=torch.cat(cols),
                             edge=torch.cat(edges), num_sampled_nodes=num_nodes, num_sampled_edges=num_edges)


def neighbor_loader(data: Data, num_neighbors: list[int], seed: int = 0) -> NeighborLoader:
    """PyG's ``NeighborLoader`` over every node of ``data``, called with the seed nodes of each
    batch (``loader(seeds)``); its sampler is ``TorchNeighborSampler`` unless pyg-lib or
    torch-sparse is installed. Batches hold ``n_id`` ``[M]``, ``edge_index`` and
    ``num_sampled_nodes`` (per hop), the seeds first."""
    generator = torch.Generator().manual_seed(seed)
    sampler = None if HAS_COMPILED_SAMPLER else TorchNeighborSampler(data, num_neighbors, generator)
    return NeighborLoader(Data(edge_index=data.edge_index, num_nodes=data.num_nodes), num_neighbors,
                          neighbor_sampler=sampler)


def with_fan_outs(loader: NeighborLoader, num_neighbors: list[int], seed: int) -> NeighborLoader:
    """A loader over the same graph as ``loader`` with other fan-outs and its own seed. Its
    sampler is a shallow copy of ``loader``'s, so the graph's CSC index (sorting every edge,
    seconds on a graph of millions of nodes) is built once and shared, read-only."""
    sampler = copy.copy(loader.node_sampler)
    sampler.num_neighbors = num_neighbors
    if isinstance(sampler, TorchNeighborSampler):
        sampler.generator = torch.Generator().manual_seed(seed)
    return NeighborLoader(loader.data, num_neighbors, neighbor_sampler=sampler)
