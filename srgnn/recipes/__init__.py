"""Beyond SR-GNN's penalties: label propagation, Correct and Smooth on any model's predictions,
and self-training (ReNode's instance weights are ``ShiftRobust(instance_weights="renode")``)."""
from .correct_smooth import correct_and_smooth
from .label_propagation import propagate_labels
from .self_training import SelfTraining

__all__ = ["SelfTraining", "correct_and_smooth", "propagate_labels"]
