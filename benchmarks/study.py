"""What the bias studies share: method names, model construction, test nodes, one run,
and a results log that survives interruption (append-only JSONL, fsync'd per run)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch_geometric.data import Data

from benchmarks.engine import per_process
from srgnn import ShiftRobust, Trainer
from srgnn.batched import LockstepTrainer, ReplicaTrainer
from srgnn.models import APPNP, DGI, GAT, GCN, MLP, SGC, GraphSAGE
from srgnn.models.pyg import as_node_classifier
from srgnn.batched import supports
from srgnn.graph import Graph
from srgnn.recipes import (Recommended, SelfTraining, class_mix, correct_and_smooth, propagate_labels,
                           shift_to_class_mix)
from srgnn.recipes.recommended import SELF_TRAINING as RECIPE_SELF_TRAINING
from srgnn.sampling import iid_sample
from srgnn.data import load_dataset, load_graph
from srgnn.training.trainer import classification_scores

BASES = {"gcn": GCN, "gat": GAT, "sage": GraphSAGE, "sgc": SGC, "appnp": APPNP, "mlp": MLP, "dgi": DGI}
#: Beyond SR-GNN's penalties (``srgnn.recipes``): label propagation, and on a base model ReNode's
#: weights, self-training (``st-``) and Correct and Smooth (``cs-``, also on a self-trained one).
#: The third round's methods read a small labelled sample the user states (``stated_sample``):
#: ``with-`` adds its labels to the training set, ``mix-`` shifts the predictions to its class mix.
STATED = ("with-", "mix-")
RECIPES = ["lp", "renode-gcn", *(f"{p}{b}" for p in ("cs-", "st-", "cs-st-") for b in ("gcn", "appnp")),
           "st-sr-appnp", "st2-appnp", "stp-appnp", "recommended",
           "with-gcn", "with-appnp", "mix-recommended", "with-recommended", "mix-with-recommended"]
METHODS = [*BASES, *(f"sr-{b}" for b in BASES), "dann", *RECIPES]
#: Self-training's settings in the studies (``SelfTraining``) by prefix, each fixed before its
#: runs: ``st-`` the first round of docs/recipes.md, whose settings the recommended recipe took
#: (one definition: ``srgnn.recipes.recommended.SELF_TRAINING``); ``st2-`` (two rounds) and
#: ``stp-`` (pseudo-labels shared as the predicted classes) its second.
SELF_TRAINING = {"st-": RECIPE_SELF_TRAINING, "st2-": {**RECIPE_SELF_TRAINING, "rounds": 2},
                 "stp-": {**RECIPE_SELF_TRAINING, "balance": "predicted"}}
#: Prefixes that wrap a method: shift-robust training, ReNode weights, self-training, C&S, the
#: stated sample.
PREFIXES = ("sr-", "renode-", *SELF_TRAINING, "cs-", *STATED)
PUBLISHED = {  # Micro-F1 (%) of the SR-GNN paper, Table 2, on the authors' sets
    "cora": {"gcn": 68.3, "appnp": 71.2, "sr-appnp": 74.0},
    "citeseer": {"gcn": 62.1, "appnp": 63.7, "sr-appnp": 67.2},
    "pubmed": {"gcn": 59.4, "appnp": 65.8, "sr-appnp": 70.5},
}


def base_of(method: str) -> str | None:
    """The model under a method's prefixes (``PREFIXES``): ``sr-gcn`` -> ``gcn``, ``cs-st-appnp``
    -> ``appnp``; ``dann`` -> ``gcn`` (DANN is a GCN with a domain discriminator); ``None`` for
    a model itself and for label propagation."""
    if method == "dann":
        return "gcn"
    prefix = next((p for p in PREFIXES if method.startswith(p)), None)
    if prefix is None:
        return None
    inner = method[len(prefix):]
    return base_of(inner) or inner


def has_iid_reference(method: str) -> bool:
    """Whether the study trains ``method`` on IID sets too: a model itself (built-in or yours)."""
    return (method in BASES or is_plugin(method)) and base_of(method) is None


def is_plugin(spec: str) -> bool:
    """Whether a method or penalty name is ``package.module:name`` (your own), not a built-in."""
    return ":" in spec


def load_plugin(spec: str) -> Callable:
    """The callable ``package.module:name`` names: a model factory ``f(data) -> NodeClassifier``
    for ``--methods`` (``sr-package.module:name`` for its shift-robust variant), or a penalty
    ``d(h_train, h_iid) -> scalar`` for ``--regularizer``: a function, or an ``nn.Module`` class
    (a penalty with parameters, built afresh for each model). The module must be importable in
    the study's worker processes too (on ``PYTHONPATH``, or a package in the current directory)."""
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{spec!r} names nothing importable ({type(err).__name__}: {err}); give "
                         "package.module:name of a module on the Python path") from None
    if not callable(found):
        raise ValueError(f"{spec!r} is a {type(found).__name__}, not a callable")
    return found


