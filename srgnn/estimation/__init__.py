"""What a user can learn without more labels, and where to get them: calibration
(``calibration``), label-free error estimates (``disagreement``), the bias report
(``diagnostics``, also a command: ``python -m srgnn.estimation.diagnostics``) and where to label
next (``acquisition``)."""
