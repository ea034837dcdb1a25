"""Full-batch training, prediction and evaluation for any srgnn model, on any device."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import Tensor
from torch_geometric.data import Data

from ._validation import check_graph, check_index, check_int, check_number, check_same_device
from .graph import Graph, graph_input, model_input
from .models.base import NodeClassifier
from .propagation import TargetRows
from .robust import ShiftRobust


def fitted_graph(data: Data | Graph, device: torch.device) -> Graph:
    """The ``Graph`` a trainer runs on: ``data`` itself on ``device`` (a copy kept in its cache
    if it lives elsewhere), or one built from a ``Data`` (``Graph.from_data``). Build a
    ``Graph`` once and pass it to every trainer on a graph, so its adjacency, SGC's features,
    DGI's embeddings and PPR factorizations are computed once for all of them."""
    if isinstance(data, Graph):
        if data.data is None:
            raise ValueError("This Graph has no labels; build it with Graph.from_data(data), which keeps the Data.")
        data.check_current()
        return data.on(device)
    return Graph.from_data(data, device)


def evaluation_graph(fitted: Graph, data: Data | Graph, device: torch.device) -> Graph:
    """The ``Graph`` to predict on: ``fitted`` (the one trained on) for the ``Data`` it was built
    from, so that what it computed is reused, else ``fitted_graph(data, device)``."""
    if data is fitted.data:
        fitted.check_current()
        return fitted
    return fitted_graph(data, device)


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
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0; use 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'.")
    return resolved


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


def check_training_set(data: Data | Graph, train_idx: Tensor) -> Tensor:
    """Validate a training set at the public boundary; returns it as a CPU index tensor. A
    ``Graph`` checked its ``Data`` when it was built; a ``Data`` is checked here."""
    if isinstance(data, Graph):
        data.check_current()
        data = data.data
        check_graph(data, require_labels=True)  # features and labels were checked when it was built
    else:
        check_graph(data, require_labels=True, require_features=True)
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


def classification_scores(logits: Tensor, data: Data | Graph, idx: Tensor) -> dict[str, float]:
    """Micro-F1 (= accuracy), macro-F1 and cross-entropy of ``logits`` ``[N, C]`` on ``idx``."""
    data = data.data if isinstance(data, Graph) else data
    idx = check_index(idx, data.num_nodes, "idx").cpu()
    if idx.numel() == 0:
        raise ValueError("idx is empty: there are no nodes to evaluate.")
    logits, y = logits.cpu()[idx], data.y.view(-1).cpu()[idx]
    pred = logits.argmax(1).numpy()
    return {"micro_f1": float(f1_score(y.numpy(), pred, average="micro")),
            "macro_f1": float(f1_score(y.numpy(), pred, average="macro")),
            "loss": float(F.cross_entropy(logits, y))}


#: Train on the receptive field of the nodes the loss reads only when it is at most this share
#: of the graph; above it, slicing costs more than it saves.
MAX_RECEPTIVE_SHARE = 0.8


def target_hops(model: NodeClassifier, hidden_only: bool = False) -> int | None:
    """Hops of the receptive field of nodes whose logits (or, ``hidden_only``, whose hidden
    layer alone) the loss reads; ``None`` when outputs depend on the whole graph."""
    if model.receptive_field is None or not hidden_only or model.hidden_receptive_field is None:
        return model.receptive_field
    return model.hidden_receptive_field


