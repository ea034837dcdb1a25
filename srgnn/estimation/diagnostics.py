"""A bias report for one labelled set of a user's own graph: how shifted it is, how accurate a
model trained on it will be on the unlabelled nodes, and how much the bias is likely to cost.

    python -m srgnn.estimation.diagnostics --dataset pubmed --published-set 0
    python -m srgnn.estimation.diagnostics --data my_graph.pt --train my_labels.pt   # torch.save'd Data, index

Every figure is read off the graph and the labelled nodes alone; no unlabelled node's label is
read. Under bias that makes the accuracy estimate optimistic (docs/disagreement.md). A few
hundred labels of nodes drawn uniformly from the unlabelled ones fix it: pass them as
``held_out`` with ``method="atc"`` (``--method atc --held-out validation`` uses a registered
graph's validation nodes). ``--plot FILE`` draws each shift against its IID reference sets.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from .._validation import as_tensor, check_index, check_int, check_seed
from ..cli import OneLineParser, fail
from .disagreement import ErrorEstimate, check_held_out, estimate_error
from ..data import UnsafeFileError, load_dataset, load_graph, load_saved, published_splits_path
from ..graph import Graph, StaleGraphError, graph_for, model_inputs
from ..training.loop import NonFiniteLossError
from ..models import APPNP, GAT, GCN
from ..kernels.propagation import sgc_features
from ..sampling import iid_sample, load_published_splits
from ..robustness.shift import cmd
from ..training.trainer import Trainer, check_training_set, num_classes

#: The ensemble whose mean confidence estimates accuracy (one model of each; mixed architectures
#: disagree where a seed ensemble of one would agree).
DEFAULT_MODELS: tuple[Callable[[int, int], nn.Module], ...] = (GCN, APPNP, GAT)


@dataclass(frozen=True)
class Shift:
    """A statistic of the labelled set (a CMD against an IID sample of unlabelled nodes, or the
    mean degree), placed against the same statistic for ``reference`` IID sets of the labelled
    set's size: ``percentile`` is the share of those below ``value`` (1.0: above every IID set)."""

    value: float
    reference_mean: float
    reference_high: float  # the reference sets' 95th percentile
    percentile: float
    reference: tuple[float, ...] = dataclasses.field(default=(), repr=False)  # each reference set's value


@dataclass(frozen=True)
class Accuracy:
    """An estimated accuracy ``value`` on the unlabelled nodes, with its bootstrap interval
    ``low``..``high`` at ``level``, by ``estimate_error``'s ``method`` (accuracy = 1 - error)."""

    method: str
    value: float
    low: float
    high: float
    level: float

    @classmethod
    def from_error(cls, error: ErrorEstimate) -> "Accuracy":
        return cls(error.method, 1 - error.error, 1 - error.high, 1 - error.low, error.level)


