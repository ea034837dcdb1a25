"""Stochastic weight averaging for full-batch graph models, on ``torch.optim.swa_utils``.

* ``SWAConfig``: when, how often and under which learning-rate schedule to average inside
  ``srgnn.Trainer`` (and whether to collect a ``SWAG`` posterior there too).
* ``update_bn``: recompute BatchNorm statistics with one full-graph forward pass.
* ``SWAG``: a Gaussian over weights (diagonal plus low rank) for Bayesian model averaging;
  ``multiswag_predict_proba`` averages several, one per training seed (MultiSWAG, Wilson &
  Izmailov, 2020).
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
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn
from torch_geometric.data import Data

from .._validation import check_int, check_number
from ..graph import Graph, model_inputs


@dataclass(frozen=True)
class SWAConfig:
    """Average weights from ``start`` (a fraction of the epochs) on.

    Args:
        start: fraction of training after which averaging begins, in [0, 1) (0 suits a warm
            start from a trained model, ``Trainer(warm_start=True)``).
        lr: the SWA learning rate: with ``schedule="constant"`` the constant rate ``SWALR``
            anneals to (``None`` keeps the optimizer's); with ``"cyclical"`` the low end of each
            cycle, which starts at the optimizer's rate.
        anneal_epochs: epochs to anneal to ``lr``. strategy: ``"cos"`` or ``"linear"``.
        schedule: ``"constant"`` (``SWALR``) or ``"cyclical"``: cosine cycles of ``cycle``
            epochs from the optimizer's rate down to ``lr`` (``CosineAnnealingWarmRestarts``),
            the weights collected at the end of each cycle, where the rate is lowest.
        every: with ``"constant"``, collect every this many epochs.
        ema: an exponential moving average (``ema_decay``) instead of the equal average.
        swag_rank: also collect a ``SWAG`` posterior of this rank from the same iterates (the
            trainer's ``swag_``); ``None`` collects none.
    """

    start: float = 0.75
    lr: float | None = None
    anneal_epochs: int = 10
    strategy: str = "cos"
    schedule: str = "constant"
    cycle: int = 10
    every: int = 1
    ema: bool = False
    ema_decay: float = 0.99
    swag_rank: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.start < 1.0:
            raise ValueError(f"SWAConfig.start must lie in [0, 1); got {self.start}.")
        if self.schedule not in ("constant", "cyclical"):
            raise ValueError(f"SWAConfig.schedule={self.schedule!r} is not supported; expected 'constant' or "
                             "'cyclical'.")
        if self.schedule == "cyclical" and self.lr is None:
            raise ValueError("SWAConfig(schedule='cyclical') needs lr, the low end of each cycle (the high end is "
                             "the optimizer's learning rate).")
        check_int(self.cycle, "SWAConfig.cycle")
        check_int(self.every, "SWAConfig.every")
        if self.swag_rank is not None:
            check_int(self.swag_rank, "SWAConfig.swag_rank", minimum=0)
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
        self.model, self.config = model, config
        self.start_epoch = min(int(config.start * epochs), epochs - 1)
        multi_avg_fn = get_ema_multi_avg_fn(config.ema_decay) if config.ema else None
        self.averaged = AveragedModel(model, multi_avg_fn=multi_avg_fn)
        self.swag = None if config.swag_rank is None else SWAG(model, max_rank=config.swag_rank)
        if config.schedule == "cyclical":
            self.scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=config.cycle, eta_min=config.lr)
        else:
            self.scheduler = None if config.lr is None else SWALR(
                optimizer, swa_lr=config.lr, anneal_epochs=config.anneal_epochs, anneal_strategy=config.strategy)

    @property
    def n_averaged(self) -> int:
        """Epochs averaged so far (0 when training stopped before averaging began)."""
        return int(self.averaged.n_averaged)

    def collects(self, epoch: int) -> bool:
        """Whether the weights after ``epoch`` join the average."""
        since = epoch - self.start_epoch
        if since < 0:
            return False
        period = self.config.cycle if self.config.schedule == "cyclical" else self.config.every
        # A cycle ends after its last epoch, at the lowest rate; constant collection starts at once.
        return (since + 1) % period == 0 if self.config.schedule == "cyclical" else since % period == 0

    def step(self, epoch: int) -> None:
        if self.collects(epoch):
            self.averaged.update_parameters(self.model)
            if self.swag is not None:
                self.swag.collect(self.model)
        if epoch >= self.start_epoch and self.scheduler is not None:
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
    x, edge_index = model_inputs(model, data.x if x is None else x,
                                 data.edge_index if edge_index is None else edge_index, device)
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one pass, exactly that pass's statistics
        m.train()
    with torch.no_grad():
        model(x, edge_index)
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
        x, edge_index = model_inputs(model, x, edge_index, self.mean.device)
        generator = torch.Generator().manual_seed(seed)
        total = None
        with torch.no_grad():
            for _ in range(n_samples):
                vector_to_parameters(self.sample(generator=generator), model.parameters())
                update_bn(model, None, x=x, edge_index=edge_index, warn=False)
                probs = model(x, edge_index).softmax(-1)
                total = probs if total is None else total + probs
        return total / n_samples


def multiswag_predict_proba(posteriors: list[SWAG], x: Tensor, edge_index: Tensor | Graph, n_samples: int = 20,
                            seed: int = 0) -> Tensor:
    """MultiSWAG: the mean of ``SWAG.predict_proba`` over posteriors from independent runs
    (different seeds), ``n_samples`` draws each, ``[N, C]`` on the first posterior's device."""
    if len(posteriors) < 2:
        raise ValueError(f"multiswag_predict_proba needs two or more SWAG posteriors (one per training run); got "
                         f"{len(posteriors)}. For one, call its predict_proba.")
    device = posteriors[0].mean.device
    return torch.stack([p.predict_proba(x, edge_index, n_samples, seed + i).to(device)
                        for i, p in enumerate(posteriors)]).mean(0)
