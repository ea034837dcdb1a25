"""Temperature scaling (Guo et al., ICML 2017): one scalar that divides a model's logits,
fitted by negative log-likelihood on held-out labelled nodes. It leaves every prediction's
argmax, and so accuracy, unchanged; it only rescales confidence.

Under bias, held-out nodes drawn like the training set are themselves shifted from the
unlabelled nodes: the temperature fitted there calibrates the model on nodes like them, which
``benchmarks.swa_bias`` measures on the test nodes. ``weights`` makes the fit importance-weighted
(Park et al., AISTATS 2020, for covariate shift): each held-out node's NLL counts by an estimate
of how much more often nodes like it occur among the unlabelled ones, such as
``srgnn.robustness.preparation.kmm_node_weights``.

``fit_group_temperatures`` fits one temperature per group of nodes, such as their hop distance
to the training set (``Graph.hop_distances``): a GNN's miscalibration varies with that distance
(Hsu et al., NeurIPS 2022), which one temperature cannot follow.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._validation import as_tensor


def fit_temperature(logits: Tensor, labels: Tensor, *, weights: Tensor | None = None, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` on ``labels``,
    each node's NLL weighted by ``weights`` when given.

    Args:
        logits: ``[n, C]`` raw scores of the held-out nodes (not probabilities).
        labels: ``[n]`` their classes.
        weights: ``[n]`` non-negative importance weights, not all zero; default all ones.

    Returns ``T``; apply it as ``(logits / T).softmax(-1)``.
    """
    logits, labels = as_tensor(logits, "logits").detach().double(), as_tensor(labels, "labels").long().view(-1)
    if logits.dim() != 2 or logits.size(0) != labels.numel() or logits.size(0) == 0:
        raise ValueError(f"fit_temperature expects logits [n, C] and labels [n] with n > 0; got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}.")
    if not torch.isfinite(logits).all():
        raise ValueError("fit_temperature: logits hold NaN or infinite values.")
    if labels.min() < 0 or labels.max() >= logits.size(1):
        raise ValueError(f"fit_temperature: labels must lie in [0, {logits.size(1)}); got "
                         f"[{int(labels.min())}, {int(labels.max())}].")
    if torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0])) and (logits >= 0).all():
        raise ValueError("fit_temperature takes logits, and these rows are probabilities (non-negative, "
                         "summing to 1): pass the model's raw outputs, or probs.log() for probabilities.")
    if weights is None:
        weights = torch.ones(logits.size(0), dtype=torch.float64)
    weights = as_tensor(weights, "weights").detach().double().view(-1)
    if weights.numel() != logits.size(0) or not torch.isfinite(weights).all() or (weights < 0).any() \
            or weights.sum() <= 0:
        raise ValueError(f"fit_temperature: weights must be {logits.size(0)} finite, non-negative values, not all "
                         f"zero (one per held-out node); got {weights.numel()} values.")
    weights = weights / weights.sum()
    # Optimised over log T: positive by construction, and the NLL is smooth in it.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = (weights * torch.nn.functional.cross_entropy(logits / log_t.exp(), labels, reduction="none")).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def fit_group_temperatures(logits: Tensor, labels: Tensor, groups: Tensor, num_groups: int, *,
                           min_size: int = 20) -> Tensor:
    """One temperature per group of held-out nodes, each fitted by ``fit_temperature`` on its
    group's nodes; a group with fewer than ``min_size`` nodes (none, for a group no held-out
    node falls in) takes the temperature fitted on all of them.

    Args:
        logits: ``[n, C]`` raw scores of the held-out nodes.
        labels: ``[n]`` their classes.
        groups: ``[n]`` each node's group, an int in ``[0, num_groups)``.

    Returns ``[num_groups]`` temperatures; apply them to nodes of groups ``g`` (``[m]``) as
    ``(logits / temperatures[g].unsqueeze(1)).softmax(1)``.
    """
    groups = as_tensor(groups, "groups").view(-1)
    if groups.numel() != as_tensor(logits, "logits").size(0) or groups.is_floating_point():
        raise ValueError(f"fit_group_temperatures: groups must hold one int per held-out node "
                         f"({as_tensor(logits, 'logits').size(0)}); got {groups.numel()} values of {groups.dtype}.")
    if num_groups < 1 or groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= num_groups):
        raise ValueError(f"fit_group_temperatures: groups must lie in [0, num_groups={num_groups}).")
    if min_size < 1:
        raise ValueError(f"fit_group_temperatures: min_size must be >= 1; got {min_size}.")
    sizes = torch.bincount(groups, minlength=num_groups)
    # The pooled fit only where a group needs it: with one group it would repeat that group's fit.
    pooled = fit_temperature(logits, labels) if bool((sizes < min_size).any()) else float("nan")
    temperatures = torch.full((num_groups,), pooled, dtype=torch.float64)
    for group in (sizes >= min_size).nonzero().view(-1).tolist():
        members = groups == group
        temperatures[group] = fit_temperature(logits[members], labels[members])
    return temperatures
