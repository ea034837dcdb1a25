"""The operations a model's forward runs its layers through, so that one forward serves one
graph and R stacked replicas alike.

A model calls ``ops = current_ops()`` and then ``ops.dropout``, ``ops.linear``,
``ops.relu_dropout`` and ``ops.bias`` for its dropout, its linear maps (weights as ``nn.Linear``
stores them) and its biases. By default these are the kernels of ``srgnn.kernels.layers``
(``PLAIN``). ``ReplicaTrainer`` stacks R replicas' receptive fields as one graph and runs the
model's forward with its parameters stacked ``[R, ...]`` (``torch.func.functional_call``) inside
``with running(ReplicaOps(...)):``; each op then acts on each replica's rows with that replica's
weights and dropout generator (``LockstepTrainer`` does the same with ``LockstepOps``). The ops
are the call's, not the graph's: a ``Graph`` is the same data whoever runs on it. A model that
declares ``replica_batchable`` promises to route those layers through ``current_ops()``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import _SparseMatmul, dropout, keep_mask, linear, relu_dropout
from .propagation import compact_csr, quiet_sparse


class Ops:
    """The layer operations on one graph: ``srgnn.kernels.layers`` as they are."""

    count = 1

    def in_features(self, x: Tensor) -> int:
        """The feature columns of one graph's rows of ``x``."""
        return x.size(-1)

    def dropout(self, h: Tensor, p: float, training: bool) -> Tensor:
        return dropout(h, p, training)

    def linear(self, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return linear(h, weight, bias)

    def relu_dropout(self, a: Tensor, bias: Tensor, p: float, training: bool) -> tuple[Tensor, Tensor]:
        return relu_dropout(a, bias, p, training)

    def bias(self, bias: Tensor) -> Tensor:
        """A bias ``[H]`` as it is added to ``[N, H]`` rows."""
        return bias


#: The operations of one model on one graph.
PLAIN = Ops()
_running: ContextVar[Ops] = ContextVar("srgnn_ops", default=PLAIN)


def current_ops() -> Ops:
    """The layer operations the forward being run uses: ``PLAIN``, unless a batched trainer
    runs it inside ``running``."""
    return _running.get()


@contextmanager
def running(ops: Ops) -> Iterator[Ops]:
    """Run the forwards called inside with the layer operations ``ops`` (``ReplicaOps``,
    ``LockstepOps``); ``PLAIN`` again on leaving."""
    token = _running.set(ops)
    try:
        yield ops
    finally:
        _running.reset(token)


class ReplicaOps(Ops):
    """The layer operations of R replicas whose rows are stacked in contiguous blocks of one
    graph, with parameters stacked ``[R, ...]`` (``ReplicaTrainer``). A model's own forward runs
    them inside ``running(ReplicaOps(...))``.

    Args:
        sizes: rows of each replica's block, ``[R]``.
        generators: one dropout generator per replica, on the device of the rows' tensors.
    """

    def __init__(self, sizes: list[int], generators: list[torch.Generator], device: torch.device):
        self.sizes = sizes
        self.count, self.max_size = len(sizes), max(sizes)
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        sizes_t = torch.tensor(sizes, device=device)
        #: replica of each row ``[M]`` and the row's place in an ``[R, max_size]`` grid
        self.owner = torch.repeat_interleave(torch.arange(self.count, device=device), sizes_t)
        starts = torch.tensor(self.offsets[:-1], device=device)
        self.grid = self.owner * self.max_size + torch.arange(self.owner.numel(), device=device) - starts[self.owner]
        self.generators = generators

    def in_features(self, x: Tensor) -> int:
        return x.size(-1) // self.count if x.is_sparse_csr else x.size(-1)  # a widened CSR holds R blocks of columns

    def widen(self, x: Tensor) -> Tensor:
        """CSR ``[M, F]`` -> ``[M, R F]`` with block r's columns shifted by ``r F``, so that
        ``widen(x) @ W.reshape(R F, H)`` multiplies each block by its own ``W[r]``."""
        rows = torch.repeat_interleave(self.owner, x.crow_indices().diff())
        with quiet_sparse():
            wide = torch.sparse_csr_tensor(x.crow_indices().long(), x.col_indices().long() + rows * x.size(1),
                                           x.values(), (x.size(0), x.size(1) * self.count))
        return compact_csr(wide)

    def dropout(self, h: Tensor, p: float, training: bool) -> Tensor:
        """``srgnn.kernels.layers.dropout`` with each block's mask from its replica's generator."""
        if not training or p == 0.0:
            return h
        if h.is_sparse_csr:
            crow = h.crow_indices()
            counts = [int(crow[b]) - int(crow[a]) for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        else:
            counts = [size * h.size(1) for size in self.sizes]
        keep = torch.cat([keep_mask(n, p, generator=g, device=g.device) for n, g in zip(counts, self.generators)])
        return dropout(h, p, True, keep)

    def linear(self, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """Block r times ``weight[r].T`` (``weight`` ``[R, out, in]``, as ``nn.Linear`` stores
        it) plus ``bias[r]``; ``h`` is ``[M, in]`` dense or a ``widen``-ed CSR."""
        count, out_features, in_features = weight.shape
        if h.is_sparse_csr:
            out = _SparseMatmul.apply(h, weight.transpose(1, 2).reshape(count * in_features, out_features))
        else:
            grid = h.new_zeros(count * self.max_size, in_features).index_copy(0, self.grid, h)
            out = torch.bmm(grid.view(count, self.max_size, in_features), weight.transpose(1, 2))
            out = out.reshape(count * self.max_size, out_features)[self.grid]
        return out if bias is None else out + bias[self.owner]

    def relu_dropout(self, a: Tensor, bias: Tensor, p: float, training: bool) -> tuple[Tensor, Tensor]:
        hidden = F.relu(a + bias[self.owner])
        return hidden, self.dropout(hidden, p, training)

    def bias(self, bias: Tensor) -> Tensor:
        return bias[self.owner]


class LockstepOps(Ops):
    """The layer operations of models trained in lockstep (``LockstepTrainer``): models that
    share a seed, and so draw the same dropout masks, on one graph's input. In one step
    (``new_step``) the input is dropped once for all of them, its product with every model's
    first-layer weight (``first_weights``, side by side) is one wider product, and the hidden
    layer's mask is drawn once; each model's forward takes its own block.
    """

    def __init__(self, first_weights: list[Tensor]):
        self.first_weights = first_weights
        self.new_step()

    def new_step(self) -> None:
        """Forget the last step's dropped input, first-layer product and hidden mask."""
        self._input: tuple[Tensor, Tensor] | None = None  # (input, dropped input)
        self._blocks: list[Tensor] | None = None
        self._keep: Tensor | None = None

    def dropout(self, h: Tensor, p: float, training: bool) -> Tensor:
        if self._input is None:
            self._input = (h, dropout(h, p, training))
        return self._input[1] if h is self._input[0] else dropout(h, p, training)

    def linear(self, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        first = next((r for r, w in enumerate(self.first_weights) if w is weight), None)
        if first is None or self._input is None or h is not self._input[1] or bias is not None:
            return linear(h, weight, bias)
        if self._blocks is None:  # [N, R H], split into each model's contiguous [N, H]
            wide = linear(h, torch.cat(self.first_weights))
            self._blocks = list(wide.split(weight.size(0), 1))
        return self._blocks[first].contiguous()

    def relu_dropout(self, a: Tensor, bias: Tensor, p: float, training: bool) -> tuple[Tensor, Tensor]:
        if training and p > 0 and self._keep is None:  # drawn where relu_dropout alone would draw it
            self._keep = keep_mask(a.numel(), p, device=a.device).view_as(a)
        return relu_dropout(a, bias, p, training, self._keep if training and p > 0 else None)
