"""The API reference builds from the docstrings with no warning (the README's docs command, with
warnings as errors), covers every public module, and lists the study CLI's options."""
import pkgutil
import subprocess
import sys

import pytest

import srgnn
from tests.helpers import REPO


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("reference")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             "-d", str(out / "doctrees"), "docs", str(out / "html")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    return result, out / "html"


def test_the_reference_builds_without_a_warning(built):
    result, _ = built
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr[-3000:]


def test_every_public_module_has_a_page(built):
    _, html = built
    public = [m.name for m in pkgutil.walk_packages(srgnn.__path__, "srgnn.")
              if not any(part.startswith("_") for part in m.name.split("."))]
    missing = [name for name in ["srgnn", *public] if not (html / "generated" / f"{name}.html").is_file()]
    assert len(public) > 40 and not missing, missing
    trainer = (html / "generated" / "srgnn.training.trainer.html").read_text()
    assert "Trainer" in trainer and "fit" in trainer


def test_the_study_cli_options_come_from_its_parser(built):
    _, html = built
    page = (html / "cli.html").read_text()
    for flag in ("--dataset", "--graph", "--methods", "--backend", "--resume"):
        assert flag in page, flag
