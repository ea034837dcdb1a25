"""The one training loop every srgnn trainer runs (``Trainer``, ``ReplicaTrainer``,
``LockstepTrainer``), and the optimizer they run it with."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(params: Iterable[Tensor], lr: float, weight_decay: float, device: torch.device,
                   name: str = "adam") -> torch.optim.Optimizer:
    """Adam (default) or SGD with momentum 0.9 (the optimizer SWA was designed around), fused
    where torch has the kernel: one kernel for every parameter (5-10% of a PubMed GCN run on
    the CPU)."""
    fused = device.type in ("cpu", "cuda")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


def run_epochs(step_loss: Callable[[], Tensor], optimizer: torch.optim.Optimizer, epochs: int,
               after_step: Callable[[int], bool] | None = None, steps_per_epoch: int = 1) -> Tensor:
    """Per epoch, ``steps_per_epoch`` times (once full-batch, once per mini-batch): zero the
    gradients, ``step_loss()`` (the loss of this step, after any per-step set-up it does), its
    backward and one optimizer step; then ``after_step(epoch)``, which stops training by
    returning ``True`` (early stopping) and may act on the weights (SWA).

    Returns each epoch's mean step loss ``[epochs run]``. They stay tensors until the end:
    reading each epoch's (``.item()``) would make the CPU wait for the GPU's kernels every epoch.
    """
    losses = []
    for epoch in range(epochs):
        total = None
        for _ in range(steps_per_epoch):
            optimizer.zero_grad()
            loss = step_loss()
            loss.backward()
            optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
        losses.append(total / steps_per_epoch if steps_per_epoch > 1 else total)
        if after_step is not None and after_step(epoch):
            break
    return torch.stack(losses)
