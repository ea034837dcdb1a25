"""What every srgnn model shares: one pass that returns the logits and the last hidden layer."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..propagation import TargetRows, quiet_sparse


class NodeClassifier(nn.Module):
    """Base class. Subclasses implement ``forward_with_hidden(x, edge_index) -> (logits, hidden)``
    with logits ``[N, C]`` and ``hidden`` ``[N, H]``, the representation a shift regularizer
    acts on. ``in_channels`` is checked against ``x`` at every call."""

    in_channels: int
    #: Optimizer settings the Trainer uses unless told otherwise (the paper's small-graph ones).
    optimizer_defaults = {"lr": 0.01, "weight_decay": 5e-4}
    #: Hops K such that a node's output depends only on its K-hop neighbourhood (given the full
    #: graph's degrees), so the Trainer may train on the receptive field of the nodes the loss
    #: reads; ``None`` when outputs depend on the whole graph (BatchNorm, precomputed features).
    receptive_field: int | None = None
    #: Hops the last hidden layer depends on. The shift regularizer reads only the hidden layer
    #: at the IID nodes, so their receptive field is this one, not ``receptive_field``;
    #: ``None`` means the same as ``receptive_field``.
    hidden_receptive_field: int | None = None

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.forward_with_hidden(x, edge_index)[0]

    def node_features(self, x: Tensor, edge_index: Tensor) -> Tensor | None:
        r"""The label-free representation ``[N, F']``, computed once from the whole graph, that
        this model's output at a node is a function of, node by node (SGC's :math:`\hat A^K X`,
        DGI's frozen embeddings); ``None`` for other models. A model that returns one takes it
        back as ``x`` with ``edge_index=None``, so the Trainer can train on the rows the loss
        reads alone."""
        return None

    def target_rows(self, edge_index: Tensor, num_nodes: int, targets: Tensor) -> TargetRows | None:
        """For a model that propagates per-node outputs with a fixed linear operator (APPNP):
        that operator's rows at ``targets``, which the model takes in place of ``edge_index``
        to compute its logits there alone; ``None`` for other models."""
        return None

    def check_input(self, x: Tensor) -> None:
        if x.size(-1) != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input features; "
                             f"got x with {x.size(-1)}. Build the model with in_channels={x.size(-1)}.")

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


def dropout(x: Tensor, p: float, training: bool, noise: Tensor | None = None) -> Tensor:
    """Inverted dropout. On a sparse CSR ``x`` only the stored entries are dropped (the zeros
    stay zero), so the cost is O(nnz) instead of O(N F) for bag-of-words features. Masks come
    from a uniform draw compared with ``p``, several times faster than ``bernoulli_`` on the CPU;
    ``noise`` (uniform, the shape of ``x``'s stored values) replaces the draw from the global
    generator (replica-batched training draws it from one generator per replica)."""
    if not training or p == 0.0:
        return x
    values = x.values() if x.is_sparse_csr else x
    noise = torch.rand_like(values) if noise is None else noise.view_as(values)
    kept = values * (noise >= p) / (1.0 - p)
    if not x.is_sparse_csr:
        return kept
    with quiet_sparse():
        out = torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), kept, x.shape)
    out.transpose_plan = _transpose_plan(x)
    return out


def _transpose_plan(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CSR structure of ``x.T`` and the permutation taking ``x``'s values to it. Computed once
    per sparsity pattern and carried on the tensor (``dropout`` passes it on), since dropout
    changes the values every epoch but never the pattern; it dies with the tensors."""
    plan = getattr(x, "transpose_plan", None)
    if plan is None:
        n, f = x.shape
        crow, col = x.crow_indices(), x.col_indices()
        row = torch.repeat_interleave(torch.arange(n, device=x.device), crow.diff())
        perm = torch.argsort(col.long() * n + row, stable=True)
        t_crow = torch.zeros(f + 1, dtype=crow.dtype, device=x.device)
        t_crow[1:] = torch.bincount(col, minlength=f).cumsum(0)
        plan = x.transpose_plan = (t_crow, row[perm].to(crow.dtype), perm.to(crow.dtype))
    return plan


class _SparseMatmul(torch.autograd.Function):
    """``x @ w`` for a constant CSR ``x``; the backward ``x.T @ grad`` uses a CSR transpose
    built from a cached plan instead of torch's generic (sorting) sparse backward."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.x = x
        return x @ w

    @staticmethod
    def backward(ctx, grad: Tensor):
        x = ctx.x
        t_crow, t_col, perm = _transpose_plan(x)
        with quiet_sparse():
            # index_select, not x.values()[perm]: 2.3x faster (1.7 against 4.0 ms on PubMed's features)
            x_t = torch.sparse_csr_tensor(t_crow, t_col, x.values().index_select(0, perm), (x.size(1), x.size(0)))
        return None, x_t @ grad


class SparseInputLinear(nn.Linear):
    """``nn.Linear`` that also takes a sparse CSR ``x`` ``[N, F]``: one SpMM forward and one
    backward, no densifying (bag-of-words features are 1-10% non-zero)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.is_sparse_csr:
            out = _SparseMatmul.apply(x, self.weight.T.contiguous())
            return out + self.bias if self.bias is not None else out
        return super().forward(x)
