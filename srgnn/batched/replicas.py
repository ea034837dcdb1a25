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
through ``srgnn.kernels.ops.ReplicaOps``, run with ``running``. Batched: models that declare
``replica_batchable`` (GCN without BatchNorm, GraphSAGE, MLP), plain or shift-robust (CMD, MMD,
KMM weights, your own penalty); other models train replica by replica, each as its ``Trainer``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from ..graph import Graph, Subgraph, compact_features, graph_for, model_inputs
from ..models import NodeClassifier
from ..kernels.ops import ReplicaOps, running
from .._validation import check_choice, check_int, check_seed
from ..robustness.preparation import ShiftSetup, shift_setup
from ..robustness.robust import ShiftRobust, steer
from ..training.loop import OPTIMIZERS, make_optimizer, run_epochs
from ..training.subgraph import target_hops
from ..training.trainer import (Trainer, as_shift_robust, check_output_classes, check_swa, check_training_set,
                      classification_scores, optimizer_settings, resolve_device)


class _WithHidden(torch.nn.Module):
    """``model.forward_with_hidden`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, model: NodeClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, graph: Subgraph) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_hidden(x, graph)


def supports(model: NodeClassifier | ShiftRobust) -> bool:
    """Whether ``ReplicaTrainer`` can train this model (else use ``srgnn.Trainer``)."""
    robust = model if isinstance(model, ShiftRobust) else None
    base = robust.model if robust is not None else model
    return (base.replica_batchable and base.accepts_graph and base.receptive_field is not None
            and (robust is None or not robust.penalty_parameters()))


class ManyModels:
    """What ``ReplicaTrainer`` and ``LockstepTrainer`` share: the ``Trainer`` options, ``logits``
    and ``evaluate`` of R models, and training them one by one, each as its ``Trainer``, where
    they cannot train as one job (``batched_``, ``unbatched_reason_``)."""

    def __init__(self, *, epochs: int, lr: float | None, weight_decay: float | None, patience: int | None,
                 swa, device: str | torch.device | None, validate_every: int, optimizer: str,
                 batch_size: int | None, num_neighbors: list[int] | None, warm_start: bool):
        self.epochs = check_int(epochs, "epochs")
        self.patience = None if patience is None else check_int(patience, "patience")
        self.lr, self.weight_decay, self.swa = lr, weight_decay, check_swa(swa)
        self.device = resolve_device(device)
        self.validate_every = check_int(validate_every, "validate_every")
        check_choice(optimizer, OPTIMIZERS, "optimizer")
        if batch_size is None and num_neighbors is not None:
            raise ValueError("num_neighbors sets the fan-outs of mini-batch training; pass batch_size too, or "
                             "drop num_neighbors to train full-batch.")
        self.optimizer, self.num_neighbors = optimizer, num_neighbors  # the fan-outs are checked per model
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        if warm_start:
            raise ValueError("warm_start=True continues a fitted model; ReplicaTrainer and LockstepTrainer train "
                             "every model afresh from its seed. Continue one with srgnn.Trainer(model, warm_start=True).")

    def trainer_options(self) -> dict:
        """The ``srgnn.Trainer`` options each model trains with, batched or not (all but the seed)."""
        return {"epochs": self.epochs, "lr": self.lr, "weight_decay": self.weight_decay, "patience": self.patience,
                "swa": self.swa, "device": self.device, "validate_every": self.validate_every,
                "optimizer": self.optimizer, "batch_size": self.batch_size, "num_neighbors": self.num_neighbors}

    def per_model_options(self) -> str | None:
        """Why the options rule out one job: early stopping and SWA act on each model at its own
        epochs, and mini-batches are drawn for each model's training set."""
        if self.patience is None and self.swa is None and self.batch_size is None:
            return None
        return ("patience, swa and batch_size act on each model at its own epochs and batches, so each trained as "
                "its Trainer")

    def fit_one_by_one(self, graph: Graph, models: Sequence[NodeClassifier | ShiftRobust], train_sets: Sequence[Tensor],
                       seeds: Sequence[int], val_sets: Sequence[Tensor | None], reason: str) -> "ManyModels":
        """Model r trained as ``Trainer(models[r], seed=seeds[r], <these options>)`` on ``train_sets[r]``."""
        trainers = [Trainer(model, seed=seed, **self.trainer_options()).fit(graph, train, val)
                    for model, train, seed, val in zip(models, train_sets, seeds, val_sets)]
        shortest = min(len(t.history_) for t in trainers)  # early stopping ends runs at their own epochs
        self.history_ = torch.tensor([t.history_[:shortest] for t in trainers]).mean(0).tolist()
        self.models_ = [t.model_ for t in trainers]
        self.batched_, self.unbatched_reason_ = False, reason
        return self

    def logits(self, data: Data | Graph) -> list[Tensor]:
        """Each model's logits of every node, ``[N, C]`` each, on the CPU."""
        if not hasattr(self, "models_"):
            raise RuntimeError("Call fit() before logits() or evaluate().")
        graph = graph_for(data, self.device, self.graph_)
        with torch.no_grad():
            return [model(*model_inputs(model, graph.x, graph)).cpu() for model in self.models_]

    def predict(self, data: Data | Graph) -> list[Tensor]:
        """Each model's predicted class of every node, ``[N]`` each."""
        return [logits.argmax(1) for logits in self.logits(data)]

    def evaluate(self, data: Data | Graph, idx: Sequence[Tensor]) -> list[dict[str, float]]:
        """Micro-F1, macro-F1 and cross-entropy of model r on ``idx[r]``."""
        return [classification_scores(logits, data, nodes) for logits, nodes in zip(self.logits(data), idx)]


