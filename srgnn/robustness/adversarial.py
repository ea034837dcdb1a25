r"""DANN's shift penalty: a domain discriminator behind a gradient-reversal layer (Ganin et al.,
JMLR 2016), as a penalty module with parameters of its own.

.. math::
    d(h_{\text{train}}, h_{\text{IID}}) = \mathrm{BCE}\big(D(R(h)), \text{domain}\big)

with :math:`R` the identity forward and :math:`-1\times` the gradient backward, so the
discriminator :math:`D` learns to tell the training rows from the IID rows while the model
beneath learns to make them indistinguishable. ``h_train`` is ``[n, H]``, ``h_iid`` ``[m, H]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.scale * grad, None


class _SquareLazyLinear(nn.LazyLinear):
    """``nn.Linear(H, H)`` once it has seen its input's width H (a ``LazyLinear`` whose output
    width is its input's)."""

    def __init__(self):
        super().__init__(0)

    def initialize_parameters(self, input: Tensor) -> None:
        if self.has_uninitialized_params():
            self.out_features = input.shape[-1]
        super().initialize_parameters(input)


class DomainDiscriminator(nn.Module):
    """DANN's penalty: ``Linear(H, H) -> ReLU -> Linear(H, 1)`` on the gradient-reversed hidden
    rows, scored by binary cross-entropy against their domain (training 1, IID 0).

    Its layers are lazy: they take H from the first call, which ``srgnn.Trainer`` makes once
    before building the optimizer. ``forward(h_train [n, H], h_iid [m, H]) -> []``."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(_SquareLazyLinear(), nn.ReLU(), nn.LazyLinear(1))

    def forward(self, h_train: Tensor, h_iid: Tensor) -> Tensor:
        both = _GradientReversal.apply(torch.cat([h_train, h_iid]), 1.0)
        domain = torch.cat([torch.ones(h_train.size(0)), torch.zeros(h_iid.size(0))]).to(both.device)
        return F.binary_cross_entropy_with_logits(self.layers(both).view(-1), domain)
