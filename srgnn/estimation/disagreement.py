"""Label-free error estimates from model disagreement, and calibration.

Generalization-disagreement equality (Jiang et al., ICLR 2022): for an ensemble that is
well calibrated, the expected rate at which two members trained with different seeds
disagree on unlabelled nodes equals their expected test error.

Predictions are labels ``[N]`` or logits / probabilities ``[N, C]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import as_tensor, check_choice, check_index, check_int
from ..graph import Graph, model_inputs


def _labels(prediction: Tensor) -> Tensor:
    prediction = as_tensor(prediction, "predictions")
    return prediction.argmax(-1) if prediction.dim() == 2 else prediction.long()


def _check(predictions: tuple[Tensor, ...], nodes) -> Tensor | None:
    if len(predictions) < 2:
        raise ValueError("Disagreement needs at least two models' predictions.")
    widths = {p.size(1) for p in (as_tensor(p, "predictions") for p in predictions) if p.dim() == 2}
    if len(widths) > 1:
        raise ValueError(f"The models have different output sizes {sorted(widths)}; compare models of one task.")
    lengths = {as_tensor(p, "predictions").size(0) for p in predictions}
    if len(lengths) > 1:
        raise ValueError(f"Predictions cover different node counts {sorted(lengths)}.")
    if nodes is not None:
        nodes = check_index(nodes, next(iter(lengths)), "nodes")
        if nodes.numel() == 0:
            raise ValueError("nodes is empty: there is nothing to compare on.")
    return nodes


def disagreement_rate(a: Tensor, b: Tensor, nodes: Tensor | None = None) -> float:
    """Fraction of ``nodes`` (default all) on which the two predicted labels differ, in [0, 1]."""
    nodes = _check((a, b), nodes)
    la, lb = _labels(a), _labels(b)
    if nodes is not None:
        la, lb = la[nodes], lb[nodes]
    return float((la != lb).float().mean())


#: ``estimate_error``'s methods, and what each needs besides the predictions on the target nodes.
ESTIMATORS = {
    "gde": "two or more models (labels, logits or probabilities): their mean pairwise disagreement",
    "confidence": "one or more models' logits or probabilities: 1 - the ensemble's mean top probability",
    "doc": "logits or probabilities and held_out labelled nodes drawn like the training set: the held-out "
           "error plus the drop in mean confidence from them to the targets",
    "atc": "logits or probabilities and held_out labelled nodes drawn like the training set: the share of "
           "targets below the confidence threshold that reproduces the held-out error",
    "held_out": "logits or probabilities and held_out labelled nodes: their error itself, which doc and atc "
                "correct; unbiased only when the held-out nodes are drawn like the targets",
}


@dataclass(frozen=True)
class ErrorEstimate:
    """A label-free estimate of the error on the target nodes; ``low`` and ``high`` bound its
    bootstrap interval at ``level`` (``None`` without bootstrap). ``float(estimate)`` is ``error``."""

    method: str
    error: float
    low: float | None = None
    high: float | None = None
    level: float | None = None

    def __float__(self) -> float:
        return self.error


def _probabilities(prediction: Tensor, kind: str) -> Tensor:
    prediction = as_tensor(prediction, "predictions", dtype=torch.float64)
    if prediction.dim() != 2:
        raise ValueError(f"Confidence-based estimates need [N, C] logits or probabilities; got shape "
                         f"{tuple(prediction.shape)} (labels carry no confidence: use method='gde').")
    if kind == "logits":
        return prediction.softmax(1)
    if not (torch.isfinite(prediction).all() and (prediction >= 0).all()
            and torch.allclose(prediction.sum(1), torch.ones_like(prediction[:, 0]), atol=1e-4)):
        raise ValueError("kind='probs', but the rows are not probabilities (in [0, 1], summing to 1); pass "
                         "kind='logits' for logits.")
    return prediction


def check_held_out(held_out) -> None:
    """Refuse a ``held_out`` that is not a ``(node ids, labels)`` pair (a lone id tensor, say)."""
    if isinstance(held_out, Tensor) or not (isinstance(held_out, (tuple, list)) and len(held_out) == 2):
        what = f"a tensor of shape {tuple(held_out.shape)}" if isinstance(held_out, Tensor) else type(held_out).__name__
        raise TypeError(f"held_out must be a pair (node ids [m], labels [m]) of labelled nodes; got {what}. Save one "
                        "with torch.save((nodes, data.y[nodes]), path).")


def estimate_error(*predictions: Tensor, nodes: Tensor | None = None, method: str = "gde", kind: str = "logits",
                   held_out: tuple[Tensor, Tensor] | None = None, n_bootstrap: int | None = None,
                   level: float = 0.9, seed: int = 0) -> ErrorEstimate:
    """The error of the ensemble of ``predictions`` on ``nodes`` (default all), estimated without
    their labels by ``method`` (``ESTIMATORS`` says what each needs).

    Args:
        predictions: per model, labels ``[N]`` (``gde`` only) or ``[N, C]`` outputs, ``kind``
            ``"logits"`` (default) or ``"probs"``.
        held_out: ``(node ids [m], their labels [m])``, labelled nodes the models did not train
            on, drawn like the training set (``doc``, ``atc``, ``held_out``).
        n_bootstrap: resample the target (and held-out) nodes this many times for a percentile
            interval at ``level``; ``None`` gives the estimate alone.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method={method!r} is not an estimator; expected one of {sorted(ESTIMATORS)}.")
    check_choice(kind, ("logits", "probs"), "kind")
    if method == "gde":
        nodes = _check(predictions, nodes)
    elif not predictions:
        raise ValueError(f"method={method!r} needs at least one model's predictions.")
    else:
        nodes = _check(predictions + predictions[:1], nodes)  # one model is an ensemble here
    n = as_tensor(predictions[0], "predictions").size(0)
    targets = torch.arange(n) if nodes is None else nodes
    if n_bootstrap is not None:
        n_bootstrap = check_int(n_bootstrap, "n_bootstrap")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level!r}.")
    if method == "gde":
        labels = torch.stack([_labels(p) for p in predictions])  # [M, N]
        disagree = torch.stack([(a != b).double() for a, b in combinations(labels, 2)]).mean(0)  # [N]
        if not bool(disagree[targets].any()):
            raise ValueError(f"The {len(predictions)} models agree on every target node, so GDE would estimate an "
                             "error of exactly 0, whatever the true error: its assumption (a calibrated ensemble "
                             "whose members differ) is visibly broken. Use models that differ more (other seeds and "
                             "architectures, dropout), method='confidence', or method='atc' with held_out labels.")

        def statistic(target: Tensor, _held: Tensor | None) -> float:
            return float(disagree[target].mean())
    else:
        probs = torch.stack([_probabilities(p, kind) for p in predictions]).mean(0)  # the ensemble's
        confidence, predicted = probs.max(1)
        if method != "confidence":
            if held_out is None:
                raise ValueError(f"method={method!r} needs held_out=(node ids, labels) of labelled nodes drawn "
                                 "like the training set and not trained on.")
            check_held_out(held_out)
            held_nodes = check_index(held_out[0], n, "held_out nodes")
            held_labels = as_tensor(held_out[1], "held_out labels").long().view(-1)
            if held_labels.numel() != held_nodes.numel() or held_nodes.numel() == 0:
                raise ValueError(f"held_out needs as many labels as nodes, at least one; got {held_nodes.numel()} "
                                 f"nodes and {held_labels.numel()} labels.")
            classes = probs.size(1)
            if bool(((held_labels < 0) | (held_labels >= classes)).any()):
                raise ValueError(f"held_out labels must be classes 0..{classes - 1} of these {classes}-class "
                                 f"predictions; got labels in {int(held_labels.min())}..{int(held_labels.max())}.")
            held_wrong = (predicted[held_nodes] != held_labels).double()

        def statistic(target: Tensor, held: Tensor | None) -> float:
            if method == "confidence":
                return float(1.0 - confidence[target].mean())
            wrong, held_confidence = held_wrong[held], confidence[held_nodes[held]]
            if method == "held_out":
                return float(wrong.mean())
            if method == "doc":
                return float(wrong.mean() + held_confidence.mean() - confidence[target].mean())
            # ATC: the threshold below which the held-out share of confidences is the held-out error.
            threshold = torch.quantile(held_confidence, float(wrong.mean())) if wrong.any() else -1.0
            return float((confidence[target] < threshold).double().mean())

    held_all = None if method in ("gde", "confidence") else torch.arange(held_nodes.numel())
    error = statistic(targets, held_all)
    if n_bootstrap is None:
        return ErrorEstimate(method, error)
    generator = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(n_bootstrap):
        target = targets[torch.randint(targets.numel(), (targets.numel(),), generator=generator)]
        held = None if held_all is None else torch.randint(held_all.numel(), (held_all.numel(),), generator=generator)
        draws.append(statistic(target, held))
    low, high = torch.quantile(torch.tensor(draws, dtype=torch.float64),
                               torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return ErrorEstimate(method, error, low, high, level)


def predict_all(models, data: Data | Graph) -> list[Tensor]:
    """Logits ``[N, C]`` of each (trained) model on a ``Data`` or ``Graph``, for the functions
    above: the same input as ``srgnn.Trainer.logits`` (sparse features as CSR), on each model's
    device."""
    graph = data if isinstance(data, Graph) else Graph.from_data(data)
    outputs = []
    with torch.no_grad():
        for model in models:
            model.eval()
            on_device = graph.on(next(model.parameters()).device)
            outputs.append(model(*model_inputs(model, on_device.x, on_device)).cpu())
    return outputs


def _check_probabilities(probs: Tensor, labels: Tensor) -> None:
    """Refuse anything but ``[n, C]`` rows of probabilities (logits among them) with ``[n]`` labels."""
    if probs.dim() != 2 or probs.size(0) != labels.numel() or probs.size(0) == 0:
        raise ValueError(f"Expected probs [n, C] and labels [n] with n > 0; got {tuple(probs.shape)} and "
                         f"{tuple(labels.shape)}.")
    if not (torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
            and torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4)):
        raise ValueError(f"probs must hold probabilities, rows in [0, 1] summing to 1; got values in "
                         f"[{float(probs.min()):.3g}, {float(probs.max()):.3g}]. For logits pass "
                         "logits.softmax(dim=1).")


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    r"""ECE with ``n_bins`` equal-width confidence bins:
    :math:`\sum_b \tfrac{|B_b|}{n}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`."""
    probs, labels = as_tensor(probs, "probs", dtype=torch.float64), as_tensor(labels, "labels").long()
    _check_probabilities(probs, labels)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    # Bin b holds confidences in (b/n_bins, (b+1)/n_bins]; a confidence of exactly 0 goes to bin 0.
    bins = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in bins.unique():
        in_bin = bins == b
        ece += in_bin.double().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


