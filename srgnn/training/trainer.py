"""Full-batch training, prediction and evaluation for any srgnn model, on any device."""
from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import Tensor
from torch_geometric.data import Data

from .._validation import (check_choice, check_index, check_int, check_number, check_same_device,
                          check_seed)
from ..graph import Graph, graph_for, model_inputs
from .loop import OPTIMIZERS, make_optimizer, run_epochs
from .minibatch import MiniBatches, check_fan_outs
from ..models.base import NodeClassifier
from ..models.pyg import as_node_classifier
from ..robustness.preparation import check_iid_sample, shift_setup
from ..robustness.robust import ShiftRobust
from .swa import SWAConfig
from .subgraph import loss_subgraph, robust_loss_subgraph


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``; if ``None``, ``$SRGNN_DEVICE``, else CUDA when available and the CPU
    otherwise. A clear error for CUDA without it."""
    if device is None:
        device = os.environ.get("SRGNN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device ({err}); use 'cpu', 'cuda' or 'cuda:N'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use device='cpu'.")
    if resolved.type not in ("cpu", "cuda"):
        # srgnn's sparse kernels (CSR products, sparse LU) run on the CPU and CUDA only.
        raise ValueError(f"device={device!r}: srgnn runs on the CPU or CUDA (its sparse kernels have no "
                         f"{resolved.type} implementation); use device='cpu'.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0; use 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'.")
    return resolved


def as_shift_robust(model, owner: str) -> ShiftRobust:
    """``model`` if it is a ``ShiftRobust``, else the model (checked) in one without a penalty."""
    if isinstance(model, ShiftRobust):
        return model
    return ShiftRobust(as_node_classifier(model, owner), None, instance_weights=None)


def check_swa(swa) -> SWAConfig | None:
    """``swa``, refused unless ``None`` or an ``srgnn.training.swa.SWAConfig``."""
    if swa is not None and not isinstance(swa, SWAConfig):
        raise TypeError(f"swa must be None or an srgnn.training.swa.SWAConfig (e.g. SWAConfig(start=0.75)); got {swa!r}.")
    return swa


def optimizer_settings(model: NodeClassifier, lr: float | None, weight_decay: float | None) -> tuple[float, float]:
    """``lr`` (> 0) and ``weight_decay`` (>= 0), each defaulting to the model's ``optimizer_defaults``."""
    defaults = model.optimizer_defaults
    return (check_number(defaults["lr"] if lr is None else lr, "lr", strict=True),
            check_number(defaults["weight_decay"] if weight_decay is None else weight_decay, "weight_decay"))


def num_classes(data: Data) -> int:
    """``data.num_classes`` where it is set, else the largest label plus one."""
    return int(getattr(data, "num_classes", None) or int(data.y.max()) + 1)


def check_output_classes(model: NodeClassifier, data: Data) -> None:
    """Refuse a model whose logits (``out_channels``, where it declares them) miss classes of ``data.y``."""
    classes = num_classes(data)
    out_channels = getattr(model, "out_channels", None)
    if out_channels is not None and out_channels < classes:
        raise ValueError(f"{type(model).__name__} has {out_channels} output classes but the labels have "
                         f"{classes}; build it with out_channels={classes} (data.num_classes).")


