"""Beyond SR-GNN's penalties: label propagation, Correct and Smooth on any model's predictions,
self-training, predictions shifted to a class mix (ReNode's instance weights are
``ShiftRobust(instance_weights="renode")``), and ``Recommended``, the recipe chosen for
localized labels (docs/recipes.md)."""
from .class_mix import class_mix, shift_to_class_mix
from .correct_smooth import correct_and_smooth
from .label_propagation import propagate_labels
from .recommended import Recommended
from .self_training import SelfTraining

__all__ = ["Recommended", "SelfTraining", "class_mix", "correct_and_smooth", "propagate_labels", "shift_to_class_mix"]