def loss_subgraph(model: NodeClassifier, graph: Graph | Data, targets: list[Tensor], device: torch.device,
                  hidden_only: Sequence[bool] | None = None) -> tuple[Tensor, Graph | TargetRows | None, Tensor,
                                                                       list[Tensor]]:
    """What one training step needs: the model input, graph and labels of the receptive field
    of ``targets`` (the nodes the loss and early stopping read) on ``graph`` (from
    ``Graph.from_data``), and ``targets`` relabelled.

    A model with ``receptive_field = K`` hops gives the same outputs at the targets on their
    K-hop subgraph (``Graph.receptive_subgraph``) as on the whole graph, so every
    epoch skips the rest: on PubMed 60 localized nodes reach 3,200 of 19,717 nodes in 2 hops.
    Groups flagged in ``hidden_only`` (the IID sample, read by the shift term at the hidden
    layer only) need just ``hidden_receptive_field`` hops. A model whose outputs are per-node
    functions of whole-graph features (``NodeClassifier.node_features``: SGC, DGI) gets the
    targets' rows of those features and ``None`` for the graph. A model that propagates with a
    fixed linear operator (``NodeClassifier.target_rows``: APPNP) gets the whole graph's input
    and, in place of the graph, that operator's rows at the nodes whose logits are read.
    """
    hidden_only = hidden_only or [False] * len(targets)
    graph = fitted_graph(graph, device)
    data = graph.data
    hops, n = [target_hops(model, flag) for flag in hidden_only], data.num_nodes
    if None not in hops:
        subset, field = graph.on("cpu").receptive_subgraph([t.cpu() for t in targets], hops)
        if subset.numel() <= MAX_RECEPTIVE_SHARE * n:
            local = torch.full((n,), -1, dtype=torch.long)
            local[subset] = torch.arange(subset.numel())
            x = data.x[subset.to(data.x.device)]
            x = (model_input(x) if model.accepts_graph else x).to(device)
            field = Graph(field.edge_index.to(device), field.num_nodes, x=x, full_degree=field.full_degree,
                          depth=field.depth)
            return x, field, data.y.view(-1)[subset.to(data.y.device)].to(device), [local[t.cpu()].to(device) for t in targets]
    x, edge_index = graph.inputs_for(model)
    features = model.node_features(x, edge_index)
    if features is not None:  # outputs are per-node functions of whole-graph features
        subset, local = torch.cat([t.cpu() for t in targets]).unique(return_inverse=True)
        groups = local.split([t.numel() for t in targets])
        return (features[subset.to(features.device)], None, data.y.view(-1)[subset.to(data.y.device)].to(device),
                [g.to(device) for g in groups])
    targets = [t.to(device) for t in targets]
    read = [t for t, flag in zip(targets, hidden_only) if not flag]  # nodes whose logits the loss reads
    rows = model.target_rows(graph, torch.cat(read).unique()) if read else None
    return x, rows if rows is not None else edge_index, data.y.view(-1).to(device), targets


