"""Calibrated under bias? On each published localized set, score SWA, SWAG, MultiSWAG and
temperature scaling against plain GCN: Micro-F1 (paired against GCN), expected calibration
error and negative log-likelihood. Writes its section of docs/swa.md; runs resume from --runs.

    python -m benchmarks.swa_bias [--datasets cora,pubmed] [--repeats 100] [--workers 2] [--groups gcn,sr-gcn]

The recipes, each GCN at 200 epochs from the same seed per set:

- ``gcn``: Adam at 0.01 (the default).
- ``swa``: Adam at 0.05, weights averaged over every epoch of the last quarter at that rate.
- ``swa cyclical``: Adam cycling 0.05 -> 0.001 every 10 epochs over the second half, the
  weights of each cycle's end averaged.
- ``swag``: 20 draws from the SWAG posterior (rank 10) collected in the ``swa`` run.
- ``multiswag``: ``swag`` over three runs (seeds i, i + 1000, i + 2000).
- ``sr-gcn``: shift-robust GCN at its defaults, no averaging; ``sr-gcn + swa`` and
  ``sr-gcn + swa cyclical``: it with the ``swa`` and ``swa cyclical`` settings. (These two were
  added after a first round of the other eight, in which the rule below chose ``sr-gcn``.)
- ``+ temperature``: a temperature fitted (``srgnn.estimation.calibration.fit_temperature``) on 20% of
  the labelled nodes held out of a second run of the same recipe on the other 80%, then
  applied to the run on every labelled node: the held-out nodes are drawn like the training
  set, the only labelled nodes a user with a biased set has.
- ``+ weighted temperature``: the same fit with each held-out node's NLL weighted by KMM
  (``srgnn.robustness.preparation.kmm_node_weights``: its PPR row matched to 500 uniform unlabelled nodes'),
  so that the held-out nodes stand in for the unlabelled ones. (``sr-gcn + temperature`` and
  the weighted recipes were added in a third round, declared before it ran: after the second,
  SR-GCN was found underconfident on validation nodes, where dividing its logits by 0.8
  lowered ECE.)
- ``+ validation temperature``: a temperature fitted on the validation nodes below, IID
  labelled nodes a user with only a biased set does not have: it measures what a few hundred
  uniformly drawn labels buy. On validation nodes it is cross-fitted (``cross_fitted_scaling``:
  each seeded half tempered with the temperature fitted on the other), so the rule below never
  scores a temperature on the nodes it was fitted on; every other node takes the temperature
  fitted on all of them. (A fourth round, declared before it ran: after the third, no recipe
  fitted on labelled nodes drawn like the training set reached ECE 0.05 on both graphs.)
- ``+ uniform temperature``: one temperature fitted on 500 nodes drawn uniformly from those
  outside the training set and the validation nodes (``benchmarks.study.uniform_labelled``),
  left out of the test nodes: the labels a user buys by labelling a uniform sample. (A sixth
  round, declared before it ran, with the test nodes of every recipe less those 500: the
  validation nodes a published set leaves are thinned near it, the authors having drawn up to
  half of each set from them, so a temperature fitted there is fitted farther from the
  training set than the test nodes lie.)
- ``+ distance temperature``: as ``+ validation temperature``, one temperature per hop
  distance from the training set (1, 2, 3, 4 or more; ``srgnn.estimation.calibration.fit_group_temperatures``,
  a distance with under 20 of the fitting nodes taking their pooled temperature), cross-fitted
  the same way. (A fifth round, declared before it ran: after the fourth, the one validation
  temperature reached ECE 0.052-0.055 on Cora and 0.061-0.112 on PubMed.)

The recipes run in groups that share their runs (``GROUPS``), one job per set and group,
logged as it finishes: ``--groups`` runs some of them, and a later call adds the others.

Every metric is computed on two disjoint node sets: the Planetoid validation nodes outside the
training set, on which the recipe to recommend is chosen (the rule, fixed before any run:
lowest mean ECE over the graphs among the recipes whose mean paired Micro-F1 against ``gcn``
is not below zero on both graphs), and the test nodes: the paper's (every node outside the
training set on Cora, the 1,000 Planetoid test nodes otherwise) less the validation nodes and
the uniform sample.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from benchmarks.report import paired_difference
from benchmarks.runlog import RunLog, StudyLockedError
from benchmarks.skeleton import (add_seeds_dir_option, parse_study_args, publish, published_sets_path, run_pending,
                                 study_parser)
from benchmarks.study import build, split_held_out, test_nodes, uniform_labelled, worker_graph
from srgnn import Trainer
from srgnn.estimation.calibration import fit_group_temperatures, fit_temperature
from srgnn.data import load_dataset
from srgnn.estimation.disagreement import calibrated_ece_floor, expected_calibration_error
from srgnn.robustness.preparation import kmm_node_weights
from srgnn.sampling import iid_sample, load_published_splits
from srgnn.training.swa import SWAConfig, multiswag_predict_proba

SWA_LR = 0.05
SETTINGS = {"gcn": dict(),
            "swa": dict(lr=SWA_LR, swa=SWAConfig(start=0.75, lr=SWA_LR, swag_rank=10)),
            "swa cyclical": dict(lr=SWA_LR, swa=SWAConfig(start=0.5, schedule="cyclical", lr=0.001, cycle=10)),
            "sr-gcn": dict()}
SETTINGS["sr-gcn + swa"], SETTINGS["sr-gcn + swa cyclical"] = SETTINGS["swa"], SETTINGS["swa cyclical"]
#: The runs of one job per set, each with the recipes it scores; every group's first recipe is its run.
TEMPERED = ("gcn", "swa", "sr-gcn")
TEMPERATURES = (" + temperature", " + weighted temperature", " + validation temperature", " + distance temperature",
                " + uniform temperature")
GROUPS = {group: (group,) + (tuple(group + t for t in TEMPERATURES) if group in TEMPERED else ())
          + (("swag", "multiswag") if group == "swa" else ()) for group in SETTINGS}
RECIPES = tuple(recipe for recipes in GROUPS.values() for recipe in recipes)
GROUP_OF = {recipe: group for group, recipes in GROUPS.items() for recipe in recipes}
IID_SIZE = 500
DRAWS = 20
#: Label draws for each ECE's floor, the ECE of a calibrated model with the same confidences.
FLOOR_DRAWS = 20
#: ``+ distance temperature``'s groups: hops 1, 2, 3 from the training set, and 4 for 4 or more.
MAX_HOPS = 3


def _metrics(probs: Tensor, y: Tensor, nodes: Tensor) -> dict:
    probs, labels = probs[nodes].double(), y[nodes]
    return {"micro_f1": float((probs.argmax(1) == labels).double().mean()),
            "ece": expected_calibration_error(probs, labels),
            "ece_floor": calibrated_ece_floor(probs, n_draws=FLOOR_DRAWS),
            "nll": float(torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels))}


def cross_fitted_scaling(logits: Tensor, labels: Tensor, nodes: Tensor, seed: int,
                         groups: Tensor | None = None) -> Tensor:
    """``softmax(logits / T)`` with ``T`` fitted on ``labels`` of ``nodes`` (``[n]`` indices), except at
    ``nodes`` themselves: a seeded permutation halves them, and each half is divided by the
    temperature fitted on the other half, so that no node's probabilities used its own label.
    With ``groups``, one temperature per group (``fit_group_temperatures``) in place of ``T``.

    Args:
        logits: ``[N, C]`` raw scores of every node.
        labels: ``[N]`` classes (read only at ``nodes``).
        groups: ``[N]`` each node's group, ints in ``[0, G)``.
    """
    if groups is None:
        groups = torch.zeros(logits.size(0), dtype=torch.long)
    num_groups = int(groups.max()) + 1

    def temperatures(fitted_on: Tensor) -> Tensor:
        return fit_group_temperatures(logits[fitted_on], labels[fitted_on], groups[fitted_on], num_groups)

    order = torch.randperm(nodes.numel(), generator=torch.Generator().manual_seed(seed))
    halves = nodes[order].tensor_split(2)
    scaled = logits / temperatures(nodes)[groups].unsqueeze(1).to(logits.dtype)
    for fitted_on, applied_to in ((halves[0], halves[1]), (halves[1], halves[0])):
        scaled[applied_to] = logits[applied_to] / temperatures(fitted_on)[groups[applied_to]].unsqueeze(1).to(logits.dtype)
    return scaled.softmax(1)


def one_set(dataset: str, index: int, group: str, train: Tensor) -> dict:
    """One group's recipes on one set: their metrics on the validation and the test nodes."""
    graph = worker_graph(dataset)
    data = graph.data
    y = data.y.view(-1)

    def fit(nodes: Tensor, seed: int = index) -> Trainer:
        method = "sr-gcn" if group.startswith("sr-gcn") else "gcn"
        return Trainer(build(method, data), seed=seed, **SETTINGS[group]).fit(graph, nodes)

    val = data.val_mask.clone()
    val[train] = False
    uniform = uniform_labelled(data, train, index)
    test = torch.zeros(data.num_nodes, dtype=torch.bool)
    test[test_nodes(data, train)] = True
    test &= ~data.val_mask
    test[uniform] = False
    full = fit(train)
    logits = full.logits(graph).cpu()
    probs = {group: logits.softmax(1)}
    if group in TEMPERED:
        fit_nodes, held = split_held_out(train, y, 0.2, seed=index)
        held_logits = fit(fit_nodes).logits(graph)[held].cpu()
        weights = kmm_node_weights(graph, held, iid_sample(data, IID_SIZE, index, exclude=train))
        for recipe, w in ((f"{group} + temperature", None), (f"{group} + weighted temperature", weights)):
            probs[recipe] = (logits / fit_temperature(held_logits, y[held], weights=w)).softmax(1)
        val_nodes = val.nonzero().view(-1)
        probs[f"{group} + validation temperature"] = cross_fitted_scaling(logits, y, val_nodes, index)
        hops = graph.hop_distances(train, MAX_HOPS).cpu().clamp(min=1)
        probs[f"{group} + distance temperature"] = cross_fitted_scaling(logits, y, val_nodes, index, hops - 1)
        probs[f"{group} + uniform temperature"] = (logits / fit_temperature(logits[uniform], y[uniform])).softmax(1)
    if group == "swa":
        posteriors = [full.swag_] + [fit(train, seed).swag_ for seed in (index + 1000, index + 2000)]
        probs["swag"] = posteriors[0].predict_proba(graph.x, graph, DRAWS, seed=index)
        probs["multiswag"] = multiswag_predict_proba(posteriors, graph.x, graph, DRAWS, seed=index)
    record = {"dataset": dataset, "index": index, "group": group}
    for recipe in GROUPS[group]:
        for split, nodes in (("val", val), ("test", test)):
            record.update({f"{recipe}|{split}|{k}": v for k, v in _metrics(probs[recipe].cpu(), y, nodes).items()})
    return record


