"""The ogbn-arxiv protocol of the SR-GNN authors' large-graph code (``main_gnn_large.py``),
with one correction: GCN and SR-GCN on PPR-S training sets at label ratios 1% and 5%.

    python -m benchmarks.arxiv_bias [--root DIR] [--ratios 0.01,0.05] [--repeats 10] [--out results/arxiv_bias]
                                    [--workers 1] [--threads N]

- Sets: ``srgnn.sampling.PushSampler`` (teleport 0.1, tolerance 5e-5, top 200 PPR neighbours)
  seeded from OGB's train split, quota ``floor(ratio * class size)`` per class; set r is drawn
  with seed r.
- Models: GCN, hidden 256, dropout 0.5, 100 epochs, Adam at lr 0.01 and weight decay 5e-4.
  SR-GCN adds KMM weights on push-approximated PPR rows (``kmm_ppr="push"``) and CMD at
  lambda 0.1, against a uniform unlabelled IID sample (label-free).
- Selection: the weights of best validation accuracy, checked every 10 epochs.
- Evaluation, the correction: the authors' training sets reach outside OGB's train split (their
  PPR neighbours are any same-class nodes, 12-15% of them in OGB's test split), and their code
  scores those training nodes as test nodes. Here the test nodes are OGB's test split minus the
  training nodes, restricted to the classes present in training; the validation nodes likewise.

Data: ``srgnn.data.load_dataset("ogbn-arxiv", root)``, ogb's own download folder (or
``benchmarks.ogb_layout``'s synthetic graph in its layout). Each run (method, ratio, set) is a
job of ``benchmarks.runlog.run_logged``, in ``--workers`` processes of ``--threads`` torch threads
each, saved to ``OUT/results.jsonl`` as it finishes; rerunning the same command resumes.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import markdown_table
from benchmarks.engine import per_process
from benchmarks.runlog import RunLog
from benchmarks.skeleton import parse_study_args, run_pending, study_parser
from srgnn.cli import output_dir
from srgnn import ShiftRobust, Trainer
from srgnn.data import DataNotFoundError, load_dataset
from srgnn.graph import Graph
from srgnn.models import GCN
from srgnn.sampling import PushSampler
from srgnn.training.trainer import resolve_device

METHODS = ("gcn", "sr-gcn")
PROTOCOL = {"hidden_channels": 256, "dropout": 0.5, "epochs": 100, "lr": 0.01, "weight_decay": 5e-4,
            "lam": 0.1, "validate_every": 10}


def build(method: str, data, protocol: dict):
    model = GCN(data.num_features, data.num_classes, hidden_channels=protocol["hidden_channels"],
                dropout=protocol["dropout"])
    if method == "gcn":
        return model
    return ShiftRobust(model, "cmd", lam=protocol["lam"], instance_weights="kmm", kmm_ppr="push")


def scored_nodes(mask: torch.Tensor, train: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mask``'s nodes outside ``train``, of the classes ``train`` holds."""
    keep = mask.clone()
    keep[train] = False
    keep &= torch.isin(y, torch.unique(y[train]))
    return keep.nonzero().view(-1)


def one_run(root: Path | None, device: str, method: str, ratio: float, index: int, protocol: dict) -> dict:
    """Train ``method`` on PPR-S set ``index`` at ``ratio`` and score it; the graph is loaded once
    per process."""
    data, graph = per_process(("ogbn-arxiv", str(root), device), lambda: (
        (data := load_dataset("ogbn-arxiv", root=root)), Graph.from_data(data, device)))
    y = data.y.view(-1)
    # its out-edge index is built once per graph and ratio
    sampler = per_process(("ogbn-arxiv sampler", str(root), ratio), lambda: PushSampler(data, ratio))
    train = sampler.sample(seed=index)
    val, test = scored_nodes(data.val_mask, train, y), scored_nodes(data.test_mask, train, y)
    start = time.perf_counter()
    trainer = Trainer(build(method, data, protocol), epochs=protocol["epochs"], lr=protocol["lr"],
                      weight_decay=protocol["weight_decay"], patience=protocol["epochs"],
                      validate_every=protocol["validate_every"], seed=index, device=device)
    scores = trainer.fit(graph, train, val_idx=val).evaluate(graph, test)
    seconds = time.perf_counter() - start
    print(f"ratio {ratio} set {index} {method}: Micro-F1 {100 * scores['micro_f1']:.1f} ({seconds:.0f} s)", flush=True)
    return {"method": method, "ratio": ratio, "index": index, **scores, "train_nodes": train.numel(),
            "outside_train_split": int((~data.train_mask[train]).sum()), "test_nodes": test.numel(),
            "classes": len(sampler.quota), "seconds": seconds, "threads": torch.get_num_threads()}


def main(argv=None) -> list[list[str]]:
    parser = study_parser("arxiv_bias", __doc__, repeats=10, workers=1)
    parser.add_argument("--root", type=Path, default=None, help="folder holding ogbn_arxiv/ (default: $SRGNN_DATA)")
    parser.add_argument("--ratios", default="0.01,0.05")
    parser.add_argument("--epochs", type=int, default=PROTOCOL["epochs"], help="100, the protocol's")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--out", type=output_dir, default=Path("results/arxiv_bias"))
    args = parse_study_args(parser, argv, "epochs")
    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        parser.error(f"--ratios {args.ratios!r}: give comma-separated label ratios, e.g. 0.01,0.05")
    try:
        resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device {args.device}: {err}")
    protocol = {**PROTOCOL, "epochs": args.epochs}
    try:
        data = load_dataset("ogbn-arxiv", root=args.root)
        for ratio in ratios:  # refuses a ratio that leaves no class, before any run
            PushSampler(data, ratio)
    except (DataNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps({"ratios": ratios, "repeats": args.repeats, **protocol}, indent=2))
    log = RunLog(args.out / "results.jsonl", ("method", "ratio", "index"))
    jobs = [(args.root, args.device, method, ratio, index, protocol) for ratio in ratios
            for index in range(args.repeats) for method in METHODS]
    run_pending(one_run, jobs, lambda job: job[2:5], log, args)
    rows = [["ratio", "training nodes", "outside OGB train", "GCN", "SR-GCN", "SR-GCN wins"]]
    for ratio in ratios:
        gcn = log.scores(method="gcn", ratio=ratio)[: args.repeats]
        sr = log.scores(method="sr-gcn", ratio=ratio)[: args.repeats]
        runs = [r for r in log.records.values() if r["ratio"] == ratio and r["method"] == "gcn"]
        share = np.mean([r["outside_train_split"] / r["train_nodes"] for r in runs])
        rows.append([f"{ratio:g}", f"{np.mean([r['train_nodes'] for r in runs]):.0f}", f"{100 * share:.1f}%",
                     f"{gcn.mean():.1f} ± {gcn.std():.1f}", f"{sr.mean():.1f} ± {sr.std():.1f}",
                     f"{int((sr > gcn).sum())}/{len(sr)}"])
    print(f"\n{data.name}: Micro-F1 (%) on OGB's test split minus the training nodes, mean ± std over "
          f"{args.repeats} PPR-S sets")
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
