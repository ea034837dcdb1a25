"""The study on Ray (``--backend ray``, the optional extra): the same records as the local
engine, nothing lost or done twice when a Ray worker is killed, and one-line refusals."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_main

QUICK = ["--dataset", "cora", "--methods", "gcn,sr-gcn", "--repeats", "2", "--iid-repeats", "1", "--epochs", "15",
         "--workers", "2", "--threads", "1"]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _scores(out: Path) -> dict:
    return {(r["method"], r["split"], r["index"]): (r["micro_f1"], r["macro_f1"], r["loss"]) for r in _records(out)}


def test_a_study_on_local_ray_gives_the_local_engines_records(tmp_path):
    pytest.importorskip("ray")
    run_main("benchmarks.pubmed_bias", *QUICK, "--out", str(tmp_path / "local"))
    run_main("benchmarks.pubmed_bias", *QUICK, "--out", str(tmp_path / "ray"), "--backend", "ray")
    local, on_ray = _scores(tmp_path / "local"), _scores(tmp_path / "ray")
    assert len(local) == 5 and on_ray == local  # 2 + 2 sets, and GCN on 1 IID set


def _ray_task_workers() -> list[int]:
    """Pids of Ray workers running a study job now (Ray titles them by the task's function)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_run_with_threads"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow  # 20 s of Ray start-up and training; the local engine's kill-and-resume test runs by default
def test_a_killed_ray_worker_loses_no_finished_run_and_resume_does_none_twice(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "killed"
    # long enough runs that a worker is still training when the first records are in
    flags = ["--dataset", "cora", "--methods", "sr-gcn", "--repeats", "6", "--iid-repeats", "0", "--epochs", "400",
             "--workers", "2", "--threads", "1", "--out", str(out), "--backend", "ray"]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.pubmed_bias", *flags], cwd=REPO,
                            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log, deadline, killed = out / "results.jsonl", time.time() + 300, None
    while time.time() < deadline and killed is None and proc.poll() is None:
        time.sleep(0.1)
        workers = _ray_task_workers()
        if log.exists() and len(log.read_text().splitlines()) >= 1 and workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert killed is not None, "no Ray worker was running a job after the first record"
    assert proc.returncode == 1 and "a Ray worker was lost" in stderr and "--resume" in stderr, stderr[-2000:]
    before = _records(out)
    assert 1 <= len(before) < 6
    resumed = run_main("benchmarks.pubmed_bias", *flags, "--resume")
    assert f"{len(before)} already in" in resumed.stdout
    after = _records(out)
    keys = [(r["method"], r["split"], r["index"]) for r in after]
    assert len(keys) == len(set(keys)) == 6
    assert after[: len(before)] == before  # the finished runs were kept, not redone


@pytest.mark.parametrize("flags, message", [
    (["--backend", "ray", "--address", "127.0.0.1:1"], "No Ray cluster answers at 127.0.0.1:1"),
    (["--address", "127.0.0.1:6379"], "--address names a Ray cluster: add --backend ray"),
    (["--backend", "ray", "--address", "nonsense"], "is not HOST:PORT"),
])
def test_bad_ray_flags_are_refused_in_one_line(tmp_path, flags, message):
    pytest.importorskip("ray")
    result = run_main("benchmarks.pubmed_bias", *QUICK, "--out", str(tmp_path / "x"), *flags, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_backend_ray_without_the_extra_names_the_install_command(tmp_path):
    # Ray hidden from the import system, as on an install without the extra
    code = ("import sys; sys.modules['ray'] = None; from benchmarks.pubmed_bias import main; "
            f"main({[*QUICK, '--out', str(tmp_path / 'x'), '--backend', 'ray']!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ.copy(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "pip install 'srgnn[ray]'" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