def _column(log: RunLog, dataset: str, recipe: str, split: str, metric: str, repeats: int) -> np.ndarray:
    """``metric`` of ``recipe`` on sets ``0 .. repeats - 1``, in index order."""
    return np.array([log.records[(dataset, i, GROUP_OF[recipe])][f"{recipe}|{split}|{metric}"]
                     for i in range(repeats)])


def recommended(log: RunLog, datasets: list[str], recipes: list[str], repeats: int) -> str:
    """The rule in the module docstring, on validation nodes, among ``recipes``."""
    def paired_f1(recipe: str, dataset: str) -> float:
        return float((_column(log, dataset, recipe, "val", "micro_f1", repeats)
                      - _column(log, dataset, "gcn", "val", "micro_f1", repeats)).mean())

    keep = [r for r in recipes if all(paired_f1(r, d) >= 0 for d in datasets)]
    return min(keep, key=lambda r: np.mean([_column(log, d, r, "val", "ece", repeats).mean() for d in datasets]))


def table(log: RunLog, datasets: list[str], split: str, recipes: list[str], repeats: int) -> list[str]:
    lines = ["| dataset | recipe | sets | Micro-F1 | vs gcn (paired) | wins | ECE | ECE floor | NLL |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dataset in datasets:
        base = _column(log, dataset, "gcn", split, "micro_f1", repeats)
        for recipe in recipes:
            f1 = _column(log, dataset, recipe, split, "micro_f1", repeats)
            diff = 100 * (f1 - base)
            paired = "" if recipe == "gcn" else paired_difference(diff)
            wins = "" if recipe == "gcn" else f"{int((diff > 0).sum())}/{diff.size}"
            lines.append(f"| {dataset} | {recipe} | {f1.size} | {100 * f1.mean():.1f} | {paired} | {wins} | "
                         f"{_column(log, dataset, recipe, split, 'ece', repeats).mean():.3f} | "
                         f"{_column(log, dataset, recipe, split, 'ece_floor', repeats).mean():.3f} | "
                         f"{_column(log, dataset, recipe, split, 'nll', repeats).mean():.3f} |")
    return lines


def main(argv=None) -> None:
    parser = study_parser("swa_bias", __doc__, repeats=100, workers=min(2, os.cpu_count() or 1))
    parser.add_argument("--datasets", default="cora,pubmed")
    add_seeds_dir_option(parser)
    parser.add_argument("--groups", default=",".join(GROUPS),
                        help=f"comma-separated groups of recipes to run (gcn, the baseline, always runs); "
                             f"default all: {', '.join(GROUPS)}")
    parser.add_argument("--runs", type=Path, default=Path("results/swa_recipe_groups.jsonl"),
                        help="JSONL of finished (set, group) jobs (resumed if present)")
    parser.add_argument("--doc", type=Path, default=Path("docs/swa.md"))
    args = parse_study_args(parser, argv)
    groups = ["gcn"] + [g for g in args.groups.split(",") if g != "gcn"]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"--groups: unknown group(s) {', '.join(map(repr, unknown))}; choose from {', '.join(GROUPS)}.")
    datasets = args.datasets.split(",")
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    try:
        log = RunLog(args.runs, ("dataset", "index", "group"))
    except (ValueError, StudyLockedError) as err:  # records of an earlier swa_bias had no group
        parser.error(f"--runs: {err}")
    jobs = []
    for dataset in datasets:
        data = load_dataset(dataset)
        sets = load_published_splits(published_sets_path(parser, args, dataset), data=data)[:args.repeats]
        jobs += [(dataset, i, g, s) for i, s in enumerate(sets) for g in groups]
    run_pending(one_set, jobs, lambda job: job[:3], log, args)
    # Every group logged for every set, from this call or an earlier one, enters the tables and the rule.
    done = [g for g in GROUPS if all((d, i, g) in log for d in datasets for i in range(args.repeats))]
    recipes = [recipe for g in done for recipe in GROUPS[g]]
    publish(args.doc, f"swa recipes {args.datasets}", [
        f"Command: `python -m benchmarks.swa_bias --datasets {args.datasets} --repeats {args.repeats}`", "",
        "Published localized sets; Micro-F1 in %, paired against `gcn` (± its standard error); ECE with 15",
        "bins and NLL, means over the sets; ECE floor: the ECE a perfectly calibrated model with the",
        f"recipe's confidences scores on the same nodes (`calibrated_ece_floor`, {FLOOR_DRAWS} label draws), below",
        "which no ECE on them can be expected. Recipes and the selection rule: the module docstring.", "",
        "Test nodes (the paper's, less the validation nodes and the uniform sample):", "",
        *table(log, datasets, "test", recipes, args.repeats),
        "", "Validation nodes (the Planetoid validation nodes outside the training set), where the",
        "recipe is chosen:", "", *table(log, datasets, "val", recipes, args.repeats), "",
        f"Chosen on validation nodes by the fixed rule, among the recipes above: "
        f"**{recommended(log, datasets, recipes, args.repeats)}**."], "# SWA under bias\n")


if __name__ == "__main__":
    main()