def check_training_set(graph: Graph, train_idx: Tensor) -> Tensor:
    """Validate a training set at the public boundary, on the graph ``graph_for`` gave (which
    checked the graph, and its labels where it has them, once); returns it as a CPU index tensor."""
    data = graph.data
    if getattr(data, "y", None) is None:
        raise ValueError("data.y is required here: the graph carries no node labels.")
    if isinstance(train_idx, Tensor):
        check_same_device(x=data.x, edge_index=data.edge_index, train_idx=train_idx)
    train_idx = check_index(train_idx, data.num_nodes, "train_idx")
    if train_idx.numel() == 0:
        raise ValueError("train_idx is empty: there is nothing to train on.")
    unique = torch.unique(train_idx)
    if unique.numel() != train_idx.numel():
        raise ValueError(f"train_idx repeats {train_idx.numel() - unique.numel()} node(s), which would weight "
                         "their loss several times; pass each node once (torch.unique(train_idx)).")
    y = data.y.view(-1)[train_idx.to(data.y.device)].cpu()
    classes = num_classes(data)
    if bool(((y < 0) | (y >= classes)).any()):
        raise ValueError(f"{int(((y < 0) | (y >= classes)).sum())} training node(s) have no valid label "
                         f"(labels must lie in 0..{classes - 1}); drop unlabelled nodes from train_idx.")
    missing = sorted(set(range(classes)) - set(y.tolist()))
    if missing:
        raise ValueError(f"Class(es) {missing} have no training node; every class needs at least one "
                         "labelled node (sample per class, or relabel to the classes present).")
    return train_idx


def check_validation_set(val_idx: Tensor, train_idx: Tensor, data: Data) -> Tensor:
    """Validate early stopping's nodes: labelled, not empty, none of them a training node (early
    stopping on training nodes would stop when training accuracy stalls, not when it overfits)."""
    val_idx = check_index(val_idx, data.num_nodes, "val_idx").cpu()
    if val_idx.numel() == 0:
        raise ValueError("val_idx is empty: early stopping needs validation nodes (or build the Trainer with "
                         "patience=None).")
    shared = torch.isin(val_idx, train_idx.cpu())
    if shared.any():
        raise ValueError(f"val_idx shares {int(shared.sum())} node(s) with train_idx (e.g. node "
                         f"{int(val_idx[shared][0])}); early stopping must read nodes outside training: "
                         "val_idx = val_idx[~torch.isin(val_idx, train_idx)].")
    y = data.y.view(-1)[val_idx.to(data.y.device)].cpu()
    if bool((y < 0).any()):
        raise ValueError(f"{int((y < 0).sum())} validation node(s) have no label (y < 0); drop them from val_idx.")
    return val_idx


class ShiftCollapseWarning(UserWarning):
    """A shift-robust model that did not fit its own training nodes."""


#: A fit that ends with a training cross-entropy above this share of chance level's, ln C, and a
#: training accuracy below ``COLLAPSE_ACCURACY`` did not fit its labels. Measured on Amazon Photo:
#: collapsed SR-GCN and SR-APPNP fits ended at 0.86-0.99 ln C and accuracy 0.18-0.51, fits that
#: trained at 0.01-0.18 ln C and 0.93-1.0 (a short fit can end at 0.75 ln C with accuracy 0.9).
COLLAPSE_CE_SHARE = 0.5
COLLAPSE_ACCURACY = 0.6


def warn_if_collapsed(logits: Tensor, y: Tensor, robust: ShiftRobust) -> None:
    """Warn (``ShiftCollapseWarning``) when the trained model's cross-entropy and accuracy on its
    training nodes (``logits`` ``[n, C]``, labels ``[n]``) stay near chance level: the shift penalty
    won over the labels, typically by collapsing the hidden layer to a constant (a saturated
    tanh, a dead ReLU) on which every distance is zero."""
    classes = logits.size(1)
    ce, accuracy = float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
    if ce <= COLLAPSE_CE_SHARE * math.log(classes) or accuracy >= COLLAPSE_ACCURACY:
        return
    warnings.warn(ShiftCollapseWarning(
        f"The shift-robust model did not fit its training nodes: training accuracy {accuracy:.2f}, cross-entropy "
        f"{ce:.2f} against {math.log(classes):.2f} for a uniform guess over {classes} classes. The shift penalty "
        f"(lam={robust.lam}) likely collapsed the hidden layer; this happens with unnormalized features (raw counts), "
        "whose large activations make the penalty dwarf the cross-entropy. Pass ShiftRobust(..., max_pull=1), "
        "which keeps the penalty's pull within the labels', or lower lam, and compare with the model trained "
        "without ShiftRobust before using this one."), stacklevel=3)


