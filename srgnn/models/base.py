"""What every srgnn model shares: one pass that returns the logits and the last hidden layer."""
from __future__ import annotations

from torch import Tensor, nn

from .._validation import check_int
from ..graph import Graph
from ..kernels.ops import PLAIN, Ops
from ..kernels.propagation import TargetRows


def check_channels(in_channels: int, out_channels: int, hidden_channels: int | None = None) -> None:
    """Refuse layer widths that are not positive ints (a model of width 0 trains to nothing)."""
    check_int(in_channels, "in_channels")
    check_int(out_channels, "out_channels")
    if hidden_channels is not None:
        check_int(hidden_channels, "hidden_channels")


def check_node_classifier(model, owner: str) -> None:
    """Refuse anything but a ``NodeClassifier`` instance as ``owner``'s model, saying what is
    accepted and how to get there from what was passed."""
    if isinstance(model, NodeClassifier):
        return
    accepted = (f"{owner} takes a model: an srgnn model (GCN, GAT, GraphSAGE, APPNP, SGC, MLP, DGI), your own "
                "NodeClassifier subclass, or any torch.nn.Module with forward(x, edge_index) -> logits, such as "
                "PyG's models (srgnn.models.PyGModel)")
    name = type(model).__name__
    if isinstance(model, type) and issubclass(model, NodeClassifier):
        hint = f"got the class {model.__name__} itself; build one: {model.__name__}(in_channels, out_channels)."
    elif type(model).__module__.startswith("srgnn.") and name == "ShiftRobust":
        hint = ("got a ShiftRobust, which is already shift-robust: pass it to the Trainer as it is, or wrap its "
                ".model once.")
    else:
        hint = f"got {model!r}."
    raise TypeError(f"{accepted}; {hint}")


class NodeClassifier(nn.Module):
    """Base class. Subclasses implement ``forward_with_hidden(x, edge_index) -> (logits, hidden)``
    with logits ``[N, C]`` and ``hidden`` ``[N, H]``, the representation a shift regularizer
    acts on. ``edge_index`` is a ``[2, E]`` tensor or a ``srgnn.graph.Graph``, which keeps what
    the forward derives from the graph (``srgnn.graph.as_graph``). ``in_channels`` is checked
    against ``x`` at every call."""

    in_channels: int
    #: Whether ``forward`` takes a ``srgnn.graph.Graph`` as ``edge_index`` (srgnn's models do); a
    #: model that leaves it ``False`` gets the ``[2, E]`` tensor (``srgnn.graph.model_inputs``).
    accepts_graph = False
    #: Classes C, the logits' width; the Trainer checks the labels against it.
    out_channels: int
    #: Optimizer settings the Trainer uses unless told otherwise (the paper's small-graph ones).
    optimizer_defaults = {"lr": 0.01, "weight_decay": 5e-4}
    #: Hops K such that a node's output depends only on its K-hop neighbourhood (given the full
    #: graph's degrees), so the Trainer may train on the receptive field of the nodes the loss
    #: reads; ``None`` when outputs depend on the whole graph (BatchNorm, precomputed features).
    receptive_field: int | None = None
    #: Whether the forward runs its dropout, linear maps and biases through ``srgnn.kernels.ops``
    #: (``current_ops()``), so that ``ReplicaTrainer`` can run R stacked replicas through it.
    replica_batchable = False
    #: Whether the model is linear in the SR-GNN paper's sense (its propagation has no parameters:
    #: APPNP, SGC, DGI's classifier), for which ``ShiftRobust`` adds KMM instance weights by default
    #: (``instance_weights="auto"``) and the study weighs the penalty with ``lam_linear``.
    linear = False
    #: Hops the last hidden layer depends on. The shift regularizer reads only the hidden layer
    #: at the IID nodes, so their receptive field is this one, not ``receptive_field``;
    #: ``None`` means the same as ``receptive_field``.
    hidden_receptive_field: int | None = None

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        return self.forward_with_hidden(x, edge_index)[0]

    def node_features(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor | None:
        r"""The label-free representation ``[N, F']``, computed once from the whole graph, that
        this model's output at a node is a function of, node by node (SGC's :math:`\hat A^K X`,
        DGI's frozen embeddings); ``None`` for other models. A model that returns one takes it
        back as ``x`` with ``edge_index=None``, so the Trainer can train on the rows the loss
        reads alone."""
        return None

    def target_rows(self, graph: Graph, targets: Tensor) -> TargetRows | None:
        """For a model that propagates per-node outputs with a fixed linear operator (APPNP):
        that operator's rows at ``targets`` on ``graph``, which the model takes in place of
        ``edge_index`` to compute its logits there alone; ``None`` for other models."""
        return None

    def check_input(self, x: Tensor, ops: Ops = PLAIN) -> None:
        width = ops.in_features(x)
        if width != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input features; "
                             f"got x with {width}. Build the model with in_channels={width}.")
        weight = next(self.parameters(), None)
        if weight is not None and weight.device != x.device:
            raise ValueError(f"{type(self).__name__} is on {weight.device} but x is on {x.device}; "
                             f"move one to the other's device first (x.to({str(weight.device)!r})).")

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
