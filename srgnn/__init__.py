"""srgnn: shift-robust node classification when the labelled nodes are a biased sample.

Modules, in import order: ``data`` -> ``propagation`` -> ``sampling`` / ``shift`` ->
``models`` -> ``robust`` / ``trainer`` -> ``replicas`` / ``swa`` / ``disagreement``.
"""
from . import data, disagreement, models, propagation, replicas, sampling, shift, swa
from .robust import ShiftRobust
from .replicas import LockstepTrainer, ReplicaTrainer
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["ShiftRobust", "Trainer", "ReplicaTrainer", "LockstepTrainer", "data", "disagreement", "models",
           "propagation", "replicas", "sampling", "shift", "swa"]
