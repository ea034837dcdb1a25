import gzip
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from srgnn.data import ChecksumError, DataNotFoundError, _exclusive, load_dataset
from srgnn.synthetic import synthetic_graph
from tests.helpers import DATA_ROOT, PLANETOID


@pytest.mark.parametrize("name,nodes,edges,classes,features", [
    ("Cora", 2708, 10556, 7, 1433),
    ("citeseer", 3327, 9104, 6, 3703),
    ("PUBMED", 19717, 88648, 3, 500),
])
def test_planetoid_counts(name, nodes, edges, classes, features):
    data = load_dataset(name)
    assert (data.num_nodes, data.edge_index.size(1), data.num_classes) == (nodes, edges, classes)
    assert data.x.shape == (nodes, features)
    assert data.is_undirected()
    assert int(data.test_mask.sum()) == 1000 and int(data.val_mask.sum()) == 500


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="Unknown dataset 'coraa'.*cora"):
        load_dataset("coraa")


def test_missing_files_offline_names_dirs_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("torch_geometric.data.download_url", offline)
    with pytest.raises(DataNotFoundError, match="SRGNN_DATA") as err:
        load_dataset("cora", root=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)


def _copy_cora(tmp_path):
    raw = tmp_path / "data" / "Cora" / "raw"
    shutil.copytree(PLANETOID / "Cora" / "raw", raw)
    return raw


