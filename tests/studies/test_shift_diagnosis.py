"""The diagnosis of shift-robust training on new graphs: its log resumes, and its rule chooses
as docs/graphs.md declares."""
from __future__ import annotations

import json

from benchmarks import shift_diagnosis
from benchmarks.shift_diagnosis import HOMOPHILOUS, choose


def test_runs_resume_from_the_log(tmp_path, capsys):
    flags = ["--dataset", "citeseer", "--sets", "1", "--variants", "gcn", "--out", str(tmp_path)]
    shift_diagnosis.main(flags)
    shift_diagnosis.main(flags + ["--variants", "gcn,appnp"])  # gcn on set 0 is in the log already
    rows = [json.loads(line) for line in (tmp_path / "citeseer.jsonl").read_text().splitlines()]
    assert [(r["index"], r["variant"]) for r in rows] == [(0, "gcn"), (0, "appnp")]
    assert all(0 <= r["val_micro_f1"] <= 1 and r["train_micro_f1"] > 0.5 for r in rows)


def _rows(scores: dict[str, tuple[float, float]], graphs=(*HOMOPHILOUS, "actor", "citeseer", "pubmed")) -> list[dict]:
    """Three sets per graph; ``scores``: variant -> (training, validation) Micro-F1 on every set,
    with the validation score moved by the set's index so that paired differences have a spread."""
    return [{"dataset": g, "index": i, "variant": v, "train_micro_f1": train, "val_micro_f1": val + 0.01 * i}
            for g in graphs for i in range(3) for v, (train, val) in scores.items()]


def test_the_rule_drops_collapsed_candidates_and_breaks_ties_toward_the_smaller_change():
    scores = {"gcn": (1.0, 0.70), "sr-gcn": (0.2, 0.2), "sr-gcn-pull4": (0.95, 0.72),
              "sr-gcn-pull1": (0.97, 0.724), "sr-gcn-scaled": (0.5, 0.9),
              "appnp": (1.0, 0.7), "sr-appnp": (1.0, 0.6), "sr-appnp-pull4": (1.0, 0.6),
              "sr-appnp-pull1": (1.0, 0.6), "sr-appnp-scaled": (1.0, 0.6)}
    lines = choose(_rows(scores))
    assert any(line.startswith("sr-gcn: ") and "OUT" in line for line in lines)  # C0 collapsed
    assert any(line.startswith("sr-gcn-scaled: ") and "OUT" in line for line in lines)  # 50 points below
    # pull1 gains 2.4 points and pull4 2.0: within 0.5, so the smaller change (pull4) is chosen
    assert "gcn: chosen sr-gcn-pull4, then sr-gcn-pull1" in lines
    # every SR-APPNP candidate loses 10 points on Actor, beyond one standard error: none passes
    assert any(line.startswith("sr-appnp-pull1: ") and "OUT (Actor -10.0" in line for line in lines)
    assert "appnp: no candidate passes the rule" in lines
