"""Deep Graph Infomax embeddings (Velickovic et al., ICLR 2019) with a linear classifier."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.nn import DeepGraphInfomax

from ..graph import Graph, as_graph
from ..kernels.propagation import Adjacency, spmm
from ..kernels.layers import SparseInputLinear
from .._validation import check_int, check_number, check_seed
from .base import NodeClassifier, check_channels


class DGI(NodeClassifier):
    r"""A one-layer GCN encoder trained without labels with PyG's ``DeepGraphInfomax``
    discriminator and loss (corruption: row-shuffled features), frozen, then a linear
    classifier on its embeddings. Sparse CSR features stay sparse.

    The encoder is pretrained on the first call for a graph (``pretrain_epochs`` full-batch
    Adam steps, seeded by ``pretrain_seed``). Being label-free, the embeddings are kept on a
    ``srgnn.graph.Graph`` (for its own ``x``) under the settings, for every DGI instance, so all
    training sets of one graph share one pretraining.
    The classifier is linear on frozen features, so, like SGC, it is a linear model in
    SR-GNN's sense (KMM instance weights by default) and its logits are the hidden layer.

    ``embeddings_file`` shares the pretraining between processes (a study's worker processes,
    a resumed run): the embeddings are loaded from it when it holds this graph's, features',
    settings' and thread count's, else pretrained and written to it.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]`` or a ``Graph`` -> logits ``[N, C]``, hidden ``[N, C]``; or x
        ``[M, hidden_channels]`` rows of ``node_features`` with ``edge_index=None`` -> ``[M, C]``.
    """

    accepts_graph = True

    linear = True
    # A logistic regression on small (row-normalized, propagated) features needs large weights:
    # with the GCN settings (0.01, 5e-4) it reached 45% (SGC) / 66% (DGI) on IID Cora sets,
    # with these 75% / 80%.
    optimizer_defaults = {"lr": 0.2, "weight_decay": 5e-5}

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 512,
                 pretrain_epochs: int = 100, lr: float = 1e-3, pretrain_seed: int = 0,
                 embeddings_file: str | os.PathLike | None = None):
        super().__init__()
        check_channels(in_channels, out_channels, hidden_channels)
        self.out_channels = out_channels
        self.in_channels, self.pretrain_epochs = in_channels, check_int(pretrain_epochs, "pretrain_epochs", minimum=0)
        self.lr, self.pretrain_seed = check_number(lr, "lr", strict=True), check_seed(pretrain_seed, "pretrain_seed")
        self.embeddings_file = None if embeddings_file is None else Path(embeddings_file)
        # PyG's DeepGraphInfomax holds the discriminator and its loss; ``embed`` encodes the
        # two views itself, sharing the input product between them.
        self.infomax = DeepGraphInfomax(hidden_channels, encoder=_Encoder(in_channels, hidden_channels),
                                        summary=_summary, corruption=_shuffle_rows)
        self.classifier = nn.Linear(hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        # The encoder is label-free and shared across training sets; only the classifier is reset.
        self.classifier.reset_parameters()

    def embed(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        """The frozen embeddings ``[N, hidden_channels]``, pretrained once per ``Graph``, features
        and settings for every DGI instance."""
        key = ("dgi", self.in_channels, self.infomax.hidden_channels, self.pretrain_epochs, self.lr,
               self.pretrain_seed, str(x.device))
        graph = as_graph(edge_index, x)
        return graph.features(x, key, lambda: self._load_or_pretrain(x, graph, key))

    def _load_or_pretrain(self, x: Tensor, graph: Graph, key: tuple) -> Tensor:
        if self.embeddings_file is None:
            return self._pretrain(x, graph)
        edge_index = graph.edge_index
        # Pretraining is deterministic given these, the thread count included (it changes the
        # order of float sums), so equal fingerprints mean equal embeddings.
        values = x.values() if x.is_sparse_csr else x
        fingerprint = [*map(str, key), x.size(0), x.size(1), edge_index.size(1), torch.get_num_threads(),
                       float(values.double().sum()), int(edge_index.sum())]
        if self.embeddings_file.exists():
            try:
                saved = torch.load(self.embeddings_file, weights_only=True)
                matches = saved["fingerprint"] == fingerprint
            except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
                raise ValueError(f"embeddings_file {self.embeddings_file} exists but does not hold DGI embeddings "
                                 f"written by srgnn ({type(error).__name__}); delete it or pass another path.") from error
            if matches:
                return saved["embeddings"].to(x.device)
        embeddings = self._pretrain(x, graph)
        # Written under a private name and renamed, so a reader never sees half a file.
        partial = self.embeddings_file.with_name(f"{self.embeddings_file.name}.{os.getpid()}.partial")
        torch.save({"fingerprint": fingerprint, "embeddings": embeddings.cpu()}, partial)
        os.replace(partial, self.embeddings_file)
        return embeddings

    def _pretrain(self, x: Tensor, graph: Graph) -> Tensor:
        # Seeded on its own, with the caller's random state restored after: the embeddings do
        # not depend on which training set (or process) happened to pretrain first.
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(self.pretrain_seed)
            return self._pretrain_seeded(x, graph.adjacency())

    def _pretrain_seeded(self, x: Tensor, adj: Adjacency) -> Tensor:
        encoder = self.infomax.encoder
        self.infomax.reset_parameters()
        optimizer = torch.optim.Adam(self.infomax.parameters(), lr=self.lr)
        self.infomax.train()
        with torch.enable_grad():
            for _ in range(self.pretrain_epochs):
                optimizer.zero_grad()
                # Corruption shuffles the rows of X, and (PX)W = P(XW): one sparse product
                # serves both the clean and the corrupted view.
                projected = encoder.project(x)
                positive = encoder.propagate(projected, adj)
                negative = encoder.propagate(_shuffle_rows(projected), adj)
                loss = self.infomax.loss(positive, negative, _summary(positive))
                loss.backward()
                optimizer.step()
        self.infomax.eval()
        with torch.no_grad():
            return encoder(x, adj).detach()

    def node_features(self, x: Tensor, edge_index: Tensor | Graph) -> Tensor:
        self.check_input(x)
        return self.embed(x, edge_index)

    def forward_with_hidden(self, x: Tensor, edge_index: Tensor | Graph | None) -> tuple[Tensor, Tensor]:
        """``edge_index=None``: ``x`` holds embeddings (rows of ``node_features``)."""
        if edge_index is None:
            if x.size(-1) != self.classifier.in_features:
                raise ValueError(f"With edge_index=None, DGI expects {self.classifier.in_features}-wide "
                                 f"embeddings from node_features(); got x with {x.size(-1)} columns.")
            embeddings = x
        else:
            embeddings = self.node_features(x, edge_index)
        logits = self.classifier(embeddings)
        return logits, logits


def _summary(z: Tensor, *args, **kwargs) -> Tensor:
    return torch.sigmoid(z.mean(dim=0))


def _shuffle_rows(x: Tensor, *args) -> Tensor:
    return x[torch.randperm(x.size(0), device=x.device)]


class _Encoder(nn.Module):
    r"""One GCN layer, :math:`\mathrm{PReLU}(\hat A X W + b)`, with a sparse-input product."""

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.lin = SparseInputLinear(in_channels, hidden_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(hidden_channels))
        self.act = nn.PReLU(hidden_channels)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)  # Glorot, as PyG's GCNConv
        nn.init.zeros_(self.bias)
        self.act.reset_parameters()

    def project(self, x: Tensor) -> Tensor:
        return self.lin(x)

    def propagate(self, projected: Tensor, adj: Adjacency) -> Tensor:
        return self.act(spmm(adj, projected) + self.bias)

    def forward(self, x: Tensor, adj: Adjacency) -> Tensor:
        return self.propagate(self.project(x), adj)
