"""srgnn: shift-robust node classification when the labelled nodes are a biased sample.

Packages, from the floor up (docs/architecture.md): ``kernels`` (sparse propagation, layer
kernels, ops) -> ``graph`` -> ``ppr`` -> ``sampling`` / ``models`` -> ``robustness`` (the distances,
the shift-robust loss, a training set's preparation) -> ``training`` (``Trainer``, its loop,
mini-batches, SWA), with ``estimation`` (calibration, error estimates, the bias report, where to
label) and ``recipes`` (label propagation, Correct and Smooth, self-training) beside it; ``batched`` (many models as one job) is an opt-in speed path above it,
and ``distributed`` (one model over several processes, DDP under torchrun) a way past one machine.
``data`` loads graphs; ``synthetic`` makes them.
"""
from . import data, distributed, estimation, graph, kernels, models, ppr, recipes, robustness, sampling, training
from .graph import Graph
from .recipes.recommended import Recommended
from .robustness.robust import ShiftRobust
from .training.trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Graph", "Recommended", "ShiftRobust", "Trainer", "data", "distributed", "estimation", "graph", "kernels", "models", "ppr", "recipes",
           "robustness", "sampling", "training"]