@dataclass(frozen=True)
class BiasReport:
    """``bias_report``'s findings; ``str(report)`` prints them."""

    n_labelled: int
    n_unlabelled: int
    feature_shift: Shift  # of the input features X
    propagated_shift: Shift  # of two-hop propagated features, what a 2-layer GCN's receptive field sees
    hidden_shift: Shift  # of the first model's last hidden layer
    hidden_model: str  # that model's class
    degree_shift: Shift  # mean in-degree: PPR-localized sets favour well-connected nodes
    accuracy: Accuracy  # estimated on the unlabelled nodes, with its interval
    n_iid_labelled: int  # labelled nodes drawn like the unlabelled ones that the estimate read (0: label-free)
    held_out_accuracy: float  # k-fold, on labelled nodes held out of training: what validation promises
    estimated_drop: float  # held_out_accuracy - accuracy.value

    def plot(self, path: str | Path) -> None:
        """Draw the report into ``path`` (.png, .pdf or .svg; needs matplotlib): four panels, one
        per statistic, each a histogram of its value over the IID reference sets, their 95th
        percentile dashed, and the labelled set's value as a red line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        panels = [("input features", "CMD to an IID sample", self.feature_shift),
                  ("propagated features (A²X)", "CMD to an IID sample", self.propagated_shift),
                  (f"hidden layer ({self.hidden_model})", "CMD to an IID sample", self.hidden_shift),
                  ("mean degree", "mean in-degree", self.degree_shift)]
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
        figure.suptitle(f"How far {self.n_labelled} labelled nodes are from IID samples of the "
                        f"{self.n_unlabelled} unlabelled ones", fontsize=12)
        figure.savefig(path, dpi=120)
        plt.close(figure)

    def __str__(self) -> str:
        # A raw CMD means nothing alone: lead with where it falls among IID sets of this size.
        def shift(name: str, s: Shift, unit: str = "CMD", digits: int = 4) -> str:
            return (f"{name}: above {100 * s.percentile:.0f}% of IID sets of this size ({unit} {s.value:.{digits}f}; "
                    f"IID sets {s.reference_mean:.{digits}f} on average, 95th percentile "
                    f"{s.reference_high:.{digits}f})")
        a = self.accuracy
        return "\n".join([
            f"labelled nodes: {self.n_labelled}; unlabelled: {self.n_unlabelled}",
            shift("feature shift", self.feature_shift),
            shift("propagated-feature shift (A^2 X)", self.propagated_shift),
            shift(f"hidden-layer shift (trained {self.hidden_model})", self.hidden_shift),
            shift("mean degree", self.degree_shift, unit="mean degree", digits=1),
            f"estimated accuracy on unlabelled nodes: {100 * a.value:.1f}% "
            f"({100 * a.level:.0f}% interval {100 * a.low:.1f}-{100 * a.high:.1f}; method {a.method}, "
            + (f"reading {self.n_iid_labelled} IID labels)" if self.n_iid_labelled else "label-free)"),
            f"held-out accuracy on labelled nodes: {100 * self.held_out_accuracy:.1f}%",
            f"estimated drop (held-out minus unlabelled): {100 * self.estimated_drop:.1f} points",
        ])


def _placed(value: float, reference: Tensor) -> Shift:
    """``value`` against the same statistic of the reference sets ``[R]``."""
    reference = reference.double()
    return Shift(value, float(reference.mean()), float(torch.quantile(reference, 0.95)),
                 float((reference < value).double().mean()), tuple(reference.tolist()))


def _shift(features: Tensor, labelled: Tensor, target: Tensor, reference: Tensor) -> Shift:
    value = float(cmd(features[labelled], features[target]))
    return _placed(value, cmd(features[reference], features[target].expand(reference.size(0), -1, -1)))


def bias_report(graph: Graph | Data, train_idx: Tensor, *,
                models: Sequence[Callable[[int, int], nn.Module]] = DEFAULT_MODELS, iid_size: int = 500,
                n_reference: int = 100, folds: int = 5, n_bootstrap: int = 200, method: str = "confidence",
                held_out: tuple[Tensor, Tensor] | None = None, seed: int = 0, epochs: int = 200) -> BiasReport:
    """Report on the labelled set ``train_idx`` ``[n]`` of ``graph`` (features and labels of
    the labelled nodes; the others' labels are never read).

    Args:
        models: factories ``f(in_channels, out_channels)`` of the ensemble whose estimate
            (``method`` of ``srgnn.estimation.disagreement.estimate_error``) gives the accuracy; the first
            also gives the hidden-layer shift.
        iid_size: unlabelled nodes drawn uniformly as the IID sample both shifts compare against.
        n_reference: IID sets of ``n`` unlabelled nodes that place each shift.
        folds: the labelled set is split in this many folds for the held-out accuracy.
        n_bootstrap: resamples for the accuracy interval.
        held_out: ``(node ids [m], labels [m])`` of unlabelled nodes drawn uniformly and then
            labelled, outside ``train_idx``, for the methods that read labels (``atc``, ``doc``,
            ``held_out``); the estimate then covers the other unlabelled nodes.
    """
    graph = graph_for(graph)
    data = graph.data
    train_idx = check_training_set(graph, train_idx)
    n_reference, folds = check_int(n_reference, "n_reference"), check_int(folds, "folds", minimum=2)
    seed = check_seed(seed)
    check_int(n_bootstrap, "n_bootstrap")
    if not models:
        raise ValueError("models is empty: the accuracy estimate needs at least one model factory.")
    n, num_nodes = train_idx.numel(), data.num_nodes
    if folds > n:
        raise ValueError(f"folds={folds} is more than the {n} labelled nodes; use at most {n} folds.")
    unlabelled = torch.ones(num_nodes, dtype=torch.bool)
    unlabelled[train_idx] = False
    pool = unlabelled.nonzero().view(-1)
    if pool.numel() < max(n, 2):
        raise ValueError(f"Only {pool.numel()} unlabelled node(s) for a labelled set of {n}: the report compares "
                         "the labelled set with unlabelled nodes, so it needs more of them than labelled ones.")
    estimated = pool  # the nodes whose accuracy is estimated
    if held_out is not None:
        # Checked before any model trains: a refusal should not cost the training.
        if method in ("confidence", "gde"):
            raise ValueError(f"method={method!r} reads no labels, so held_out would go unread: pass method='atc' "
                             "(or 'doc', 'held_out') to estimate from them.")
        check_held_out(held_out)
        held_nodes = check_index(held_out[0], num_nodes, "held_out nodes").cpu()
        held_labels = as_tensor(held_out[1], "held_out labels").view(-1)
        if held_labels.is_floating_point() or bool(((held_labels < 0) | (held_labels >= num_classes(data))).any()):
            raise ValueError(f"held_out labels must be classes 0..{num_classes(data) - 1} of the graph; got "
                             f"{held_labels.dtype} values in {held_labels.min()}..{held_labels.max()}.")
        if bool((~unlabelled[held_nodes]).any()):
            raise ValueError("held_out nodes must lie outside train_idx: they stand in for the unlabelled nodes, "
                             "so the models must not train on them.")
        estimated = pool[~torch.isin(pool, held_nodes)]
    iid_size = min(check_int(iid_size, "iid_size"), pool.numel())
    target = iid_sample(data, iid_size, seed=seed, candidates=pool)
    reference = torch.stack([iid_sample(data, n, seed=seed + 1 + r, candidates=pool) for r in range(n_reference)])
    x = data.x  # dense float32 (srgnn.graph.prepared_data)
    channels = (data.num_features, int(data.y.max()) + 1)

    trainers = [Trainer(factory(*channels), epochs=epochs, seed=seed + m).fit(graph, train_idx)
                for m, factory in enumerate(models)]
    logits = [t.logits(graph) for t in trainers]
    first = trainers[0].model.eval()
    with torch.no_grad():
        inputs = model_inputs(first, graph.x, graph, next(first.parameters()).device)
        hidden = first.forward_with_hidden(*inputs)[1].cpu()
    accuracy = Accuracy.from_error(estimate_error(*logits, nodes=estimated, method=method, held_out=held_out,
                                                  n_bootstrap=n_bootstrap, seed=seed))

    # Held-out accuracy: each fold is predicted by the first model trained on the other folds,
    # with the folds stratified by class so every class stays in training.
    y = data.y.view(-1).cpu()[train_idx]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order[torch.sort(y[order], stable=True).indices]  # class by class, shuffled within
    fold_of = torch.empty(n, dtype=torch.long)
    fold_of[order] = torch.arange(n) % folds
    correct = 0
    for f in range(folds):
        held, kept = train_idx[fold_of == f], train_idx[fold_of != f]
        if torch.unique(y[fold_of != f]).numel() < channels[1]:
            raise ValueError(f"folds={folds} leaves a class without training nodes (a class has a single "
                             "labelled node); label more of it, or report on the other classes' nodes.")
        fold_model = Trainer(models[0](*channels), epochs=epochs, seed=seed).fit(graph, kept)
        correct += int((fold_model.predict(graph)[held].cpu() == data.y.view(-1).cpu()[held]).sum())
    held_out_accuracy = correct / n
    x = x.cpu().float()
    propagated = sgc_features(graph.on("cpu").adjacency("sym"), x, 2)
    degree = graph.in_degree().cpu().double()
    degree_shift = _placed(float(degree[train_idx].mean()), degree[reference].mean(1))
    feature, propagated, hidden = (_shift(f, train_idx, target, reference) for f in (x, propagated, hidden))
    return BiasReport(n, int(pool.numel()), feature, propagated, hidden, type(trainers[0].model_).__name__,
                      degree_shift, accuracy,
                      0 if held_out is None else int(held_out[0].numel()), held_out_accuracy,
                      held_out_accuracy - accuracy.value)


#: What a user can fix, reported by the command line in one line (exit status 2).
USER_ERRORS = (ValueError, TypeError, IndexError, FileNotFoundError, UnsafeFileError, StaleGraphError,
               NonFiniteLossError)
PROG = "python -m srgnn.estimation.diagnostics"


#: The formats ``BiasReport.plot`` writes from the command line.
FIGURE_FORMATS = (".png", ".pdf", ".svg")


def _check_figure_path(path: Path) -> None:
    """Refuse, before any training, a figure file of an unknown format, in a missing folder, or
    without matplotlib to draw it."""
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(f"--plot {path}: name a {', '.join(FIGURE_FORMATS)} file.")
    if not path.parent.is_dir():
        raise ValueError(f"--plot {path}: the folder {path.parent} does not exist.")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install 'srgnn[plot]'.")


def _node_ids(value, path: str) -> Tensor:
    """``--train``'s content: node ids (or a boolean mask), refused in one line if anything else."""
    if not isinstance(value, Tensor) or value.is_floating_point():
        keys = f" with keys {sorted(map(str, value))[:5]}" if isinstance(value, dict) else ""
        what = f"a {value.dtype} tensor" if isinstance(value, Tensor) else f"a {type(value).__name__}{keys}"
        raise TypeError(f"--train {path} holds {what}; save the labelled node ids as an integer tensor: "
                        "torch.save(train_idx, path).")
    return value


def main(argv=None) -> None:
    try:
        _main(argv)
    except USER_ERRORS as err:
        fail(PROG, str(err))


def _main(argv=None) -> None:
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a registered dataset (cora, citeseer, pubmed), found through $SRGNN_DATA")
    source.add_argument("--data", help="a torch.save'd torch_geometric Data with x, edge_index and y")
    labelled = parser.add_mutually_exclusive_group(required=True)
    labelled.add_argument("--train", help="a torch.save'd LongTensor of labelled node ids")
    labelled.add_argument("--published-set", type=int, metavar="I",
                          help="set I of the authors' published sets for --dataset (--splits-path)")
    parser.add_argument("--splits-path", help="localized_seeds_<dataset>.p (default: in $SRGNN_DATA/srgnn_localized_seeds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=200, help="training epochs of each model")
    parser.add_argument("--reference", type=int, default=100, metavar="R", help="IID reference sets")
    parser.add_argument("--method", default="confidence", choices=("confidence", "gde", "doc", "atc", "held_out"),
                        help="estimate_error's method for the accuracy (doc, atc, held_out need --held-out)")
    parser.add_argument("--held-out", metavar="FILE|validation",
                        help="labels of unlabelled nodes drawn uniformly: a torch.save'd (node ids, labels) pair, "
                             "or 'validation' for --dataset's validation nodes outside the labelled set")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    parser.add_argument("--plot", metavar="FILE", type=Path,
                        help="also draw each shift statistic against its IID reference sets into FILE (.png, .pdf "
                             "or .svg; needs matplotlib: pip install 'srgnn[plot]')")
    args = parser.parse_args(argv)
    if args.plot is not None:
        _check_figure_path(args.plot)
    data = load_dataset(args.dataset) if args.dataset else load_graph(args.data, "--data")
    if args.published_set is not None:
        if args.dataset is None:
            parser.error("--published-set needs --dataset (the published sets are per dataset).")
        path = args.splits_path or published_splits_path(args.dataset)
        sets = load_published_splits(path, data=data)
        if not 0 <= args.published_set < len(sets):
            parser.error(f"--published-set {args.published_set} is out of range 0..{len(sets) - 1}.")
        train = sets[args.published_set]
    else:
        train = _node_ids(load_saved(args.train, "--train"), args.train)
    held_out = None
    if args.held_out == "validation":
        if getattr(data, "val_mask", None) is None:
            parser.error("--held-out validation needs a graph with a val_mask; pass a (node ids, labels) file.")
        nodes = data.val_mask.nonzero().view(-1)
        nodes = nodes[~torch.isin(nodes, torch.as_tensor(train).view(-1))]
        held_out = (nodes, data.y.view(-1)[nodes])
    elif args.held_out is not None:
        held_out = load_saved(args.held_out, "--held-out")
        check_held_out(held_out)
    if args.method in ("doc", "atc", "held_out") and held_out is None:
        parser.error(f"--method {args.method} reads labels: pass --held-out (a file, or 'validation').")
    report = bias_report(data, train, seed=args.seed, epochs=args.epochs, n_reference=args.reference,
                         method=args.method, held_out=held_out)
    print(json.dumps(dataclasses.asdict(report), indent=2) if args.json else report)
    if args.plot is not None:
        report.plot(args.plot)
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
