"""Shift robustness: the distances between two node sets' representations (``shift``: CMD,
MMD, KMM), the shift-robust loss (``robust.ShiftRobust``), DANN's discriminator
(``adversarial``) and the preparation of a training set for it (``preparation``: the IID sample
and the instance weights)."""