def build(method: str, data, regularizer: str = "cmd", lam: float = 1.0, lam_linear: float = 0.1,
          dgi_embeddings: Path | None = None, iid: str = "uniform"):
    """An untrained model for a method name: a built-in (``BASES``), ``dann``, or a plug-in
    ``package.module:factory`` (``load_plugin``), called as ``factory(data)``; ``sr-`` before any of
    them wraps it in ``ShiftRobust``. ``regularizer`` is ``cmd``, ``mmd`` or a plug-in penalty. SR variants use ``regularizer`` on the hidden
    layer with weight ``lam``; the linear models (APPNP, SGC, DGI) add KMM instance weights and
    use ``lam_linear`` (0.1: first read off Cora's test nodes, then checked on validation
    nodes, where KMM + 0.1 CMD beat KMM alone for SGC and DGI on PubMed and CiteSeer;
    ``benchmarks.select_on_validation``, docs/reproduction.md). DGI and SR-DGI share their pretraining
    through ``dgi_embeddings`` (``DGI``'s ``embeddings_file``) when given. ``renode-`` weighs a
    base model's cross-entropy by ReNode; ``cs-`` and ``st-`` act around the training
    (``method_logits``), so the model built is the one they wrap."""
    method = trained_method(method)
    if method == "dann":
        return ShiftRobust(GCN(data.num_features, data.num_classes), "dann", lam=0.1)
    name = base_of(method) or method
    if is_plugin(name):
        model = as_node_classifier(load_plugin(name)(data), f"--methods {name} (its factory's return value)")
    else:
        extra = {"embeddings_file": dgi_embeddings} if name == "dgi" and dgi_embeddings is not None else {}
        model = BASES[name](data.num_features, data.num_classes, **extra)
    if method.startswith("renode-"):
        return ShiftRobust(model, None, instance_weights="renode")
    if not method.startswith("sr-"):
        return model
    penalty = load_plugin(regularizer) if is_plugin(regularizer) else regularizer
    if isinstance(penalty, type) and issubclass(penalty, torch.nn.Module):
        penalty = penalty()  # a penalty with parameters: each model trains its own
    return ShiftRobust(model, penalty, lam_linear if model.linear else lam, iid=iid)


#: Graphs scored on the 1,000 Planetoid test nodes (the paper's protocol); Cora on every
#: node outside the training set.
PLANETOID_TEST_SPLIT = ("citeseer", "pubmed")
#: Validation nodes of a graph without the paper's protocol: drawn uniformly outside the
#: training set, left out of the test nodes, and never trained on.
VALIDATION_SIZE = 500
VALIDATION_SEED = 70_001