def classification_scores(logits: Tensor, data: Data | Graph, idx: Tensor) -> dict[str, float]:
    """Micro-F1 (= accuracy), macro-F1 and cross-entropy of ``logits`` ``[N, C]`` on ``idx``."""
    data = data.data if isinstance(data, Graph) else data
    idx = check_index(idx, data.num_nodes, "idx").cpu()
    if idx.numel() == 0:
        raise ValueError("idx is empty: there are no nodes to evaluate.")
    logits, y = logits.cpu()[idx], data.y.view(-1).cpu()[idx].long()
    unlabelled = int(((y < 0) | (y >= logits.size(1))).sum())
    if unlabelled:
        raise ValueError(f"{unlabelled} of the {idx.numel()} nodes to evaluate have no valid label (y < 0, the mark "
                         f"of an unlabelled node, or >= the {logits.size(1)} classes); evaluate on labelled nodes "
                         "only: idx = idx[data.y[idx] >= 0].")
    pred = logits.argmax(1).numpy()
    return {"micro_f1": float(f1_score(y.numpy(), pred, average="micro")),
            "macro_f1": float(f1_score(y.numpy(), pred, average="macro")),
            "loss": float(F.cross_entropy(logits, y))}


class Trainer:
    """Fit / predict / evaluate a node classifier, optionally shift-robust.

    Args:
        model: a ``NodeClassifier`` or a ``ShiftRobust`` around one; a plain model trains
            with cross-entropy alone.
        epochs: 200. lr, weight_decay: default to the model's ``optimizer_defaults`` (the
            paper's small-graph 0.01 and 5e-4; larger steps for SGC and DGI's linear heads).
        patience: early stopping on validation accuracy (needs ``val_idx`` in ``fit``);
            ``None`` trains all epochs.
        seed: seeds parameter initialisation, dropout and the IID sample.
        device: ``"cpu"``, ``"cuda"``…; default ``$SRGNN_DEVICE``, else CUDA when available.
        swa: an ``srgnn.training.swa.SWAConfig`` to average weights late in training. With
            ``patience`` too, the average of the epochs trained before the stop competes with
            the best early-stopped weights on validation accuracy (the average wins ties); if
            training stopped before averaging began, the early-stopped weights are used.
        validate_every: with ``patience``, check validation accuracy at every this many epochs
            (epochs 0, k, 2k, ...; patience counts checks). ``patience >= epochs`` never stops
            and keeps the best checked weights (the SR-GNN authors' ogbn-arxiv protocol: 10).
        batch_size: train on mini-batches (``srgnn.training.minibatch``) of this many labelled nodes, each
            with as many batches of the IID sample per epoch, their neighbourhoods sampled by
            PyG's ``NeighborLoader``; ``None`` (default) trains full-batch.
        num_neighbors: with ``batch_size``, the fan-out of each message-passing layer (``-1``:
            every neighbour; default every neighbour at every layer), one per layer.
        optimizer: ``"adam"`` (default) or ``"sgd"`` (momentum 0.9), at ``lr``.
        warm_start: ``fit`` starts from the model's current weights (one already trained, say,
            to average from with ``SWAConfig(start=0.0)``) instead of re-initialising them.

    ``fit``, ``predict`` and ``evaluate`` take a ``Data`` or a ``srgnn.graph.Graph``
    (``Graph.from_data(data)``): pass one ``Graph`` to many trainers to compute what is derived
    from the graph once (``srgnn.graph.graph_for``).

    Attributes (after ``fit``): ``model_`` (the module evaluated), ``history_`` (losses),
    ``selected_``: which weights ``model_`` holds, ``"last"``, ``"best"`` (early stopping) or
    ``"swa"``; ``graph_``, the ``Graph`` it trained on, which ``evaluate`` reuses for the
    ``Data`` it was built from; ``swag_``, the ``srgnn.training.swa.SWAG`` posterior collected with
    ``SWAConfig(swag_rank=...)``, else ``None``; ``setup_``, the training set's
    ``srgnn.robustness.preparation.ShiftSetup`` (its IID sample and instance weights).
    """

    def __init__(self, model: NodeClassifier | ShiftRobust, *, epochs: int = 200, lr: float | None = None,
                 weight_decay: float | None = None, patience: int | None = None, seed: int = 0,
                 device: str | torch.device | None = None, swa=None, validate_every: int = 1,
                 batch_size: int | None = None, num_neighbors: list[int] | None = None, optimizer: str = "adam",
                 warm_start: bool = False):
        epochs, seed = check_int(epochs, "epochs"), check_seed(seed)
        patience = None if patience is None else check_int(patience, "patience")
        self.validate_every = check_int(validate_every, "validate_every")
        self.model = as_shift_robust(model, "Trainer")
        if batch_size is None and num_neighbors is not None:
            raise ValueError("num_neighbors sets the fan-outs of mini-batch training; pass batch_size too, or "
                             "drop num_neighbors to train full-batch.")
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        if self.batch_size is not None and self.model.reads_iid_logits:
            raise ValueError("label_shift=True and conditional=True weigh the penalty by the IID nodes' predicted "
                             "classes, which mini-batch training does not compute (their batch reaches only the "
                             "hidden layer); train full-batch (no batch_size) or turn them off.")
        self.num_neighbors = None if batch_size is None else check_fan_outs(num_neighbors, self.model.model)
        lr, weight_decay = optimizer_settings(self.model.model, lr, weight_decay)
        self.epochs, self.lr, self.weight_decay, self.patience, self.seed = epochs, lr, weight_decay, patience, seed
        self.device = resolve_device(device)
        check_choice(optimizer, OPTIMIZERS, "optimizer")
        self.swa, self.optimizer, self.warm_start = check_swa(swa), optimizer, bool(warm_start)

    def fit(self, data: Data | Graph, train_idx: Tensor, val_idx: Tensor | None = None,
            iid_idx: Tensor | None = None, loader: Iterable[Data] | None = None) -> "Trainer":
        """Train on ``train_idx``; returns ``self``. ``loader``: your own PyG ``NeighborLoader``
        over the training nodes (or a list of its batches) to train on mini-batches as it gives
        them, instead of ``batch_size`` / ``num_neighbors`` (``srgnn.training.minibatch.MiniBatches``)."""
        if loader is not None and self.batch_size is not None:
            raise ValueError("Pass a loader to fit(), or batch_size (and num_neighbors) to the Trainer, not both: "
                             "each says how to batch the labelled nodes.")
        if loader is not None and self.model.reads_iid_logits:
            raise ValueError("label_shift=True and conditional=True read the IID nodes' logits, which mini-batch "
                             "training does not compute; train full-batch or turn them off.")
        graph = graph_for(data, self.device)
        train_idx = check_training_set(graph, train_idx)
        data = graph.data
        iid_idx = None if iid_idx is None else check_iid_sample(iid_idx, train_idx, data.num_nodes)
        check_output_classes(self.model.model, data)
        if self.patience is not None and val_idx is None:
            raise ValueError(f"patience={self.patience} stops early on validation accuracy, but fit() got no "
                             "val_idx; pass val_idx=..., or build the Trainer with patience=None.")
        torch.manual_seed(self.seed)
        robust = self.model
        self.setup_ = setup = shift_setup(robust.to(self.device), graph, train_idx, self.seed, iid_idx)
        if not self.warm_start:
            robust.reset_parameters()
        early_stopping = val_idx is not None and self.patience is not None
        val_idx = check_validation_set(val_idx, train_idx, data) if early_stopping else None
        if self.batch_size is None and loader is None:
            x, edge_index, y, (train_local, iid_local) = robust_loss_subgraph(robust, graph, train_idx, setup.iid_idx,
                                                                              self.device)
            weights = setup.weights.to(self.device)
            steps_per_epoch = 1
            # Validation reads its own receptive field, cut once: in the training one, the
            # validation nodes' neighbourhoods would enter every step (ogbn-arxiv's 29,799
            # validation nodes reach most of the graph, 890 training nodes a sliver of it).
            val_x, val_edge_index, val_y, (val_local,) = (
                loss_subgraph(robust.model, graph, [val_idx], self.device) if early_stopping else (x, edge_index, y, [None]))

            def step_loss() -> dict[str, Tensor]:
                robust.train()
                return robust.loss_terms(x, edge_index, y, train_local, iid_local, weights)
        else:
            batches = MiniBatches(robust, setup, graph, train_idx, self.seed, self.device, batch_size=self.batch_size,
                                  num_neighbors=self.num_neighbors, loader=loader)
            step_loss, steps_per_epoch = batches.step_loss, batches.steps_per_epoch
            x, edge_index, y = graph.x, graph, data.y.view(-1).to(self.device)
            val_x, val_edge_index, val_y, val_local = x, edge_index, y, val_idx
        optimizer = make_optimizer(robust.parameters(), self.lr, self.weight_decay, self.device, self.optimizer)
        swa_state = self.swa.start_training(robust.model, optimizer, self.epochs) if self.swa else None
        best, best_state, waited = -1.0, None, 0

        def after_step(epoch: int) -> bool:
            nonlocal best, best_state, waited
            if swa_state is not None:
                swa_state.step(epoch)
            if not early_stopping or epoch % self.validate_every:
                return False
            accuracy = self._accuracy(robust.model, val_x, val_edge_index, val_y, val_local)
            if accuracy > best:
                best, best_state, waited = accuracy, copy.deepcopy(robust.model.state_dict()), 0
            else:
                waited += 1
            return waited >= self.patience

        self.history_ = run_epochs(step_loss, optimizer, self.epochs, after_step, steps_per_epoch).tolist()
        self.selected_ = "last"
        if best_state is not None:
            robust.model.load_state_dict(best_state)
            self.selected_ = "best"
        self.model_, self.graph_ = robust.model, graph
        self.swag_ = None if swa_state is None else swa_state.swag
        if swa_state is not None and swa_state.n_averaged > 0:
            averaged = swa_state.finish(data, x, edge_index)
            # Early stopping picked its weights on validation nodes: the average must beat them there.
            if best_state is None or self._accuracy(averaged, val_x, val_edge_index, val_y, val_local) >= best:
                self.model_, self.selected_ = averaged, "swa"
        self.model_.eval()
        if self.batch_size is None and loader is None and robust.regularizer is not None:
            with torch.no_grad():
                fit_logits = self.model_(*model_inputs(self.model_, x, edge_index))[train_local]
            warn_if_collapsed(fit_logits, y[train_local], robust)
        return self

    @staticmethod
    def _accuracy(model, x, edge_index, y, idx) -> float:
        model.eval()
        with torch.no_grad():
            idx = torch.as_tensor(idx, device=y.device)
            return float((model(*model_inputs(model, x, edge_index))[idx].argmax(1) == y[idx]).float().mean())

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node, ``[N, C]``, on the CPU."""
        if not hasattr(self, "model_"):
            raise RuntimeError("Call fit() before predict() or evaluate().")
        graph = graph_for(data, self.device, self.graph_)
        with torch.no_grad():
            return self.model_(*model_inputs(self.model_, graph.x, graph)).cpu()

    def predict(self, data: Data | Graph) -> Tensor:
        """Predicted class of every node, ``[N]``."""
        return self.logits(data).argmax(1)

    def evaluate(self, data: Data | Graph, idx: Tensor) -> dict[str, float]:
        """Micro-F1 (= accuracy), macro-F1 and cross-entropy on ``idx``."""
        return classification_scores(self.logits(data), data, idx)
