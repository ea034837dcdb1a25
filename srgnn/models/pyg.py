r"""A model of your own or PyG's, as it is: any ``torch.nn.Module`` whose ``forward(x, edge_index)``
returns the logits ``[N, C]``, with the hidden layer the shift penalty reads taken as the input
of one of its submodules.

For PyG's ``BasicGNN`` models (``torch_geometric.nn.models.GCN``, ``GraphSAGE``, ``GAT``, ...)
that submodule is found: the last layer, ``convs.<L-1>``, whose input is the last hidden layer
after its activation and dropout, ``[N, hidden_channels]``. For any other module, name it.
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import NodeClassifier, check_node_classifier


def default_hidden_site(module: nn.Module) -> str | None:
    """The submodule whose input is ``module``'s last hidden layer, where it can be known: the last
    of a PyG ``BasicGNN``'s ``convs`` when no jumping knowledge mixes the layers; else ``None``."""
    convs = getattr(module, "convs", None)
    if isinstance(convs, nn.ModuleList) and len(convs) > 1 and getattr(module, "jk_mode", None) is None:
        return f"convs.{len(convs) - 1}"
    return None


def _channels(module: nn.Module, name: str, given: int | None) -> int:
    """``given``, else ``module``'s own attribute ``name``: a positive int, or a clear error."""
    value = given if given is not None else getattr(module, name, None)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{type(module).__name__} has no positive int {name}; pass PyGModel(..., {name}=...).")
    return value


class PyGModel(NodeClassifier):
    """``module`` as an srgnn model; its parameters are ``module``'s own, trained in place.

    Args:
        module: ``forward(x, edge_index) -> logits [N, C]``.
        hidden_site: the name of the submodule (``module.get_submodule(name)``) whose first input
            is the hidden layer ``[N, H]`` the penalty reads; default: ``default_hidden_site``.
        in_channels, out_channels: the feature and class counts, read from ``module``'s own
            attributes of those names unless given.
    """

    def __init__(self, module: nn.Module, hidden_site: str | None = None, in_channels: int | None = None,
                 out_channels: int | None = None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"PyGModel wraps a torch.nn.Module; got {type(module).__name__}.")
        name = hidden_site or default_hidden_site(module)
        if name is None:
            raise ValueError(f"Name the submodule of {type(module).__name__} whose input is its last hidden layer: "
                             "PyGModel(module, hidden_site='...'), one of "
                             f"{[n for n, _ in module.named_modules() if n][:8]}.")
        try:
            module.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"{type(module).__name__} has no submodule {name!r} for hidden_site.") from err
        self.module, self.hidden_site = module, name
        self.in_channels = _channels(module, "in_channels", in_channels)
        self.out_channels = _channels(module, "out_channels", out_channels)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        seen: list[Tensor] = []
        # The hook lives for this call alone, so the user's module is left as it was given.
        handle = self.module.get_submodule(self.hidden_site).register_forward_pre_hook(
            lambda _, inputs: seen.append(inputs[0]))
        try:
            logits = self.module(x, edge_index)
        finally:
            handle.remove()
        if not seen:
            raise RuntimeError(f"{type(self.module).__name__}'s forward never called {self.hidden_site!r}; name the "
                               "submodule whose input is its last hidden layer with hidden_site=.")
        return logits, seen[-1]


def as_node_classifier(model, owner: str) -> NodeClassifier:
    """``model`` if it is an srgnn model; any other ``torch.nn.Module`` as a ``PyGModel``; else the
    error of ``check_node_classifier``."""
    if isinstance(model, nn.Module) and not isinstance(model, NodeClassifier) and type(model).__name__ != "ShiftRobust":
        return PyGModel(model)
    check_node_classifier(model, owner)
    return model