def calibrated_ece_floor(probs: Tensor, n_draws: int = 50, n_bins: int = 15, seed: int = 0) -> float:
    """The mean ``expected_calibration_error`` of ``n_draws`` label sets drawn from ``probs``
    ``[N, C]`` themselves: what a perfectly calibrated model with these confidences scores on
    ``N`` nodes. Binned ECE is biased upwards on few nodes (a few bins of few nodes each), so an
    ECE is only as small as this floor."""
    probs = as_tensor(probs, "probs", dtype=torch.float64)
    n_draws = check_int(n_draws, "n_draws")
    generator = torch.Generator().manual_seed(seed)
    draws = [expected_calibration_error(probs, torch.multinomial(probs, 1, generator=generator).view(-1), n_bins)
             for _ in range(n_draws)]
    return sum(draws) / n_draws


def ensemble_vote(*predictions: Tensor, num_classes: int | None = None) -> Tensor:
    r"""The ensemble's vote :math:`\tilde h_k(x)`, the share of members predicting class k,
    ``[N, C]``, from M members' labels ``[N]`` or logits / probabilities ``[N, C]``."""
    if not predictions:
        raise ValueError("ensemble_vote needs at least one member's predictions.")
    labels = torch.stack([_labels(p).cpu() for p in predictions])  # [M, N]
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    return torch.nn.functional.one_hot(labels, num_classes).double().mean(0)


