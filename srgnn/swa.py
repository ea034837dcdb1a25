"""Stochastic weight averaging for full-batch graph models, on ``torch.optim.swa_utils``.

* ``SWAConfig``: when and how to average inside ``srgnn.Trainer``.
* ``update_bn``: recompute BatchNorm statistics with one full-graph forward pass.
* ``SWAG``: a Gaussian over weights (diagonal plus low rank) for Bayesian model averaging.
"""
from __future__ import annotations

import copy
import warnings
from collections import deque
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn
from torch_geometric.data import Data

from ._validation import check_int, check_number
from .graph import Graph, graph_input, graph_on


@dataclass(frozen=True)
class SWAConfig:
    """Average weights from ``start`` (a fraction of the epochs) on.

    Args:
        start: fraction of training after which averaging begins, in (0, 1).
        lr: the constant SWA learning rate reached by annealing; ``None`` keeps the optimizer's.
        anneal_epochs: epochs to anneal to ``lr``. strategy: ``"cos"`` or ``"linear"``.
        ema: an exponential moving average (``ema_decay``) instead of the equal average.
    """

    start: float = 0.75
    lr: float | None = None
    anneal_epochs: int = 10
    strategy: str = "cos"
    ema: bool = False
    ema_decay: float = 0.99

    def __post_init__(self):
        if not 0.0 < self.start < 1.0:
            raise ValueError(f"SWAConfig.start must lie in (0, 1); got {self.start}.")
        if self.strategy not in ("cos", "linear"):
            raise ValueError(f"SWAConfig.strategy={self.strategy!r} is not supported; expected 'cos' or 'linear'.")
        if self.lr is not None:
            check_number(self.lr, "SWAConfig.lr", strict=True)
        check_int(self.anneal_epochs, "SWAConfig.anneal_epochs", minimum=0)
        if not 0.0 < check_number(self.ema_decay, "SWAConfig.ema_decay") < 1.0:
            raise ValueError(f"SWAConfig.ema_decay must lie in (0, 1); got {self.ema_decay}.")

    def start_training(self, model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> "_SWARun":
        return _SWARun(self, model, optimizer, epochs)


class _SWARun:
    """One training run's averaging state; ``Trainer`` calls ``step`` each epoch, then ``finish``."""

    def __init__(self, config: SWAConfig, model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int):
        self.model = model
        self.start_epoch = min(int(config.start * epochs), epochs - 1)
        multi_avg_fn = get_ema_multi_avg_fn(config.ema_decay) if config.ema else None
        self.averaged = AveragedModel(model, multi_avg_fn=multi_avg_fn)
        self.scheduler = None if config.lr is None else SWALR(
            optimizer, swa_lr=config.lr, anneal_epochs=config.anneal_epochs, anneal_strategy=config.strategy)

    @property
    def n_averaged(self) -> int:
        """Epochs averaged so far (0 when training stopped before averaging began)."""
        return int(self.averaged.n_averaged)

    def step(self, epoch: int) -> None:
        if epoch >= self.start_epoch:
            self.averaged.update_parameters(self.model)
            if self.scheduler is not None:
                self.scheduler.step()

    def finish(self, data: Data, x: Tensor, edge_index: Tensor | Graph) -> nn.Module:
        averaged = self.averaged.module
        update_bn(averaged, data, x=x, edge_index=edge_index, warn=False)
        return averaged


def update_bn(model: nn.Module, data: Data | None, *, x: Tensor | None = None,
              edge_index: Tensor | Graph | None = None, warn: bool = True) -> None:
    """Reset every BatchNorm's running statistics to the batch statistics of one full-graph
    forward pass on ``data`` (or the ``x`` and ``edge_index`` given instead; other layers, e.g.
    dropout, stay in eval mode). A model without BatchNorm is left unchanged, with a warning."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        if warn:
            warnings.warn(f"update_bn: {type(model).__name__} has no BatchNorm layer; nothing to update.", stacklevel=2)
        return
    device = next(model.parameters()).device
    x = (data.x if x is None else x).to(device)
    edge_index = graph_on(data.edge_index if edge_index is None else edge_index, device)
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one pass, exactly that pass's statistics
        m.train()
    with torch.no_grad():
        model(x, graph_input(model, edge_index))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)


class SWAG:
    r"""SWA-Gaussian (Maddox et al., NeurIPS 2019) over a model's parameters.

    ``collect(model)`` after each epoch late in training adds an iterate. The posterior is
    :math:`\mathcal N(\bar\theta, \tfrac12(\Sigma_{diag} + \tfrac{1}{K-1} D D^\top))` with
    :math:`\Sigma_{diag} = \overline{\theta^2} - \bar\theta^2` and :math:`D` the last ``max_rank``
    deviations :math:`\theta_i - \bar\theta_i`.
    """

    def __init__(self, model: nn.Module, max_rank: int = 20):
        if max_rank < 0:
            raise ValueError(f"max_rank must be >= 0; got {max_rank}.")
        self.model, self.max_rank = model, max_rank
        zeros = torch.zeros_like(parameters_to_vector(model.parameters())).detach()
        self.mean, self.sq_mean, self.n = zeros.clone(), zeros.clone(), 0
        self.deviations: deque[Tensor] = deque(maxlen=max_rank)

    def collect(self, model: nn.Module | None = None) -> None:
        theta = parameters_to_vector((model or self.model).parameters()).detach()
        self.n += 1
        self.mean += (theta - self.mean) / self.n
        self.sq_mean += (theta ** 2 - self.sq_mean) / self.n
        if self.max_rank:
            self.deviations.append(theta - self.mean)

    @property
    def variance(self) -> Tensor:
        """Diagonal of the iterates' variance."""
        return (self.sq_mean - self.mean ** 2).clamp_min(0.0)

    def sample(self, scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """One weight vector from the SWAG posterior (``scale`` multiplies the deviation)."""
        if self.n == 0:
            raise RuntimeError("SWAG.sample() before any collect().")
        # Drawn on the CPU (where ``generator`` lives), then moved: the same draws on any device.
        def normal(size: int) -> Tensor:
            return torch.randn(size, generator=generator, dtype=self.mean.dtype).to(self.mean.device)

        draw = self.variance.sqrt() * normal(self.mean.numel()) / 2 ** 0.5
        if len(self.deviations) > 1:
            d = torch.stack(list(self.deviations), dim=1)
            draw = draw + d @ normal(d.size(1)) / (2 * (len(self.deviations) - 1)) ** 0.5
        return self.mean + scale * draw

    def predict_proba(self, x: Tensor, edge_index: Tensor | Graph, n_samples: int = 20, seed: int = 0) -> Tensor:
        """Bayesian model average of softmax outputs over ``n_samples`` draws, ``[N, C]``, on the
        model's device (``x`` and ``edge_index`` are moved there). Each draw's BatchNorm
        statistics are recomputed on the full graph before it predicts (Maddox et al., Alg. 1):
        statistics of other weights do not fit it."""
        model = copy.deepcopy(self.model).eval()
        x, edge_index = x.to(self.mean.device), graph_on(edge_index, self.mean.device)
        generator = torch.Generator().manual_seed(seed)
        total = None
        with torch.no_grad():
            for _ in range(n_samples):
                vector_to_parameters(self.sample(generator=generator), model.parameters())
                update_bn(model, None, x=x, edge_index=edge_index, warn=False)
                probs = model(x, graph_input(model, edge_index)).softmax(-1)
                total = probs if total is None else total + probs
        return total / n_samples
