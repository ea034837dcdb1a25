"""docs/your-graph.md runs: its code blocks, in order, in one session, in a fresh folder, on Amazon
Photo saved as a user's own graph file."""
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "your-graph.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


@pytest.mark.slow  # 50 s, the default suite's largest; the README's examples run by default
def test_the_guide_runs_end_to_end_on_a_saved_graph(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    session: dict = {}
    for number, code in enumerate(BLOCKS):
        exec(compile(code, f"{GUIDE}, block {number}", "exec"), session)
    out = capsys.readouterr().out
    assert len(BLOCKS) == 5 and (tmp_path / "photo.pt").is_file()
    for line in ("7650 nodes", "hidden-layer shift (trained GCN): above", "GCN: micro-F1", "recommended: micro-F1",
                 "estimated accuracy: label-free", "GCN with 40 suggested labels", "GCN with 40 random labels"):
        assert line in out, line
    assert plt.imread(tmp_path / "bias.png")[..., :3].std() > 0.05