def robust_loss_subgraph(robust: ShiftRobust, graph: Graph | Data, train_idx: Tensor, device: torch.device,
                         val_idx: Tensor | None = None) -> tuple[Tensor, Graph | TargetRows | None, Tensor,
                                                                 list[Tensor | None]]:
    """``loss_subgraph`` for what ``ShiftRobust.loss`` reads after ``setup``: the logits of the
    training (and validation) nodes and the hidden layer alone of the IID sample. Returns
    ``x, edge_index, y, [train, iid, val]`` relabelled (``None`` for an absent group)."""
    groups = [train_idx, robust.iid_idx_, val_idx]
    present = [i for i, group in enumerate(groups) if group is not None]
    x, edge_index, y, local = loss_subgraph(robust.model, graph, [groups[i] for i in present], device,
                                            [i == 1 for i in present])
    relabelled: list[Tensor | None] = [None, None, None]
    for i, group in zip(present, local):
        relabelled[i] = group
    return x, edge_index, y, relabelled


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
        swa: an ``srgnn.swa.SWAConfig`` to average weights late in training. With
            ``patience`` too, the average of the epochs trained before the stop competes with
            the best early-stopped weights on validation accuracy (the average wins ties); if
            training stopped before averaging began, the early-stopped weights are used.

    ``fit``, ``predict`` and ``evaluate`` take a ``Data`` or a ``srgnn.graph.Graph``
    (``Graph.from_data(data)``): pass one ``Graph`` to many trainers to compute what is derived
    from the graph once (``fitted_graph``).

    Attributes (after ``fit``): ``model_`` (the module evaluated), ``history_`` (losses),
    ``selected_``: which weights ``model_`` holds, ``"last"``, ``"best"`` (early stopping) or
    ``"swa"``; ``graph_``, the ``Graph`` it trained on, which ``evaluate`` reuses for the
    ``Data`` it was built from.
    """

    def __init__(self, model: NodeClassifier | ShiftRobust, *, epochs: int = 200, lr: float | None = None,
                 weight_decay: float | None = None, patience: int | None = None, seed: int = 0,
                 device: str | torch.device | None = None, swa=None):
        epochs, seed = check_int(epochs, "epochs"), check_int(seed, "seed", minimum=0)
        patience = None if patience is None else check_int(patience, "patience")
        self.model = model if isinstance(model, ShiftRobust) else ShiftRobust(model, None, instance_weights=None)
        lr, weight_decay = optimizer_settings(self.model.model, lr, weight_decay)
        self.epochs, self.lr, self.weight_decay, self.patience, self.seed = epochs, lr, weight_decay, patience, seed
        self.device = resolve_device(device)
        self.swa = swa

    def fit(self, data: Data | Graph, train_idx: Tensor, val_idx: Tensor | None = None,
            iid_idx: Tensor | None = None) -> "Trainer":
        """Train on ``train_idx``; returns ``self``."""
        graph = fitted_graph(data, self.device)
        train_idx = check_training_set(graph, train_idx)
        data = graph.data
        check_output_classes(self.model.model, data)
        if self.patience is not None and val_idx is None:
            raise ValueError(f"patience={self.patience} stops early on validation accuracy, but fit() got no "
                             "val_idx; pass val_idx=..., or build the Trainer with patience=None.")
        torch.manual_seed(self.seed)
        robust = self.model
        hidden_size = None
        if robust.regularizer == "dann":
            with torch.no_grad():
                hidden = robust.to(self.device).forward_with_hidden(graph.x, graph)[1]
                hidden_size = hidden.size(1)
        robust.setup(graph, train_idx, self.seed, iid_idx, hidden_size)
        robust.to(self.device).reset_parameters()
        early_stopping = val_idx is not None and self.patience is not None
        x, edge_index, y, (train_idx, iid_local, val_local) = robust_loss_subgraph(
            robust, graph, train_idx, self.device, check_index(val_idx, data.num_nodes, "val_idx") if early_stopping else None)
        # Fused Adam: one kernel for every parameter (5-10% of a PubMed GCN run on the CPU).
        optimizer = torch.optim.Adam(robust.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                     fused=self.device.type in ("cpu", "cuda"))
        swa_state = self.swa.start_training(robust.model, optimizer, self.epochs) if self.swa else None
        best, best_state, waited = -1.0, None, 0
        # Losses stay tensors until the end: reading each epoch's (.item()) would make the CPU
        # wait for the GPU's kernels every epoch.
        losses = []
        for epoch in range(self.epochs):
            robust.train()
            optimizer.zero_grad()
            loss = robust.loss(x, edge_index, y, train_idx, iid_local)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            if swa_state is not None:
                swa_state.step(epoch)
            if early_stopping:
                accuracy = self._accuracy(robust.model, x, edge_index, y, val_local)
                if accuracy > best:
                    best, best_state, waited = accuracy, copy.deepcopy(robust.model.state_dict()), 0
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        self.history_ = torch.stack(losses).tolist()
        self.selected_ = "last"
        if best_state is not None:
            robust.model.load_state_dict(best_state)
            self.selected_ = "best"
        self.model_, self.graph_ = robust.model, graph
        if swa_state is not None and swa_state.n_averaged > 0:
            averaged = swa_state.finish(data, x, edge_index)
            # Early stopping picked its weights on validation nodes: the average must beat them there.
            if best_state is None or self._accuracy(averaged, x, edge_index, y, val_local) >= best:
                self.model_, self.selected_ = averaged, "swa"
        self.model_.eval()
        return self

    @staticmethod
    def _accuracy(model, x, edge_index, y, idx) -> float:
        model.eval()
        with torch.no_grad():
            idx = torch.as_tensor(idx, device=y.device)
            return float((model(x, graph_input(model, edge_index))[idx].argmax(1) == y[idx]).float().mean())

    def logits(self, data: Data | Graph) -> Tensor:
        """Logits of every node, ``[N, C]``, on the CPU."""
        if not hasattr(self, "model_"):
            raise RuntimeError("Call fit() before predict() or evaluate().")
        graph = evaluation_graph(self.graph_, data, self.device)
        with torch.no_grad():
            return self.model_(*graph.inputs_for(self.model_)).cpu()

    def predict(self, data: Data | Graph) -> Tensor:
        """Predicted class of every node, ``[N]``."""
        return self.logits(data).argmax(1)

    def evaluate(self, data: Data | Graph, idx: Tensor) -> dict[str, float]:
        """Micro-F1 (= accuracy), macro-F1 and cross-entropy on ``idx``."""
        return classification_scores(self.logits(data), data, idx)
