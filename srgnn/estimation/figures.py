"""The bias report as a figure: each shift statistic of the labelled set against its
distribution over IID sets of the same size (``srgnn.estimation.diagnostics``, ``--plot``)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diagnostics import BiasReport

FORMATS = (".png", ".pdf", ".svg")


def check_figure_path(path: Path) -> None:
    """Refuse, before any training, a figure file of an unknown format, in a missing folder, or
    without matplotlib to draw it."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"--plot {path}: name a {', '.join(FORMATS)} file.")
    if not path.parent.is_dir():
        raise ValueError(f"--plot {path}: the folder {path.parent} does not exist.")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install 'srgnn[plot]'.")


def plot_shifts(report: "BiasReport", path: Path) -> None:
    """Four panels, one per statistic: a histogram of its value over the IID reference sets,
    their 95th percentile dashed, and the labelled set's value as a red line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [("input features", "CMD to an IID sample", report.feature_shift),
              ("propagated features (A²X)", "CMD to an IID sample", report.propagated_shift),
              (f"hidden layer ({report.hidden_model})", "CMD to an IID sample", report.hidden_shift),
              ("mean degree", "mean in-degree", report.degree_shift)]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (title, unit, shift) in zip(axes.flat, panels):
        ax.hist(shift.reference, bins=20, color="#9bb7d4", edgecolor="white", label="IID sets of this size")
        ax.axvline(shift.reference_high, color="#555555", linestyle="--", linewidth=1, label="their 95th percentile")
        ax.axvline(shift.value, color="#c0392b", linewidth=2.5, label="the labelled set")
        # the labelled set may lie far beyond the reference: keep both in view
        low, high = min(min(shift.reference), shift.value), max(max(shift.reference), shift.value)
        pad = 0.05 * (high - low or 1.0)
        ax.set_xlim(low - pad, high + pad)
        ax.set_title(f"{title}\nabove {100 * shift.percentile:.0f}% of IID sets", fontsize=11)
        ax.set_xlabel(unit)
        ax.set_ylabel("IID sets")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].legend(fontsize=9, loc="upper right")
    figure.suptitle(f"How far {report.n_labelled} labelled nodes are from IID samples of the "
                    f"{report.n_unlabelled} unlabelled ones", fontsize=12)
    figure.savefig(path, dpi=120)
    plt.close(figure)
