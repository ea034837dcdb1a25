"""Training: ``trainer.Trainer`` and its one loop (``loop``), what a step reads (``subgraph``),
mini-batches (``minibatch``, on PyG's ``NeighborLoader``: ``loader``), and weight averaging
(``swa``)."""
