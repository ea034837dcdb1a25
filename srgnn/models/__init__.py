"""The model zoo. Every model returns ``(logits, hidden)`` from ``forward_with_hidden``."""
from .appnp import APPNP
from .base import NodeClassifier
from .dgi import DGI
from .gat import GAT
from .gcn import GCN
from .mlp import MLP
from .pyg import PyGModel
from .sage import GraphSAGE
from .sgc import SGC

__all__ = ["NodeClassifier", "PyGModel", "GCN", "GAT", "GraphSAGE", "APPNP", "SGC", "MLP", "DGI"]
