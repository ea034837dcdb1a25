"""Every Python example in the README runs."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("code", EXAMPLES)
def test_readme_example_runs(code, capsys):
    exec(compile(code, str(README), "exec"), {})
    assert "micro-F1" in capsys.readouterr().out
