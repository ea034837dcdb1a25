"""srgnn: shift-robust node classification when the labelled nodes are a biased sample.

Modules, in import order: ``data`` -> ``propagation`` / ``attention`` -> ``graph`` -> ``ppr``
-> ``sampling`` / ``shift`` -> ``models`` -> ``robust`` / ``trainer`` -> ``replicas`` / ``swa`` /
``disagreement``.
"""
from . import attention, data, disagreement, graph, models, ppr, propagation, replicas, sampling, shift, swa
from .graph import Graph
from .robust import ShiftRobust
from .replicas import LockstepTrainer, ReplicaTrainer
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Graph", "ShiftRobust", "Trainer", "ReplicaTrainer", "LockstepTrainer", "attention", "data",
           "disagreement", "graph", "models", "ppr", "propagation", "replicas", "sampling", "shift", "swa"]