def class_aggregated_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    r"""Class-aggregated calibration error (CACE; Jiang et al., ICLR 2022, Def. 4.2), the
    quantity that bounds GDE's error: over confidence bins :math:`q`,
    :math:`\sum_q \bigl|\sum_k P(Y=k, \tilde h_k(X)=q) - q\sum_k P(\tilde h_k(X)=q)\bigr|`,
    the classes summed *inside* the absolute value. Pass the ensemble's vote
    (``ensemble_vote``) as ``probs`` for the bound; softmax outputs give the same quantity for
    them. Equal-width bins as ``expected_calibration_error``."""
    probs, labels = as_tensor(probs, "probs", dtype=torch.float64), as_tensor(labels, "labels").long()
    _check_probabilities(probs, labels)
    hit = torch.nn.functional.one_hot(labels, probs.size(1)).double()  # [n, C]
    bins = (torch.ceil(probs * n_bins).long() - 1).clamp(0, n_bins - 1)
    gap = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins.view(-1), (hit - probs).view(-1))
    return float(gap.abs().sum() / probs.size(0))


def classwise_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Class-wise ECE of (ensemble) probabilities (Kull et al., 2019): for each class k, the
    binned gap between the predicted probability of k and the frequency of k, averaged over
    classes. Not the quantity in the GDE bound: that is ``class_aggregated_calibration_error``."""
    probs, labels = as_tensor(probs, "probs", dtype=torch.float64), as_tensor(labels, "labels").long()
    _check_probabilities(probs, labels)
    total = 0.0
    for k in range(probs.size(1)):
        p = probs[:, k]
        bins = (torch.ceil(p * n_bins).long() - 1).clamp(0, n_bins - 1)
        hit = (labels == k).double()
        total += sum(float((bins == b).double().mean() * (hit[bins == b].mean() - p[bins == b].mean()).abs())
                     for b in bins.unique())
    return total / probs.size(1)
