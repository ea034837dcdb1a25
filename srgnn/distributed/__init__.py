"""Past one machine: data-parallel training of one graph under ``torchrun`` (DDP).

``DistributedTrainer`` trains, ``gather`` shares a step's nodes among the ranks and gathers
their rows back with gradients, ``agreement`` checks that the ranks hold the same inputs.
Studies of many runs go to Ray instead (``benchmarks.engine``, ``--backend ray``)."""
from .agreement import RanksDisagreeError, check_same_inputs
from .gather import gather_rows, shard, shard_sizes
from .trainer import DistributedTrainer

__all__ = ["DistributedTrainer", "RanksDisagreeError", "check_same_inputs", "gather_rows", "shard", "shard_sizes"]
