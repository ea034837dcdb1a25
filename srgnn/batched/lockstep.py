"""Lockstep training: variants of one APPNP that share a seed, trained as one job.

``LockstepTrainer`` batches the other way round: variants of one APPNP (plain and shift-robust,
on different training sets) that share a *seed*. They start from the same weights and draw
the same dropout masks, so the masked input is computed once for all of them and meets their
first-layer weights in one wider product.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from .._validation import check_seed
from ..graph import Graph, graph_for
from ..training.loop import make_optimizer, run_epochs
from ..models import APPNP, NodeClassifier
from ..kernels.ops import LockstepOps, running
from ..robustness.preparation import shift_setup
from ..robustness.robust import ShiftRobust
from ..training.subgraph import robust_loss_subgraph
from ..training.trainer import as_shift_robust, check_training_set, optimizer_settings
from .replicas import ManyModels


class LockstepTrainer(ManyModels):
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
    (``srgnn.training.trainer.MAX_RECEPTIVE_SHARE``), the models' masks differ, and they train one
    after another, each as its ``Trainer``.

    Args:
        models: R untrained ``APPNP`` (one hidden layer, the same architecture and settings),
            each plain or in a ``ShiftRobust`` (not DANN).
        options: ``epochs``, ``lr``, ``weight_decay``, ``patience``, ``swa``, ``seed``, ``device``,
            ``validate_every``, ``optimizer``, ``batch_size`` and ``num_neighbors`` are
            ``srgnn.Trainer``'s; with ``patience``, ``swa`` or ``batch_size`` each model trains
            as its ``Trainer``. ``warm_start`` is refused.

    Attributes (after ``fit``): ``models_``, the R trained models, in eval mode; ``batched_`` and
    ``unbatched_reason_`` as ``ReplicaTrainer``'s.
    """

    def __init__(self, models: Sequence[NodeClassifier | ShiftRobust], *, epochs: int = 200, lr: float | None = None,
                 weight_decay: float | None = None, patience: int | None = None, swa=None, seed: int = 0,
                 device: str | torch.device | None = None, validate_every: int = 1, optimizer: str = "adam",
                 batch_size: int | None = None, num_neighbors: list[int] | None = None, warm_start: bool = False):
        super().__init__(epochs=epochs, lr=lr, weight_decay=weight_decay, patience=patience, swa=swa, device=device,
                         validate_every=validate_every, optimizer=optimizer, batch_size=batch_size,
                         num_neighbors=num_neighbors, warm_start=warm_start)
        seed = check_seed(seed)
        self.models = [as_shift_robust(m, "LockstepTrainer") for m in models]
        if not self.models:
            raise ValueError("Pass at least one model.")
        first = self.models[0].model
        for robust in self.models:
            base = robust.model
            same = (type(base) is APPNP and type(first) is APPNP and len(base.lins) == 2
                    and [p.shape for p in base.parameters()] == [p.shape for p in first.parameters()]
                    and (base.dropout, base.alpha, base.k) == (first.dropout, first.alpha, first.k))
            if not same or robust.penalty_parameters():
                raise ValueError("LockstepTrainer trains APPNPs of one architecture and settings with one hidden "
                                 f"layer, and penalties without parameters (not DANN); got {type(base).__name__} "
                                 f"with regularizer {robust.regularizer!r}. Train it with srgnn.Trainer.")
        self.seed = seed

    def fit(self, data: Data | Graph, train_sets: Sequence[Tensor],
            val_sets: Sequence[Tensor | None] | None = None) -> "LockstepTrainer":
        """Train model r on ``train_sets[r]`` (early stopping on ``val_sets[r]`` with ``patience``);
        returns ``self``."""
        if len(train_sets) != len(self.models):
            raise ValueError(f"Pass one training set per model; got {len(train_sets)} sets for "
                             f"{len(self.models)} models.")
        self.graph_ = graph = graph_for(data, self.device)
        train_sets = [check_training_set(graph, train) for train in train_sets]
        val_sets = [None] * len(train_sets) if val_sets is None else list(val_sets)
        seeds = [self.seed] * len(train_sets)
        if self.per_model_options() is not None:
            return self.fit_one_by_one(graph, self.models, train_sets, seeds, val_sets, self.per_model_options())
        inputs, steps = [], []  # per model: its input and (operator, y, train, iid, weights), as its Trainer has them
        for robust, train in zip(self.models, train_sets):
            torch.manual_seed(self.seed)  # Trainer.fit's order: seed, set up, initialise
            setup = shift_setup(robust, graph, train, self.seed, None)
            robust.to(self.device).reset_parameters()
            x, operator, y, (train_local, iid_local) = robust_loss_subgraph(robust, graph, train, setup.iid_idx,
                                                                              self.device)
            inputs.append(x)
            steps.append((operator, y, train_local, iid_local, setup.weights.to(self.device)))
        models = [robust.model for robust in self.models]
        if any(x is not inputs[0] for x in inputs):  # some train on a subgraph: masks of other shapes
            return self.fit_one_by_one(graph, self.models, train_sets, seeds, val_sets,
                                       "some models train on a receptive subgraph, whose dropout masks differ in shape")
        self.batched_, self.unbatched_reason_ = True, None
        # Every model's global stream now stands where its Trainer run draws its first mask.
        lr, weight_decay = optimizer_settings(models[0], self.lr, self.weight_decay)
        params = [p for robust in self.models for p in robust.parameters()]
        optimizer = make_optimizer(params, lr, weight_decay, self.device, self.optimizer)
        # Each model's own forward, with the ops that share the step's masks, dropped input and
        # first-layer product among them (each model's block is a contiguous [N, H], so its
        # hidden layer fits in cache as alone).
        ops = LockstepOps([m.lins[0].weight for m in models])
        for robust in self.models:
            robust.train()

        def step_loss() -> Tensor:
            ops.new_step()
            loss = 0
            with running(ops):
                for robust, (operator, y, train, iid, weights) in zip(self.models, steps):
                    loss = loss + robust.loss(x, operator, y, train, iid, weights)
            return loss

        self.history_ = (run_epochs(step_loss, optimizer, self.epochs) / len(models)).tolist()
        self.models_ = [model.eval() for model in models]
        return self
