"""The layer kernels srgnn's models are built from, with their CPU fast paths in one place.

* ``keep_mask`` / ``dropout``: inverted dropout; on a sparse CSR input only the stored entries
  are dropped, and on the CPU a constant CSR input keeps only the kept entries.
* ``relu_dropout``: a hidden layer's bias, ReLU and dropout, fused.
* ``linear`` / ``SparseInputLinear``: ``F.linear`` that also takes a sparse CSR input, with a
  backward that multiplies by its transpose without building it on the CPU (SciPy).

Each says where it leaves torch's own kernel for the CPU, and measured by how much.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .propagation import csr_matmul, quiet_sparse, transpose_plan


def keep_mask(count: int, p: float, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> Tensor:
    """``[count]`` booleans, each ``True`` with probability ``1 - p``, independently.

    For ``p = 0.5`` (every srgnn model's default) each random byte gives eight entries, one
    per bit (bit ``j`` of byte ``i`` is entry ``8 i + j``): several times faster than
    comparing uniform draws with ``p``, which is itself faster than ``bernoulli_`` on the CPU.
    On the CPU NumPy unpacks the bits, faster than torch's broadcast ``bitwise_and``, with the
    same bytes and so the same mask."""
    if p == 0.5:
        random_bytes = torch.randint(0, 256, ((count + 7) // 8,), dtype=torch.uint8, generator=generator,
                                     device=device)
        if random_bytes.device.type == "cpu":
            return torch.from_numpy(np.unpackbits(random_bytes.numpy(), count=count, bitorder="little")).view(torch.bool)
        shifts = torch.arange(8, dtype=torch.uint8, device=random_bytes.device)
        return torch.bitwise_and(random_bytes.view(-1, 1), 1 << shifts).ne_(0).view(-1)[:count].view(torch.bool)
    return torch.rand(count, generator=generator, device=device) >= p


def _masked_scale(x: Tensor, keep: Tensor, scale: float) -> Tensor:
    """``x * keep * scale`` for booleans ``keep`` shaped like ``x``. On the CPU NumPy does it in
    two passes without casting the mask to a float tensor first (988k values: 0.6 against
    2.8 ms for ``torch.mul(x, keep).mul_(scale)``)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        out = np.multiply(x.detach().numpy(), scale)
        out *= keep.numpy()
        return torch.from_numpy(out)
    return torch.mul(x, keep).mul_(scale)


class _Dropout(torch.autograd.Function):
    """``x * keep * scale`` whose backward is the same masked scaling of the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _masked_scale(x, keep, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return _masked_scale(grad, keep, ctx.scale), None, None


class _BiasReluDropout(torch.autograd.Function):
    """``hidden = relu(a + bias)`` and ``dropped = hidden * keep * scale`` with the bias and the
    ReLU applied to ``a`` in place, and a backward of one masked pass: since ``scale > 0``,
    ``dropped > 0`` exactly where both the mask and the ReLU pass the gradient."""

    @staticmethod
    def forward(ctx, a: Tensor, bias: Tensor, keep: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        hidden = a.add_(bias).relu_()
        ctx.mark_dirty(a)
        dropped = _masked_scale(hidden, keep, scale)
        ctx.save_for_backward(hidden, dropped)
        ctx.scale = scale
        ctx.set_materialize_grads(False)  # an unused output's gradient is None, not a zero pass
        return hidden, dropped

    @staticmethod
    def backward(ctx, grad_hidden: Tensor | None, grad_dropped: Tensor | None):
        hidden, dropped = ctx.saved_tensors
        grad = torch.zeros_like(hidden) if grad_dropped is None else \
            torch.ops.aten.threshold_backward(grad_dropped, dropped, 0).mul_(ctx.scale)
        if grad_hidden is not None:
            grad += torch.ops.aten.threshold_backward(grad_hidden, hidden, 0)
        return grad, grad.sum(0), None, None


def relu_dropout(a: Tensor, bias: Tensor, p: float, training: bool,
                 keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A hidden layer's ``hidden = relu(a + bias)`` and ``dropout(hidden)``, the next layer's
    input, for ``a`` ``[N, H]`` fresh from a product (it is overwritten by ``hidden``).

    Fused, the bias and the ReLU act in place instead of filling two fresh ``[N, H]`` buffers,
    and the backward is two passes instead of three: a hidden layer's buffers are larger than a
    core's L2 cache on graphs of PubMed's size. The mask is
    drawn as ``dropout`` draws it, and the values and gradients are the same bit for bit.
    ``keep`` (booleans shaped like ``a``) replaces the mask drawn from the global generator."""
    if not training or p == 0.0:
        hidden = F.relu(a + bias)
        return hidden, hidden
    keep = keep_mask(a.numel(), p, device=a.device).view_as(a) if keep is None else keep
    return _BiasReluDropout.apply(a, bias, keep, 1.0 / (1.0 - p))


def dropout(x: Tensor, p: float, training: bool, keep: Tensor | None = None) -> Tensor:
    """Inverted dropout. On a sparse CSR ``x`` only the stored entries are dropped (the zeros
    stay zero), so the cost is O(nnz) instead of O(N F) for bag-of-words features; on the CPU
    the result of a constant ``x`` stores the kept entries alone (``_kept_entries``). ``keep``
    (booleans, one per stored value of ``x``) replaces the mask drawn by ``keep_mask`` from
    the global generator (replica-batched training draws it from one generator per replica)."""
    if not training or p == 0.0:
        return x
    values = x.values() if x.is_sparse_csr else x
    keep = keep_mask(values.numel(), p, device=values.device) if keep is None else keep
    if x.is_sparse_csr and values.device.type == "cpu" and not values.requires_grad:
        return _kept_entries(x, keep, 1.0 / (1.0 - p))
    kept = _Dropout.apply(values, keep.view_as(values), 1.0 / (1.0 - p))
    if not x.is_sparse_csr:
        return kept
    with quiet_sparse():
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), kept, x.shape)


