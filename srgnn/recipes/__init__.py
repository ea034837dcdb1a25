"""Beyond SR-GNN's penalties: label propagation, Correct and Smooth on any model's predictions,
self-training (ReNode's instance weights are ``ShiftRobust(instance_weights="renode")``), and
``Recommended``, the recipe chosen for localized labels (docs/recipes.md)."""
from .correct_smooth import correct_and_smooth
from .label_propagation import propagate_labels
from .recommended import Recommended
from .self_training import SelfTraining

__all__ = ["Recommended", "SelfTraining", "correct_and_smooth", "propagate_labels"]
