r"""Replica-batched training: one method trained on R training sets as one job.

A bias study trains the same model on 100 training sets. Run one after another, each small
run pays Python and dispatch overhead on every operation; batched, the R replicas become one
model on one graph:

* their parameters are stacked, ``[R, ...]`` (``torch.func.stack_module_state``);
* their receptive fields (``srgnn.graph.Graph.receptive_subgraph``) are stacked as one
  block-diagonal graph, so each layer's propagation is one SpMM for all replicas;
* the sparse input layer is one SpMM: replica r's feature columns are shifted by ``r F``, so
  its rows meet only its own block of the stacked ``[R F, H]`` weight;
* dense layers are one batched matmul over the replicas' row blocks;
* one Adam step updates every replica. Adam and weight decay act elementwise and the loss is
  the sum of the replicas' losses, so each replica gets exactly the update it would get alone.

Each replica follows ``srgnn.Trainer.fit``'s random stream: seeded with its seed, it draws
its IID sample, KMM weights and initial parameters, and then its dropout masks from one
generator per replica that continues where that stream stood (the device's generator, as
the ``Trainer``'s masks are drawn on the device), one mask per layer in the ``Trainer``'s order
and size. So replica r's run is ``Trainer(seed=seeds[r])``'s on the same set, to float
tolerance, whatever else shares its batch.

Every replica runs the model's own forward: its parameters are stacked and its layers run
through the ``srgnn.ops.ReplicaOps`` of the stacked graph. Batched: models that declare
``replica_batchable`` (GCN without BatchNorm, GraphSAGE, MLP), plain or shift-robust (CMD, MMD,
KMM weights, your own penalty); other models train replica by replica, each as its ``Trainer``.

``LockstepTrainer`` batches the other way round: variants of one APPNP (plain and shift-robust,
on different training sets) that share a *seed*. They start from the same weights and draw
the same dropout masks, so the masked input is computed once for all of them and meets their
first-layer weights in one wider product.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from .graph import Graph, model_input
from .models import APPNP, NodeClassifier
from .ops import LockstepOps, Ops, ReplicaOps
from .propagation import TargetRows
from ._validation import check_int
from .robust import ShiftRobust
from .trainer import (Trainer, check_output_classes, check_training_set, classification_scores, evaluation_graph,
                      fitted_graph, optimizer_settings, resolve_device, robust_loss_subgraph, target_hops)


class _WithHidden(torch.nn.Module):
    """``model.forward_with_hidden`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, model: NodeClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, graph: Graph) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_hidden(x, graph)


def supports(model: NodeClassifier | ShiftRobust) -> bool:
    """Whether ``ReplicaTrainer`` can train this model (else use ``srgnn.Trainer``)."""
    robust = model if isinstance(model, ShiftRobust) else None
    base = robust.model if robust is not None else model
    return (base.replica_batchable and base.accepts_graph and base.receptive_field is not None
            and (robust is None or robust.regularizer != "dann"))


class _ManyModels:
    """``logits`` and ``evaluate`` of a trainer whose ``fit`` leaves R models in ``models_``."""

    device: torch.device
    models_: list[NodeClassifier]
    graph_: Graph

    def logits(self, data: Data | Graph) -> list[Tensor]:
        """Each model's logits of every node, ``[N, C]`` each, on the CPU."""
        if not hasattr(self, "models_"):
            raise RuntimeError("Call fit() before logits() or evaluate().")
        graph = evaluation_graph(self.graph_, data, self.device)
        with torch.no_grad():
            return [model(*graph.inputs_for(model)).cpu() for model in self.models_]

    def evaluate(self, data: Data | Graph, idx: Sequence[Tensor]) -> list[dict[str, float]]:
        """Micro-F1, macro-F1 and cross-entropy of model r on ``idx[r]``."""
        return [classification_scores(logits, data, nodes) for logits, nodes in zip(self.logits(data), idx)]


class ReplicaTrainer(_ManyModels):
    """Train one method on R training sets at once; fit / evaluate like ``srgnn.Trainer``.

    Args:
        build: returns a fresh, untrained model (a ``NodeClassifier`` or a ``ShiftRobust``
            around one); called once per replica under that replica's seed.
        epochs, lr, weight_decay, device: as ``srgnn.Trainer``.

    A model ``supports`` does not cover (another class, BatchNorm, DANN) trains replica by
    replica, each as ``Trainer(build(), seed=seeds[r])``, with the same results as batched.

    Attributes (after ``fit``): ``models_``, the R trained models, in eval mode; ``batched_``,
    whether they trained as one job, and ``unbatched_reason_``, why not (``None`` if they did).
    """

    def __init__(self, build: Callable[[], NodeClassifier | ShiftRobust], *, epochs: int = 200,
                 lr: float | None = None, weight_decay: float | None = None,
                 device: str | torch.device | None = None):
        epochs = check_int(epochs, "epochs")
        self.build, self.epochs, self.lr, self.weight_decay = build, epochs, lr, weight_decay
        self.device = resolve_device(device)

    def _replicas(self, graph: Graph, train_sets: list[Tensor],
                  seeds: list[int]) -> tuple[list[ShiftRobust], list[torch.Generator]]:
        """The R set-up, initialised replicas, and for each a generator holding the device's
        global stream after its set-up, where ``Trainer.fit`` starts drawing dropout masks."""
        replicas, generators = [], []
        for train, seed in zip(train_sets, seeds):
            model = self.build()
            torch.manual_seed(seed)  # srgnn.Trainer.fit's order: seed, IID sample and KMM, initialise
            robust = model if isinstance(model, ShiftRobust) else ShiftRobust(model, None, instance_weights=None)
            replicas.append(robust.setup(graph, train, seed).to(self.device))
            robust.reset_parameters()
            generator = torch.Generator(self.device)
            generator.set_state(torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                                else torch.get_rng_state())
            generators.append(generator)
        return replicas, generators

    def fit(self, data: Data | Graph, train_sets: list[Tensor], seeds: list[int]) -> "ReplicaTrainer":
        """Train replica r on ``train_sets[r]`` with seed ``seeds[r]``; returns ``self``."""
        if not train_sets:
            raise ValueError("train_sets is empty: pass at least one training set (and one seed per set).")
        if len(train_sets) != len(seeds):
            raise ValueError(f"Pass one seed per training set; got {len(train_sets)} sets and {len(seeds)} seeds.")
        self.graph_ = graph = fitted_graph(data, self.device)
        data = graph.data
        train_sets = [check_training_set(graph, train) for train in train_sets]
        replicas, generators = self._replicas(graph, train_sets, seeds)
        self.batched_ = all(supports(robust) for robust in replicas)
        self.unbatched_reason_ = None if self.batched_ else (
            f"{type(replicas[0].model).__name__} does not declare replica_batchable (a forward that runs its "
            "layers through srgnn.ops and takes a Graph), or it is DANN; it trained one replica at a time")
        if not self.batched_:  # each replica as its Trainer, which seeds, sets up and initialises it again
            trainers = [Trainer(robust, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, seed=seed,
                                device=self.device).fit(graph, train)
                        for robust, train, seed in zip(replicas, train_sets, seeds)]
            self.history_ = torch.tensor([t.history_ for t in trainers]).mean(0).tolist()
            self.models_ = [t.model_ for t in trainers]
            return self
        check_output_classes(replicas[0].model, data)
        model = replicas[0].model
        lr, weight_decay = optimizer_settings(model, self.lr, self.weight_decay)

        # Each replica's receptive field, relabelled into one block-diagonal graph.
        subsets, edges, degrees, depths, train_rows, iid_rows = [], [], [], [], [], []
        offset = 0
        for train, robust in zip(train_sets, replicas):
            iid = robust.iid_idx_ if robust.iid_idx_ is not None else train[:0]
            subset, field = graph.on("cpu").receptive_subgraph(
                [train.cpu(), iid], [target_hops(model), target_hops(model, hidden_only=True)])
            local = torch.full((data.num_nodes,), -1, dtype=torch.long)
            local[subset] = torch.arange(subset.numel()) + offset
            subsets.append(subset)
            edges.append(field.edge_index + offset)
            degrees.append(field.full_degree)
            depths.append(field.depth)
            train_rows.append(local[train.cpu()])
            iid_rows.append(local[iid])
            offset += subset.numel()
        blocks = ReplicaOps([s.numel() for s in subsets], generators, self.device)
        rows = torch.cat(subsets)
        x = model_input(data.x[rows.to(data.x.device)]).to(self.device)
        x = blocks.widen(x) if x.is_sparse_csr else x
        fields = Graph(torch.cat(edges, 1).to(self.device), rows.numel(), x=x, full_degree=torch.cat(degrees),
                       depth=torch.cat(depths), ops=blocks)
        y = data.y.view(-1)[rows.to(data.y.device)].to(self.device)
        train_index = torch.cat(train_rows).to(self.device)
        # Each replica's loss is its mean over its own training nodes.
        weights = torch.cat([r.weights_ / r.weights_.numel() for r in replicas]).to(self.device)

        params, _ = torch.func.stack_module_state([r.model for r in replicas])
        optimizer = torch.optim.Adam(params.values(), lr=lr, weight_decay=weight_decay,
                                     fused=self.device.type in ("cpu", "cuda"))
        # The model's own forward, with the replicas' stacked parameters and the ops of their blocks.
        stacked = _WithHidden(model.train())
        named = {f"model.{name}": value for name, value in params.items()}
        losses = []  # tensors until the end, as in srgnn.Trainer (no GPU sync per epoch)
        for _ in range(self.epochs):
            optimizer.zero_grad()
            logits, hidden = torch.func.functional_call(stacked, named, (x, fields))
            loss = (weights * F.cross_entropy(logits[train_index], y[train_index], reduction="none")).sum()
            loss = loss + self._shift_term(replicas, hidden, train_rows, iid_rows)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        self.history_ = (torch.stack(losses) / len(replicas)).tolist()
        for r, robust in enumerate(replicas):
            robust.model.load_state_dict({name: value[r].detach() for name, value in params.items()})
        self.models_ = [robust.model.eval() for robust in replicas]
        return self

    def _shift_term(self, replicas: list[ShiftRobust], hidden: Tensor, train_rows: list[Tensor],
                    iid_rows: list[Tensor]) -> Tensor | float:
        """Sum over replicas of lam_r d_r(h[train_r], h[iid_r]). Replicas that share one built-in
        penalty and one lam take it as one factor of the penalties' sum (batched when the sizes
        agree); others, user penalties among them, one replica at a time."""
        first = replicas[0]
        if all(r.regularizer == first.regularizer and r.lam == first.lam for r in replicas):
            if first.regularizer is None or first.lam == 0:
                return 0.0
            if not callable(first.regularizer):
                return first.lam * self._penalty(first, hidden, train_rows, iid_rows)
        return sum(r.lam * r.penalty(hidden[t.to(hidden.device)], hidden[i.to(hidden.device)])
                   for r, t, i in zip(replicas, train_rows, iid_rows) if r.regularizer is not None and r.lam > 0)

    def _penalty(self, robust: ShiftRobust, hidden: Tensor, train_rows: list[Tensor], iid_rows: list[Tensor]) -> Tensor:
        """Sum over replicas of d(h[train_r], h[iid_r]) for a built-in penalty; one batched call
        when the sizes agree."""
        if len({t.numel() for t in train_rows}) == 1 and len({i.numel() for i in iid_rows}) == 1:
            count = len(train_rows)
            train = hidden[torch.cat(train_rows).to(hidden.device)].view(count, train_rows[0].numel(), -1)
            iid = hidden[torch.cat(iid_rows).to(hidden.device)].view(count, iid_rows[0].numel(), -1)
            return robust.penalty(train, iid).sum()
        return sum(robust.penalty(hidden[t.to(hidden.device)], hidden[i.to(hidden.device)])
                   for t, i in zip(train_rows, iid_rows))


def _with_ops(operator: Graph | TargetRows, ops: Ops) -> Graph | TargetRows:
    """``operator`` (a model's graph, or APPNP's rows at its read nodes) with the layer operations ``ops``."""
    if isinstance(operator, TargetRows):
        return TargetRows(operator.rows, operator.targets, ops)
    return operator.with_ops(ops)


class LockstepTrainer(_ManyModels):
    """Train variants of one APPNP that share a seed, in lockstep; fit / evaluate like
    ``srgnn.Trainer``.

    ``Trainer(model, seed=s)`` seeds, sets up the model (IID sample, KMM weights: private
    generators), initialises it and then draws one dropout mask per layer each epoch. APPNP's
    10 hops reach nearly every node, so it trains on the whole graph and its masks' shapes are
    the graph's alone. So APPNPs of one architecture trained with one seed, whatever their
    training sets, instance weights and regularizers, start from the same weights and draw
    the same masks every epoch: a study's APPNP on a biased set, APPNP on an IID set and
    SR-APPNP on the biased set. This trainer drops the input once (the mask and the kept
    entries, about a quarter of an APPNP epoch on PubMed), multiplies it by the models' first-layer
    weights side by side (``[F, R H]``) and draws the hidden layer's mask once; each model then
    goes on alone. Model r ends as ``Trainer(models[r], seed=seed).fit(data, train_sets[r])``
    does, to float tolerance (on the CPU the logits were equal bit for bit). Where a model's
    receptive field leaves out so much of the graph that its ``Trainer`` trains on a subgraph
    (``srgnn.trainer.MAX_RECEPTIVE_SHARE``), the models' masks differ, and they train one
    after another, each as its ``Trainer``.

    Args:
        models: R untrained ``APPNP`` (one hidden layer, the same architecture and settings),
            each plain or in a ``ShiftRobust`` (not DANN).
        epochs, lr, weight_decay, seed, device: as ``srgnn.Trainer``.

    Attributes (after ``fit``): ``models_``, the R trained models, in eval mode.
    """

    def __init__(self, models: Sequence[NodeClassifier | ShiftRobust], *, epochs: int = 200, lr: float | None = None,
                 weight_decay: float | None = None, seed: int = 0, device: str | torch.device | None = None):
        epochs, seed = check_int(epochs, "epochs"), check_int(seed, "seed", minimum=0)
        self.models = [m if isinstance(m, ShiftRobust) else ShiftRobust(m, None, instance_weights=None) for m in models]
        if not self.models:
            raise ValueError("Pass at least one model.")
        first = self.models[0].model
        for robust in self.models:
            base = robust.model
            same = (type(base) is APPNP and type(first) is APPNP and len(base.lins) == 2
                    and [p.shape for p in base.parameters()] == [p.shape for p in first.parameters()]
                    and (base.dropout, base.alpha, base.k) == (first.dropout, first.alpha, first.k))
            if not same or robust.regularizer == "dann":
                raise ValueError("LockstepTrainer trains APPNPs of one architecture and settings with one hidden "
                                 f"layer (not DANN); got {type(base).__name__}. Train it with srgnn.Trainer.")
        self.epochs, self.lr, self.weight_decay, self.seed = epochs, lr, weight_decay, seed
        self.device = resolve_device(device)

    def fit(self, data: Data | Graph, train_sets: Sequence[Tensor]) -> "LockstepTrainer":
        """Train model r on ``train_sets[r]``; returns ``self``."""
        if len(train_sets) != len(self.models):
            raise ValueError(f"Pass one training set per model; got {len(train_sets)} sets for "
                             f"{len(self.models)} models.")
        self.graph_ = graph = fitted_graph(data, self.device)
        train_sets = [check_training_set(graph, train) for train in train_sets]
        inputs, steps = [], []  # per model: its input and (operator, y, train, iid), as its Trainer has them
        for robust, train in zip(self.models, train_sets):
            torch.manual_seed(self.seed)  # Trainer.fit's order: seed, set up, initialise
            robust.setup(graph, train, self.seed)
            robust.to(self.device).reset_parameters()
            x, operator, y, (train_local, iid_local, _) = robust_loss_subgraph(robust, graph, train, self.device)
            inputs.append(x)
            steps.append((operator, y, train_local, iid_local))
        models = [robust.model for robust in self.models]
        if any(x is not inputs[0] for x in inputs):  # some train on a subgraph: masks of other shapes
            trainers = [Trainer(robust, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                seed=self.seed, device=self.device).fit(graph, train)
                        for robust, train in zip(self.models, train_sets)]
            self.history_ = torch.tensor([t.history_ for t in trainers]).mean(0).tolist()
            self.models_ = [t.model_ for t in trainers]
            return self
        # Every model's global stream now stands where its Trainer run draws its first mask.
        lr, weight_decay = optimizer_settings(models[0], self.lr, self.weight_decay)
        params = [p for robust in self.models for p in robust.parameters()]
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay,
                                     fused=self.device.type in ("cpu", "cuda"))
        # Each model's own forward, with the ops that share the step's masks, dropped input and
        # first-layer product among them (each model's block is a contiguous [N, H], so its
        # hidden layer fits in cache as alone).
        ops = LockstepOps([m.lins[0].weight for m in models])
        steps = [(_with_ops(operator, ops), y, train, iid) for operator, y, train, iid in steps]
        losses, count = [], len(models)
        for robust in self.models:
            robust.train()
        for _ in range(self.epochs):
            optimizer.zero_grad()
            ops.new_step()
            loss = 0
            for robust, (operator, y, train, iid) in zip(self.models, steps):
                loss = loss + robust.loss(x, operator, y, train, iid)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        self.history_ = (torch.stack(losses) / count).tolist()
        self.models_ = [model.eval() for model in models]
        return self