def _kept_entries(x: Tensor, keep: Tensor, scale: float) -> Tensor:
    """Dropout of a constant CSR ``x`` on the CPU: a CSR matrix of the kept entries alone, scaled.

    At p = 0.5 it stores half the entries, so the input layer's two sparse products halve
    (PubMed's features times ``[500, 32]``: 1.21 -> 0.67 ms forward, 3.5 -> 1.85 ms backward)
    for about 1.9 ms of NumPy compaction, against 0.5 ms for scaling every entry. Each output
    sums the same non-zero terms in the same order, so the products' values are unchanged."""
    kept = np.flatnonzero(keep.numpy())
    crow = x.crow_indices().numpy()
    values = x.values().numpy().take(kept)
    values *= scale
    # Row i starts after the kept entries stored before crow[i].
    kept_crow = np.searchsorted(kept, crow).astype(crow.dtype)
    with quiet_sparse():
        return torch.sparse_csr_tensor(torch.from_numpy(kept_crow), torch.from_numpy(x.col_indices().numpy().take(kept)),
                                       torch.from_numpy(values), x.shape)


def _transposed(x: Tensor) -> Tensor:
    """``x.T`` as CSR: its structure and the permutation of ``x``'s values (``transpose_plan``),
    then one gather of the values. Off the CPU only, where the sort is one fast kernel."""
    n, f = x.shape
    crow, col = x.crow_indices(), x.col_indices()
    row = torch.repeat_interleave(torch.arange(n, device=x.device), crow.diff())
    t_crow, t_col, perm = (t.to(crow.dtype) for t in transpose_plan(row, col, n, f))
    with quiet_sparse():
        # index_select, not x.values()[perm]: 2.3x faster (1.7 against 4.0 ms on PubMed's features)
        return torch.sparse_csr_tensor(t_crow, t_col, x.values().index_select(0, perm), (x.size(1), x.size(0)))


def _transposed_product(x: Tensor, grad: Tensor) -> Tensor:
    """``x.T @ grad`` for a CSR ``x`` ``[N, F]`` and a dense ``grad`` ``[N, H]`` -> ``[F, H]``."""
    if x.device.type == "cpu" and x.dtype == grad.dtype:
        # SciPy multiplies by the transpose in place, reading x's CSR arrays as the CSC arrays
        # of x.T: no transposed copy of the values (PubMed's features: 3.7 ms against 1.4 ms
        # of gathering plus 2.9 ms of SpMM).
        x_t = sp.csc_matrix((x.values().detach().numpy(), x.col_indices().numpy(), x.crow_indices().numpy()),
                            shape=(x.size(1), x.size(0)))
        return torch.from_numpy(x_t @ grad.contiguous().numpy())
    return csr_matmul(_transposed(x), grad)


class _SparseMatmul(torch.autograd.Function):
    """``x @ w`` for a constant CSR ``x``; the backward ``x.T @ grad`` skips torch's generic
    (sorting) sparse backward (``_transposed_product``)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.x = x
        return csr_matmul(x, w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, _transposed_product(ctx.x, grad)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` that also takes a sparse CSR ``x`` ``[N, F]`` (one SpMM forward and one
    backward, no densifying); ``weight`` ``[H, F]`` -> ``[N, H]``."""
    if not x.is_sparse_csr:
        return F.linear(x, weight, bias)
    out = _SparseMatmul.apply(x, weight.T.contiguous())
    return out + bias if bias is not None else out


class SparseInputLinear(nn.Linear):
    """``nn.Linear`` that also takes a sparse CSR ``x`` ``[N, F]`` (``linear``): bag-of-words
    features are 1-10% non-zero."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
