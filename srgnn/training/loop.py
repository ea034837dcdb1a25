"""The one training loop every srgnn trainer runs (``Trainer``, ``ReplicaTrainer``,
``LockstepTrainer``), and the optimizer they run it with."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


OPTIMIZERS = ("adam", "sgd")
#: On an accelerator, epochs between checks that the loss is finite: each check makes the CPU
#: wait for the device's kernels. On the CPU every step is checked, before its update.
ACCELERATOR_CHECK_EVERY = 10


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says at which epoch and which term."""


def make_optimizer(params: Iterable[Tensor], lr: float, weight_decay: float, device: torch.device,
                   name: str = "adam") -> torch.optim.Optimizer:
    """Adam (default) or SGD with momentum 0.9 (the optimizer SWA was designed around), fused
    where torch has the kernel: one kernel for every parameter (5-10% of a GCN run on
    the CPU)."""
    fused = device.type in ("cpu", "cuda")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


def _check_finite(losses: list[Tensor], epoch: int, terms: Tensor | dict[str, Tensor]) -> None:
    """Raise ``NonFiniteLossError`` if a loss in ``losses`` (this epoch's last) is not finite."""
    if bool(torch.isfinite(losses[-1])):
        return
    first = int((~torch.isfinite(torch.stack(losses))).nonzero()[0])
    when = f"epoch {first}" + (f" (seen at epoch {epoch})" if first != epoch else "")
    named = {"loss": terms} if isinstance(terms, Tensor) else terms
    listing = ", ".join(f"{name} = {float(value.detach()):.4g}" for name, value in named.items())
    bad = [name for name, value in named.items() if not bool(torch.isfinite(value.detach()))]
    raise NonFiniteLossError(f"The training loss became non-finite at {when}, in {' and '.join(bad) or 'the loss'} "
                             f"({listing}); training stopped. Check the features for huge values, lower lr, or fix the "
                             "penalty (it must stay finite on the hidden rows it is given).")


def run_epochs(step_loss: Callable[[], Tensor | dict[str, Tensor]], optimizer: torch.optim.Optimizer, epochs: int,
               after_step: Callable[[int], bool] | None = None, steps_per_epoch: int = 1) -> Tensor:
    """Per epoch, ``steps_per_epoch`` times (once full-batch, once per mini-batch): zero the
    gradients, ``step_loss()`` (the loss of this step, or its terms by name, after any per-step
    set-up it does), its backward and one optimizer step; then ``after_step(epoch)``, which
    stops training by returning ``True`` (early stopping) and may act on the weights (SWA).

    A non-finite loss stops training with ``NonFiniteLossError`` naming the epoch and the term:
    on the CPU before the step that would carry it into the weights, on an accelerator at the
    next check (every ``ACCELERATOR_CHECK_EVERY`` epochs).

    Returns each epoch's mean step loss ``[epochs run]``. They stay tensors until the end:
    reading each epoch's (``.item()``) would make the CPU wait for the GPU's kernels every epoch.
    """
    losses = []
    for epoch in range(epochs):
        total = None
        for _ in range(steps_per_epoch):
            optimizer.zero_grad()
            terms = step_loss()
            loss = terms if isinstance(terms, Tensor) else sum(terms.values())
            # One scalar test per step; the history is copied only to report a failure.
            if (loss.device.type == "cpu" or epoch % ACCELERATOR_CHECK_EVERY == 0) and not bool(torch.isfinite(loss)):
                _check_finite(losses + [loss.detach()], epoch, terms)
            loss.backward()
            optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
        losses.append(total / steps_per_epoch if steps_per_epoch > 1 else total)
        if after_step is not None and after_step(epoch):
            break
    _check_finite(losses, len(losses) - 1, losses[-1])
    return torch.stack(losses)
