"""The numerical floor beneath the models: sparse propagation (``propagation``), the layer
kernels and their CPU fast paths (``layers``), GAT's edge aggregation (``attention``), the ops a
model's forward calls (``ops``) and nested dissection (``dissection``)."""