def test_checksum_mismatch_refuses_before_unpickling(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    raw = _copy_cora(tmp_path)
    (raw / "ind.cora.x").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    unpickled = []
    monkeypatch.setattr("pickle.load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(ChecksumError, match="ind.cora.x.*NOT unpickled"):
        load_dataset("cora", root=tmp_path / "data")
    assert not unpickled


def test_checksum_opt_out_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    _copy_cora(tmp_path)
    with pytest.warns(UserWarning, match="not verified"):
        data = load_dataset("cora", root=tmp_path / "data", verify_checksums=False)
    assert data.num_nodes == 2708


def test_shared_dir_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    raw = _copy_cora(tmp_path)
    load_dataset("cora", root=tmp_path / "data")
    assert not (raw.parent / "processed").exists()
    assert (tmp_path / "cache" / "planetoid" / "Cora" / "processed").is_dir()


def test_nan_features_are_rejected_at_the_public_boundary(cora):
    from srgnn import Trainer
    from srgnn.models import GCN
    from srgnn.sampling import LocalizedSampler

    bad = cora.clone()
    bad.x = bad.x.clone()
    bad.x[3, 5] = float("nan")
    LocalizedSampler(bad)  # the sampler reads the graph and labels alone
    with pytest.raises(ValueError, match="NaN or infinite values in 1 node"):
        Trainer(GCN(1433, 7)).fit(bad, torch.arange(0, 140))
    # Each fit on a Data checks it again: an in-place edit after a passing fit is caught.
    edited = cora.clone()
    edited.x = edited.x.clone()
    Trainer(GCN(1433, 7), epochs=1).fit(edited, torch.arange(0, 140))
    edited.x[3, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        Trainer(GCN(1433, 7), epochs=1).fit(edited, torch.arange(0, 140))


def _write_csv_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for row in np.atleast_2d(rows):
            f.write(",".join(str(v) for v in np.atleast_1d(row)) + "\n")


def test_ogbn_arxiv_from_ogb_on_disk_format(tmp_path, monkeypatch):
    """A tiny ogbn-arxiv written in ogb's own layout loads through the ogb package."""
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    n, e = 30, 60
    base = tmp_path / "ogb" / "ogbn_arxiv"
    edges = rng.integers(0, n, (e, 2))
    _write_csv_gz(base / "raw" / "edge.csv.gz", edges)
    _write_csv_gz(base / "raw" / "node-feat.csv.gz", rng.standard_normal((n, 8)).round(4))
    _write_csv_gz(base / "raw" / "node-label.csv.gz", rng.integers(0, 40, (n, 1)))
    _write_csv_gz(base / "raw" / "node_year.csv.gz", rng.integers(2000, 2020, (n, 1)))
    _write_csv_gz(base / "raw" / "num-node-list.csv.gz", [[n]])
    _write_csv_gz(base / "raw" / "num-edge-list.csv.gz", [[e]])
    perm = rng.permutation(n)
    for part, idx in (("train", perm[:20]), ("valid", perm[20:25]), ("test", perm[25:])):
        _write_csv_gz(base / "split" / "time" / f"{part}.csv.gz", idx[:, None])
    (base / "RELEASE_v1.txt").write_text("tiny fixture\n")
    data = load_dataset("ogbn-arxiv", root=tmp_path / "ogb")
    assert data.num_nodes == n and data.x.shape == (n, 8) and data.num_classes == 40
    assert data.is_undirected()
    assert int(data.train_mask.sum()) == 20 and int(data.test_mask.sum()) == 5
    assert not (base / "processed").exists()


def test_synthetic_graph_is_reproducible_and_homophilous():
    a = synthetic_graph(2000, 4, seed=3)
    b = synthetic_graph(2000, 4, seed=3)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert a.is_undirected() and not a.has_self_loops()
    same = (a.y[a.edge_index[0]] == a.y[a.edge_index[1]]).float().mean()
    assert 0.75 < float(same) < 0.9  # homophily 0.8 plus chance agreement
    assert abs(a.edge_index.size(1) / 2000 - 10) < 1.0


@pytest.mark.slow
def test_synthetic_graph_million_nodes():
    data = synthetic_graph(1_000_000, 10, seed=0)
    assert data.num_nodes == 1_000_000 and data.is_undirected()


@pytest.mark.parametrize("name, nodes, classes", [("amazon-photo", 7650, 8), ("amazon-computers", 13752, 10),
                                                  ("coauthor-cs", 18333, 15), ("dblp", 17716, 4), ("actor", 7600, 5)])
def test_the_real_graphs_load_through_pyg_with_raw_features(name, nodes, classes):
    from srgnn.data import dataset_info, load_dataset

    data = load_dataset(name)
    assert data.num_nodes == nodes == dataset_info(name)["num_nodes"] and data.num_classes == classes
    assert data.is_undirected() and int(data.y.max()) + 1 == classes
    assert not torch.allclose(data.x.sum(1), torch.ones(nodes))  # not row-normalized: as PyG gives them


def test_a_real_graph_file_that_fails_its_checksum_is_refused(tmp_path, monkeypatch):
    from srgnn.data import ChecksumError, dataset_info, load_dataset

    raw = tmp_path / "graphs" / dataset_info("actor")["raw_dir"]
    shutil.copytree(DATA_ROOT / "graphs" / "Actor" / "raw", raw)
    with open(raw / "out1_graph_edges.txt", "a") as f:
        f.write("0\t1\n")
    monkeypatch.setenv("SRGNN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ChecksumError, match="out1_graph_edges.txt"):
        load_dataset("actor", root=tmp_path)


def test_an_installed_wheel_carries_the_registry_and_the_study_commands(tmp_path):
    """The registry is package data (``srgnn/registry.json``, the link to datasets/registry.json),
    and the studies install with their commands, so both work outside the repository."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True)
    with zipfile.ZipFile(next(tmp_path.glob("srgnn-*.whl"))) as wheel:
        assert wheel.read("srgnn/registry.json") == (root / "datasets" / "registry.json").read_bytes()
        assert "benchmarks/pubmed_bias.py" in wheel.namelist()
        entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
        assert "srgnn-study = benchmarks.pubmed_bias:command" in wheel.read(entry_points).decode()


def _load_in_a_process(name: str, cache: str, out: str) -> None:
    os.environ["SRGNN_CACHE"] = cache
    data = load_dataset(name)
    Path(out).write_text(str(data.num_nodes))


def test_a_process_loading_a_graph_waits_while_another_builds_the_cache(tmp_path):
    # The ranks of a torchrun job, or a study's workers, load one graph at once on a fresh
    # machine; one reading PyG's processed/ file while another writes it fails. Here this
    # process holds the cache's lock, as a loading process does, and a second one must wait.
    cache = tmp_path / "cache"
    cache.mkdir()
    out = tmp_path / "loaded"
    child = multiprocessing.get_context("spawn").Process(target=_load_in_a_process,
                                                         args=("cora", str(cache), str(out)))
    with _exclusive(cache):
        child.start()
        child.join(6)
        assert child.is_alive() and not out.exists()
    child.join(120)
    assert child.exitcode == 0 and out.read_text() == "2708"
