"""Training sets biased by a structural property of the nodes: PyG's ``NodePropertySplit``
(Bazhenov et al., "Evaluating robustness and uncertainty of graph models under structural
distributional shifts", 2023) ranks the nodes by popularity (PageRank), locality (PageRank
personalized to the most popular node) or density (clustering coefficient); a set draws its
labels from the top ``share`` of that ranking, as an annotator who labels the popular, the
central or the tightly knit nodes would."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import NodePropertySplit

from .._validation import check_graph, check_int, check_number, check_seed

PROPERTIES = ("popularity", "locality", "density")


class PropertySampler:
    """Sets of ``per_class`` labelled nodes per class, drawn uniformly from the top ``share`` of
    the nodes by ``property_name`` (``pool_``, computed once).

    Args:
        data: a graph with labels ``y``.
        property_name: ``"popularity"``, ``"locality"`` or ``"density"``.
        per_class: labelled nodes per class (all of a class's pool nodes where it has fewer).
        share: the part of the nodes, ranked by the property, that sets are drawn from.
    """

    def __init__(self, data: Data, property_name: str = "popularity", per_class: int = 20, share: float = 0.25):
        check_graph(data, require_labels=True)
        if property_name not in PROPERTIES:
            raise ValueError(f"property_name must be one of {PROPERTIES}; got {property_name!r}.")
        share = check_number(share, "share")
        ratios = [share, 0.0, 0.0, 0.0, 1.0 - share]
        if not 0.0 < share < 1.0 or sum(ratios) != 1.0:  # NodePropertySplit needs an exact sum
            raise ValueError(f"share must lie in (0, 1) and 1 - share be exact in floating point (0.25, 0.5, "
                             f"0.125, ...); got {share!r}.")
        self.per_class = check_int(per_class, "per_class")
        self.y = data.y.view(-1).cpu()
        self.num_classes = int(self.y.max()) + 1
        structure = Data(edge_index=data.edge_index.cpu(), num_nodes=data.num_nodes)
        # NodePropertySplit shuffles ties and the parts with the global generator: seeded here.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            split = NodePropertySplit(property_name, ratios, ascending=True)(structure)
        self.pool_ = split.id_train_mask.nonzero().view(-1)
        missing = sorted(set(range(self.num_classes)) - set(self.y[self.pool_].tolist()))
        if missing:
            raise ValueError(f"Class(es) {missing} have no node among the top {share:.0%} by {property_name}; a "
                             "training set needs every class: raise share.")

    def sample(self, seed: int) -> Tensor:
        """One set: ``[<= per_class * C]`` node ids, a block per class."""
        generator = torch.Generator().manual_seed(check_seed(seed))
        blocks = []
        for c in range(self.num_classes):
            nodes = self.pool_[self.y[self.pool_] == c]
            blocks.append(nodes[torch.randperm(nodes.numel(), generator=generator)[: self.per_class]])
        return torch.cat(blocks)

    def sample_many(self, n: int, seed: int = 0) -> list[Tensor]:
        """``n`` sets; set ``i`` equals ``sample(seed + i)``."""
        return [self.sample(seed + i) for i in range(check_int(n, "n"))]
