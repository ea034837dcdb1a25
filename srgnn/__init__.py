"""srgnn: shift-robust node classification when the labelled nodes are a biased sample.

Modules, in import order: ``data`` -> ``propagation`` (sparse kernels) -> ``kernels`` (layer
kernels) / ``attention`` -> ``ops`` -> ``graph`` -> ``ppr`` -> ``sampling`` / ``shift`` ->
``models`` -> ``robust`` -> ``preparation`` / ``subgraph`` / ``loop`` -> ``trainer``, with ``swa``,
``calibration`` and ``disagreement`` beside the trainer; ``batched`` (many models as one job) is
an opt-in speed path above it (docs/architecture.md).
"""
from . import (attention, calibration, data, disagreement, graph, kernels, loop, models, ops, ppr, propagation, sampling,
               shift, subgraph, swa)
from .graph import Graph
from .robust import ShiftRobust
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Graph", "ShiftRobust", "Trainer", "attention", "calibration", "data", "disagreement", "graph", "kernels",
           "loop", "models", "ops", "ppr", "propagation", "sampling", "shift", "subgraph", "swa"]
