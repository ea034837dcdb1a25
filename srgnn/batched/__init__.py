"""Training many models at once, an opt-in speed path beside ``srgnn.Trainer`` (not in
``srgnn.__all__``): ``ReplicaTrainer`` trains one method on R training sets as one batched job,
``LockstepTrainer`` APPNP variants that share a seed. Each model equals its own ``Trainer``
run; what cannot be batched trains model by model, each as its ``Trainer``, and says why
(``unbatched_reason_``). They take ``Trainer``'s options, and refuse those that do not apply."""
from .lockstep import LockstepTrainer
from .replicas import ManyModels, ReplicaTrainer, supports

__all__ = ["LockstepTrainer", "ManyModels", "ReplicaTrainer", "supports"]