def validation_nodes(data, train: torch.Tensor) -> torch.Tensor | None:
    """Nodes to choose settings on, outside ``train`` and the test nodes: the Planetoid
    validation nodes outside ``train`` for CiteSeer and PubMed; none for Cora, whose test nodes
    are every other node (the paper's protocol); on any other graph ``VALIDATION_SIZE`` nodes
    drawn uniformly outside ``train``, the same for the same ``train``."""
    name = getattr(data, "name", None)
    if name in PLANETOID_TEST_SPLIT:
        val = data.val_mask.nonzero().view(-1)
        return val[~torch.isin(val, train)]
    if name == "cora":
        return None
    return iid_sample(data, min(VALIDATION_SIZE, (data.num_nodes - train.numel()) // 2), seed=VALIDATION_SEED,
                      exclude=train)


def test_nodes(data, train: torch.Tensor, val: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's protocol: every non-training node on Cora, the 1,000 Planetoid test nodes on
    CiteSeer and PubMed; on any other graph every node outside the training set and the
    validation nodes (``val``, default ``validation_nodes(data, train)``)."""
    if getattr(data, "name", None) in PLANETOID_TEST_SPLIT:
        return data.test_mask
    mask = torch.ones(data.num_nodes, dtype=torch.bool)
    mask[train] = False
    val = validation_nodes(data, train) if val is None else val
    if val is not None:
        mask[val] = False
    return mask


def run_scores(logits: torch.Tensor, data, train: torch.Tensor, stated: torch.Tensor | None = None) -> dict:
    """A run's record scores from its logits ``[N, C]``: Micro-F1, macro-F1 and loss on the test
    nodes, and the Micro-F1 on its training nodes (``train_micro_f1``: a collapsed fit shows
    there) and on the validation nodes (``val_micro_f1``, ``None`` where there are none). The
    ``stated`` nodes, whose labels the method read, are left out of both."""
    val = validation_nodes(data, train)  # drawn once, for both node sets
    test = test_nodes(data, train, val)
    if stated is not None:
        test = test.clone()
        test[stated] = False
        val = val[~torch.isin(val, stated)] if val is not None else None
    return {**classification_scores(logits, data, test),
            "train_micro_f1": classification_scores(logits, data, train)["micro_f1"],
            "val_micro_f1": None if val is None else classification_scores(logits, data, val)["micro_f1"]}


def load_source(source: tuple[str, str]) -> Data:
    """A study's graph from ``("dataset", name)``, a registered graph, or ``("graph", path)``, a
    ``torch.save``'d PyG ``Data`` loaded safely (``srgnn.data.load_graph``), named by its path
    and given ``num_classes`` from its labels where it has none."""
    kind, value = source
    if kind == "dataset":
        return load_dataset(value)
    data = load_graph(value, "--graph")
    data.name = str(value)
    if getattr(data, "num_classes", None) is None:
        data.num_classes = int(data.y.max()) + 1
    return data


#: Size of the uniform labelled sample that the label-reading recipes and estimators may read.
UNIFORM_LABELLED = 500


def uniform_labelled(data, train: torch.Tensor, seed: int, size: int = UNIFORM_LABELLED) -> torch.Tensor:
    """``[size]`` nodes drawn uniformly from those outside ``train`` and the Planetoid validation
    nodes: the labels a user buys by labelling a uniform sample of the unlabelled nodes. The
    validation nodes a published set leaves are not such a sample: 35% of a published Cora set's
    nodes and 55% of a CiteSeer set's are validation nodes (means over the first 20 sets; none
    is a test node), the ones near its seeds, so those left lie farther from it than the test
    nodes (within two hops of it: 22% against 31% on CiteSeer)."""
    exclude = torch.cat([train.view(-1), data.val_mask.nonzero().view(-1)])
    return iid_sample(data, size, seed=30_000 + seed, exclude=exclude)


#: The stated sample: nodes drawn uniformly from the graph and labelled, ``STATED_SIZE`` of them.
STATED_SIZE = 50
STATED_SEED = 90_001


def stated_sample(data, train: torch.Tensor) -> torch.Tensor:
    """The ``[STATED_SIZE]`` nodes a user states beside the biased set ``train``, drawn uniformly
    outside it and the test nodes: the first of the validation nodes in a seeded order; on Cora,
    which has none, nodes outside ``train``, which the methods that read them leave out of their
    test nodes (``run_scores``)."""
    val = validation_nodes(data, train)
    if val is None:
        return iid_sample(data, STATED_SIZE, seed=STATED_SEED, exclude=train)
    return val[torch.randperm(val.numel(), generator=torch.Generator().manual_seed(STATED_SEED))[:STATED_SIZE]]


def given_labels(method: str, data, train: torch.Tensor) -> torch.Tensor:
    """The labelled nodes ``method`` trains on: ``train``, with the stated sample under ``with-``."""
    while method.startswith("mix-"):
        method = method[4:]
    return torch.cat([train, stated_sample(data, train)]) if method.startswith("with-") else train


def shifted_to_stated_mix(logits: torch.Tensor, method: str, data, train: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[N, C]`` of ``method`` trained on ``train``, shifted from the class mix of its
    given labels to the stated sample's (``srgnn.recipes.shift_to_class_mix``, both smoothed by 1)."""
    y, classes = data.y.view(-1), logits.size(1)
    return shift_to_class_mix(logits, class_mix(y[given_labels(method, data, train)], classes),
                              class_mix(y[stated_sample(data, train)], classes))


def worker_graph(source: str | tuple[str, str]) -> Graph:
    """The ``Graph`` of ``source`` (a dataset name, or ``load_source``'s pair), built once per
    process (``benchmarks.engine.per_process``)."""
    key = ("dataset", source) if isinstance(source, str) else tuple(source)
    return per_process(("graph",) + key, lambda: Graph.from_data(load_source(key)))


def split_held_out(train: torch.Tensor, y: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fit, held)``: ``share`` of each class's labelled nodes held out, at least one, at random."""
    generator = torch.Generator().manual_seed(seed)
    fit, held = [], []
    for c in y[train].unique():
        nodes = train[y[train] == c]
        nodes = nodes[torch.randperm(nodes.numel(), generator=generator)]
        cut = max(1, round(share * nodes.numel()))
        held.append(nodes[:cut])
        fit.append(nodes[cut:])
    return torch.cat(fit), torch.cat(held)


def fitted_logits(method: str, graph: Graph, train: torch.Tensor, seed: int, *, regularizer: str = "cmd",
                  lam: float = 1.0, lam_linear: float = 0.1, epochs: int = 200, device: str = "cpu",
                  dgi_embeddings: Path | None = None, iid: str = "uniform") -> torch.Tensor:
    """Logits ``[N, C]`` of one method trained on one training set of ``graph``
    (``Graph.from_data``, shared by every run on it): ``method_logits`` with its model built by
    ``build``."""
    def make() -> torch.nn.Module:
        return build(method, graph.data, regularizer, lam, lam_linear, dgi_embeddings, iid)

    return method_logits(method, graph, train, seed, make, epochs=epochs, device=device)


def read_sample(method: str, data, train: torch.Tensor) -> torch.Tensor | None:
    """The stated sample whose labels ``method`` reads (``with-``, ``mix-``), else ``None``."""
    return stated_sample(data, train) if method.startswith(STATED) else None


def run_one(method: str, graph: Graph, train: torch.Tensor, seed: int, **options) -> dict:
    """Train one method on one training set of ``graph`` (``fitted_logits``, with its
    ``options``) and score it on the test nodes."""
    return run_scores(fitted_logits(method, graph, train, seed, **options), graph.data, train,
                      read_sample(method, graph.data, train))


def run_with_mix(method: str, graph: Graph, train: torch.Tensor, seed: int, **options) -> list[dict]:
    """``run_one`` of ``method`` and of ``mix-method`` from one fit: the second's logits are the
    first's shifted to the stated sample's class mix."""
    data = graph.data
    logits = fitted_logits(method, graph, train, seed, **options)
    return [run_scores(logits, data, train, read_sample(method, data, train)),
            run_scores(shifted_to_stated_mix(logits, method, data, train), data, train, stated_sample(data, train))]


def trained_method(method: str) -> str:
    """The method whose model is trained, under C&S, self-training and the stated sample:
    ``cs-st-appnp`` -> ``appnp``."""
    wrappers = ("cs-", *SELF_TRAINING, *STATED)
    while method.startswith(wrappers):
        method = method[len(next(w for w in wrappers if method.startswith(w))):]
    return method


def as_logits(scores: torch.Tensor) -> torch.Tensor:
    """Logits ``[N, C]`` whose softmax is ``scores`` ``[N, C]`` (non-negative) normalized per row."""
    return scores.clamp_min(1e-9).log()


def method_logits(method: str, graph: Graph, train: torch.Tensor, seed: int, make: Callable[[], torch.nn.Module], *,
                  epochs: int, device: str) -> torch.Tensor:
    """Logits ``[N, C]`` of ``method`` trained on ``train``: label propagation (``lp``), the
    recommended recipe (``recommended``, ``srgnn.recipes.Recommended``), what the rest of the
    name gives trained with the stated sample's labels too (``with-``) or shifted to its class
    mix (``mix-``), C&S on it (``cs-``), self-training (``st-``, ``st2-``, ``stp-``:
    ``SELF_TRAINING``) or one ``Trainer`` fit of ``make()``."""
    if method == "lp":
        return as_logits(propagate_labels(graph, train))
    if method == "recommended":
        return Recommended(epochs=epochs, seed=seed, device=device).fit(graph, train).logits(graph)
    if method.startswith("with-"):
        return method_logits(method[5:], graph, given_labels(method, graph.data, train), seed, make, epochs=epochs,
                             device=device)
    if method.startswith("mix-"):
        logits = method_logits(method[4:], graph, train, seed, make, epochs=epochs, device=device)
        return shifted_to_stated_mix(logits, method[4:], graph.data, train)
    if method.startswith("cs-"):
        logits = method_logits(method[3:], graph, train, seed, make, epochs=epochs, device=device)
        return as_logits(correct_and_smooth(logits.softmax(-1), graph, train))
    options = {"epochs": epochs, "seed": seed, "device": device}
    prefix = next((p for p in SELF_TRAINING if method.startswith(p)), None)
    if prefix is not None:
        return SelfTraining(make(), **SELF_TRAINING[prefix], **options).fit(graph, train).logits(graph)
    return Trainer(make(), **options).fit(graph, train).logits(graph)


def pretrain_dgi(data, path: Path, device: str = "cpu") -> None:
    """Pretrain DGI on ``data`` into ``path`` (``DGI``'s ``embeddings_file``), unless the file
    already holds these embeddings; the runs of ``run_one`` then load them."""
    model = build("dgi", data, dgi_embeddings=path).to(device)
    graph = Graph.from_data(data, device)
    model.node_features(graph.x, graph)


def batchable(method: str, data) -> bool:
    """Whether ``run_many`` can train this method's replicas as one job."""
    if method in ("lp", "recommended") or method != trained_method(method):
        return False
    return supports(build(method, data))


def run_many(method: str, graph: Graph, sets: list[torch.Tensor], seeds: list[int], *, regularizer: str = "cmd",
             lam: float = 1.0, lam_linear: float = 0.1, epochs: int = 200, device: str = "cpu",
             dgi_embeddings: Path | None = None, iid: str = "uniform") -> list[dict]:
    """``run_one`` for several training sets at once, as one replica-batched job."""
    trainer = ReplicaTrainer(lambda: build(method, graph.data, regularizer, lam, lam_linear, dgi_embeddings, iid),
                             epochs=epochs, device=device)
    logits = trainer.fit(graph, sets, seeds).logits(graph)
    return [run_scores(each, graph.data, train) for each, train in zip(logits, sets)]


#: Runs of one set index that share a seed and the same whole-graph masks (APPNP on the
#: biased set and on the IID set, SR-APPNP on the biased set): ``run_lockstep`` trains them as
#: one job.
LOCKSTEP = (("appnp", "biased"), ("appnp", "iid"), ("sr-appnp", "biased"))


def run_lockstep(methods: list[str], graph: Graph, sets: list[torch.Tensor], seed: int, *, regularizer: str = "cmd",
                 lam: float = 1.0, lam_linear: float = 0.1, epochs: int = 200, device: str = "cpu",
                 dgi_embeddings: Path | None = None, iid: str = "uniform") -> list[dict]:
    """``run_one`` of ``methods[r]`` on ``sets[r]``, all with ``seed``, as one ``LockstepTrainer``
    job (APPNP variants); the same scores to float tolerance."""
    models = [build(method, graph.data, regularizer, lam, lam_linear, dgi_embeddings, iid) for method in methods]
    trainer = LockstepTrainer(models, epochs=epochs, seed=seed, device=device)
    logits = trainer.fit(graph, sets).logits(graph)
    return [run_scores(each, graph.data, train) for each, train in zip(logits, sets)]


def train_plain_pyg_gcn(data, train: torch.Tensor, epochs: int = 200) -> float:
    """The baseline users would write: two ``GCNConv`` (hidden 32), dense input, ``F.dropout``,
    Adam at the paper's settings. Returns seconds per epoch."""
    import time

    import torch.nn.functional as F
    from torch_geometric.nn import GCNConv

    conv1, conv2 = GCNConv(data.num_features, 32, cached=True), GCNConv(32, data.num_classes, cached=True)
    optimizer = torch.optim.Adam([*conv1.parameters(), *conv2.parameters()], lr=0.01, weight_decay=5e-4)
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        h = F.relu(conv1(F.dropout(data.x, 0.5, True), data.edge_index))
        out = conv2(F.dropout(h, 0.5, True), data.edge_index)
        F.cross_entropy(out[train], data.y[train]).backward()
        optimizer.step()
    return (time.perf_counter() - start) / epochs


def write_section(doc: Path, name: str, text: str, title: str) -> None:
    """Replace the ``<!-- name -->`` ... ``<!-- /name -->`` section of ``doc``, or append it
    (to a new doc starting with ``title``), so studies that share a doc keep each other's sections."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    current = doc.read_text() if doc.exists() else title
    section = f"{begin}\n{text}\n{end}"
    if begin in current and end in current:
        current = current[: current.index(begin)] + section + current[current.index(end) + len(end):]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(current)

