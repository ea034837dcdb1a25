"""srgnn: shift-robust node classification when the labelled nodes are a biased sample.

Modules, in import order: ``data`` -> ``propagation`` (sparse kernels) -> ``kernels`` (layer
kernels) / ``attention`` -> ``ops`` -> ``graph`` -> ``ppr`` -> ``sampling`` / ``shift`` ->
``models`` -> ``robust`` -> ``subgraph`` / ``loop`` -> ``trainer`` -> ``replicas`` -> ``lockstep``,
with ``swa``, ``calibration`` and ``disagreement`` beside the trainer (docs/architecture.md).
"""
from . import (attention, calibration, data, disagreement, graph, kernels, lockstep, loop, models, ops, ppr,
               propagation, replicas, sampling, shift, subgraph, swa)
from .graph import Graph
from .lockstep import LockstepTrainer
from .replicas import ReplicaTrainer
from .robust import ShiftRobust
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Graph", "ShiftRobust", "Trainer", "ReplicaTrainer", "LockstepTrainer", "attention", "calibration", "data",
           "disagreement", "graph", "kernels", "lockstep", "loop", "models", "ops", "ppr", "propagation", "replicas",
           "sampling", "shift", "subgraph", "swa"]