class ReplicaTrainer(ManyModels):
    """Train one method on R training sets at once; fit / predict / evaluate like ``srgnn.Trainer``.

    Args:
        build: returns a fresh, untrained model (a ``NodeClassifier`` or a ``ShiftRobust``
            around one, each with its own ``lam``); called once per replica under that replica's seed.
        options: ``epochs``, ``lr``, ``weight_decay``, ``patience``, ``swa``, ``device``,
            ``validate_every``, ``optimizer``, ``batch_size`` and ``num_neighbors`` are
            ``srgnn.Trainer``'s. ``warm_start`` is refused (every replica trains afresh).

    A model ``supports`` does not cover (another class, BatchNorm, a penalty with parameters),
    or early stopping, SWA or mini-batches, trains replica by replica, each as
    ``Trainer(build(), seed=seeds[r])`` with these options, with the same results as batched.

    Attributes (after ``fit``): ``models_``, the R trained models, in eval mode; ``batched_``,
    whether they trained as one job, and ``unbatched_reason_``, why not (``None`` if they did).
    """

    def __init__(self, build: Callable[[], NodeClassifier | ShiftRobust], *, epochs: int = 200,
                 lr: float | None = None, weight_decay: float | None = None, patience: int | None = None,
                 swa=None, device: str | torch.device | None = None, validate_every: int = 1, optimizer: str = "adam",
                 batch_size: int | None = None, num_neighbors: list[int] | None = None, warm_start: bool = False):
        super().__init__(epochs=epochs, lr=lr, weight_decay=weight_decay, patience=patience, swa=swa, device=device,
                         validate_every=validate_every, optimizer=optimizer, batch_size=batch_size,
                         num_neighbors=num_neighbors, warm_start=warm_start)
        if isinstance(build, torch.nn.Module) or not callable(build):
            raise TypeError(f"ReplicaTrainer takes a factory that returns a fresh model for each training set, e.g. "
                            f"lambda: GCN(in_channels, out_channels); got {type(build).__name__} {build!r:.80}.")
        self.build = build

    def _replicas(self, graph: Graph, train_sets: list[Tensor],
                  seeds: list[int]) -> tuple[list[ShiftRobust], list[ShiftSetup], list[torch.Generator]]:
        """The R initialised replicas, their training sets' preparations, and for each a
        generator holding the device's global stream after its preparation, where
        ``Trainer.fit`` starts drawing dropout masks."""
        replicas, setups, generators = [], [], []
        for train, seed in zip(train_sets, seeds):
            robust = as_shift_robust(self.build(), "ReplicaTrainer's build()").to(self.device)
            torch.manual_seed(seed)  # srgnn.Trainer.fit's order: seed, IID sample and KMM, initialise
            setups.append(shift_setup(robust, graph, train, seed, None))
            robust.reset_parameters()
            replicas.append(robust)
            generator = torch.Generator(self.device)
            generator.set_state(torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                                else torch.get_rng_state())
            generators.append(generator)
        return replicas, setups, generators

    def fit(self, data: Data | Graph, train_sets: list[Tensor], seeds: list[int],
            val_sets: Sequence[Tensor | None] | None = None) -> "ReplicaTrainer":
        """Train replica r on ``train_sets[r]`` with seed ``seeds[r]`` (early stopping on
        ``val_sets[r]`` with ``patience``); returns ``self``."""
        if not train_sets:
            raise ValueError("train_sets is empty: pass at least one training set (and one seed per set).")
        if len(train_sets) != len(seeds):
            raise ValueError(f"Pass one seed per training set; got {len(train_sets)} sets and {len(seeds)} seeds.")
        seeds = [check_seed(seed, f"seeds[{r}]") for r, seed in enumerate(seeds)]
        self.graph_ = graph = graph_for(data, self.device)
        data = graph.data
        train_sets = [check_training_set(graph, train) for train in train_sets]
        val_sets = [None] * len(train_sets) if val_sets is None else list(val_sets)
        replicas, setups, generators = self._replicas(graph, train_sets, seeds)
        reason = self.per_model_options()
        if not all(supports(robust) for robust in replicas):
            reason = (f"{type(replicas[0].model).__name__} does not declare replica_batchable (a forward that runs "
                      "its layers through srgnn.kernels.ops and takes a Graph), or its penalty has parameters (DANN); it "
                      "trained one replica at a time")
        if reason is not None:  # each replica as its Trainer, which seeds, sets up and initialises it again
            return self.fit_one_by_one(graph, replicas, train_sets, seeds, val_sets, reason)
        self.batched_, self.unbatched_reason_ = True, None
        check_output_classes(replicas[0].model, data)
        model = replicas[0].model
        lr, weight_decay = optimizer_settings(model, self.lr, self.weight_decay)

        # Each replica's receptive field, relabelled into one block-diagonal graph.
        subsets, edges, degrees, depths, train_rows, iid_rows = [], [], [], [], [], []
        offset = 0
        for train, setup in zip(train_sets, setups):
            iid = setup.iid_idx if setup.iid_idx is not None else train[:0]
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
        x = compact_features(data.x[rows.to(data.x.device)]).to(self.device)
        x = blocks.widen(x) if x.is_sparse_csr else x
        fields = Subgraph(torch.cat(edges, 1).to(self.device), rows.numel(), x=x, full_degree=torch.cat(degrees),
                          depth=torch.cat(depths))
        y = data.y.view(-1)[rows.to(data.y.device)].to(self.device)
        train_index = torch.cat(train_rows).to(self.device)
        # Each replica's loss is its mean over its own training nodes.
        weights = torch.cat([setup.weights / setup.weights.numel() for setup in setups]).to(self.device)

        params, _ = torch.func.stack_module_state([r.model for r in replicas])
        optimizer = make_optimizer(params.values(), lr, weight_decay, self.device, self.optimizer)
        # The model's own forward, with the replicas' stacked parameters and the ops of their blocks.
        stacked = _WithHidden(model.train())
        named = {f"model.{name}": value for name, value in params.items()}

        if len({(r.max_pull, r.deconflict) for r in replicas}) > 1:
            raise ValueError("The replicas' ShiftRobust models must share one max_pull and deconflict; got "
                             f"{sorted({(str(r.max_pull), r.deconflict) for r in replicas})}.")

        # Each training row's replica, for each replica's own cross-entropy when the penalty is steered.
        replica_of_row = torch.repeat_interleave(torch.arange(len(replicas)), torch.tensor(
            [rows.numel() for rows in train_rows])).to(self.device)
        steered = replicas[0].max_pull is not None or replicas[0].deconflict

        def step_loss() -> Tensor:
            with running(blocks):
                logits, hidden = torch.func.functional_call(stacked, named, (x, fields))
            per_row = weights * F.cross_entropy(logits[train_index], y[train_index], reduction="none")
            shift = self._shift_terms(replicas, logits, hidden, y, train_rows, iid_rows)
            if shift is None:
                return per_row.sum()
            if steered and shift.requires_grad:
                ce = per_row.new_zeros(len(replicas)).index_add(0, replica_of_row, per_row)
                return ce.sum() + steer(ce, shift, list(params.values()), replicas[0].max_pull,
                                        replicas[0].deconflict).sum()
            return per_row.sum() + shift.sum()

        self.history_ = (run_epochs(step_loss, optimizer, self.epochs) / len(replicas)).tolist()
        for r, robust in enumerate(replicas):
            robust.model.load_state_dict({name: value[r].detach() for name, value in params.items()})
        self.models_ = [robust.model.eval() for robust in replicas]
        return self

    def _shift_terms(self, replicas: list[ShiftRobust], logits: Tensor, hidden: Tensor, y: Tensor,
                     train_rows: list[Tensor], iid_rows: list[Tensor]) -> Tensor | None:
        """lam_r d_r(h[train_r], h[iid_r]) of each replica ``[R]`` (0 where it has none), or
        ``None`` when no replica has a penalty. Replicas that share one built-in penalty and one
        lam take it in one batched call when the sizes agree; others, user penalties among
        them, one replica at a time."""
        first = replicas[0]
        if not any(r.has_penalty for r in replicas):
            return None

        def term(robust: ShiftRobust, train: Tensor, iid: Tensor) -> Tensor:
            # labels and logits enter only the terms that read them: gathered only for those
            extra = (y[train], logits[iid]) if robust.reads_iid_logits else ()
            return robust.shift_term(hidden[train], hidden[iid], *extra)

        same = all((r.regularizer, r.lam, r.label_shift, r.conditional)
                   == (first.regularizer, first.lam, first.label_shift, first.conditional) for r in replicas)
        if (same and not callable(first.regularizer) and len({t.numel() for t in train_rows}) == 1
                and len({i.numel() for i in iid_rows}) == 1):
            count = len(train_rows)
            return term(first, torch.cat(train_rows).to(hidden.device).view(count, -1),
                        torch.cat(iid_rows).to(hidden.device).view(count, -1))
        return torch.stack([term(r, t.to(hidden.device), i.to(hidden.device)) if r.has_penalty else hidden.new_zeros(())
                            for r, t, i in zip(replicas, train_rows, iid_rows)])
