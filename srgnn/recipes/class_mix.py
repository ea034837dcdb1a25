r"""Prior shift: a classifier's predictions moved to the class mix of the nodes it predicts.

A model trained on labels whose classes come in the mix :math:`p` predicts :math:`p(c \mid x)`
under that mix. A localized set takes 20 nodes of every class, so :math:`p` is uniform, while
a graph's classes rarely are. If the nodes to predict have the mix :math:`q`, Bayes' rule with
the class-conditional :math:`p(x \mid c)` unchanged gives (Saerens, Latinne and Decaestecker,
Neural Computation 2002, here with :math:`q` given):

.. math::
    \log p_q(c \mid x) = \log p(c \mid x) + \log \frac{q(c)}{p(c)} + \text{const}.

:math:`q` cannot be read off the biased labels, and a model trained on them predicts it worse
than the uniform guess (docs/graphs.md). It can be read off a small labelled sample drawn
uniformly from the graph: ``class_mix`` counts it, smoothed so that a class the sample missed
keeps a small share instead of never being predicted.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._validation import as_tensor, check_int, check_number


def class_mix(labels: Tensor, num_classes: int, smoothing: float = 1.0) -> Tensor:
    """The share of each class among ``labels`` ``[n]`` (ints in ``0..num_classes - 1``),
    with ``smoothing`` added to every class's count (Laplace's rule at 1); ``[C]``, float64,
    summing to 1."""
    num_classes = check_int(num_classes, "num_classes")
    smoothing = check_number(smoothing, "smoothing")
    labels = as_tensor(labels, "labels").view(-1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer classes; got {labels.dtype}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be classes 0..{num_classes - 1}; got values in "
                         f"{int(labels.min())}..{int(labels.max())}.")
    counts = torch.bincount(labels.cpu(), minlength=num_classes).double() + smoothing
    if float(counts.sum()) == 0.0:
        raise ValueError("class_mix of no labels needs smoothing > 0 (it is then the uniform mix); pass labels.")
    return counts / counts.sum()


def _check_mix(mix: Tensor, num_classes: int, name: str) -> Tensor:
    mix = as_tensor(mix, name, torch.float64).view(-1)
    if mix.numel() != num_classes:
        raise ValueError(f"{name} must hold one share per class ({num_classes}); got {mix.numel()}.")
    if not bool(torch.isfinite(mix).all()) or bool((mix <= 0).any()):
        raise ValueError(f"{name} must be positive shares: a class at share 0 could never be predicted, or never "
                         "have been trained on; smooth the estimate (class_mix(labels, C, smoothing=1)).")
    if abs(float(mix.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1; got {float(mix.sum()):.6g}.")
    return mix


def shift_to_class_mix(logits: Tensor, source_mix: Tensor, target_mix: Tensor) -> Tensor:
    """``logits`` ``[N, C]`` of a model trained under the class mix ``source_mix`` ``[C]``,
    as log-probabilities ``[N, C]`` under ``target_mix`` ``[C]`` (see the module's docstring).
    Equal mixes return ``logits.log_softmax(-1)``."""
    logits = as_tensor(logits, "logits")
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float [N, C] tensor; got {logits.dtype} {tuple(logits.shape)}.")
    source = _check_mix(source_mix, logits.size(1), "source_mix")
    target = _check_mix(target_mix, logits.size(1), "target_mix")
    shift = (target / source).log().to(logits.device, logits.dtype)
    return (logits.log_softmax(-1) + shift).log_softmax(-1)
