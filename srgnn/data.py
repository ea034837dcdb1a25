"""Datasets: the Planetoid citation graphs, ogbn-arxiv and a scalable synthetic graph.

Data is found through, in order, the ``root`` argument, the ``SRGNN_DATA`` environment
variable, and a per-user cache (``SRGNN_CACHE`` or the platform's cache directory).
Raw files are always copied into the cache before PyG writes ``processed/`` next to
them, so a read-only data directory (such as a shared mount) is never written to.

Raw Planetoid files are Python pickles, and an altered pickle can run code: every raw
file's SHA-256 is checked against ``datasets/registry.json`` *before* PyG unpickles it.
Files saved with ``torch.save`` (a user's graph, PyG's ``processed/`` files) are read by
``load_saved``: ``torch.load(weights_only=True)`` with PyG's ``Data`` classes allow-listed,
so an object of any other class is refused instead of unpickled.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from importlib import resources
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from ._validation import check_graph

REGISTRY = resources.files("srgnn") / "registry.json"  # datasets/registry.json, shipped as package data
OGB_DATASETS = ("ogbn-arxiv",)


class DataNotFoundError(FileNotFoundError):
    """The raw files are in none of the searched directories and cannot be downloaded."""


class ChecksumError(RuntimeError):
    """A raw file does not match the SHA-256 recorded in the dataset registry."""


class CacheNotWritableError(OSError):
    """The srgnn cache directory cannot be created or written."""


class UnsafeFileError(pickle.UnpicklingError):
    """A saved file holds objects other than tensors and PyG's ``Data`` classes; it was not
    unpickled, since unpickling them could run code."""


def _data_globals() -> list:
    """The classes a ``torch.save``'d ``Data`` pickles besides tensors and plain containers."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]


def load_saved(path: str | os.PathLike, what: str = "file"):
    """What ``torch.save`` wrote to ``path``, on the CPU, loaded with ``weights_only=True``:
    tensors, numbers, strings, tuples, lists, dicts and PyG's ``Data`` only. Anything else (a
    crafted object whose unpickling would run code among them) raises ``UnsafeFileError``
    without being unpickled; ``what`` names the file in errors (``"--data FILE"``)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} {path} does not exist or is not a file.")
    try:
        with torch.serialization.safe_globals(_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = str(err).split("Unsupported global: ")[-1].split(" was not")[0].strip() if "Unsupported global" in str(
            err) else "a disallowed object"
        raise UnsafeFileError(f"{what} {path} holds {found}, which srgnn does not unpickle (it could run code): "
                              "only tensors and torch_geometric Data objects are loaded. Save the graph as "
                              "torch.save(Data(x=..., edge_index=..., y=...), path).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{what} {path} is not a readable torch.save file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]}).") from None


def load_graph(path: str | os.PathLike, what: str = "graph file") -> Data:
    """A graph saved with ``torch.save(data, path)``, loaded safely (``load_saved``) and
    checked to be a ``torch_geometric.data.Data``."""
    data = load_saved(path, what)
    if not isinstance(data, Data):
        raise TypeError(f"{what} {path} holds a {type(data).__name__}, not a torch_geometric Data; save the graph "
                        "itself: torch.save(data, path) (for a PyG dataset, torch.save(dataset[0], path)).")
    return data


def _drop_unsafe_processed(folder: Path) -> None:
    """Delete ``folder`` (PyG's ``processed/``) unless every ``.pt`` file in it loads by
    ``load_saved``: PyG reads these files with ``weights_only=False`` when the safe load fails,
    so a crafted one would run code. PyG rebuilds them from the verified raw files."""
    for file in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        try:
            load_saved(file)
        except (UnsafeFileError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)
            return


def _registry() -> dict:
    """Every registered graph by name, each entry with its ``collection``: ``"planetoid"`` or
    ``"graphs"`` (the real graphs beyond the citation benchmarks, read by PyG's own classes)."""
    collections = json.loads(REGISTRY.read_text())
    return {name: {**entry, "collection": collection} for collection in ("planetoid", "graphs")
            for name, entry in collections[collection]["datasets"].items()}


def dataset_names() -> list[str]:
    """The names ``load_dataset`` accepts."""
    return sorted(_registry()) + list(OGB_DATASETS)


def dataset_info(name: str) -> dict:
    """Registry entry of a registered graph: counts, checksums, and for the Planetoid graphs the
    localized-sampling pool and teleport of the authors' published sets."""
    return _registry()[_normalize(name)]


def cache_dir() -> Path:
    """Directory srgnn owns for copies of raw files and PyG's ``processed/`` output."""
    env = os.environ.get("SRGNN_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("srgnn"))


def ensure_writable_dir(path: Path) -> Path:
    """``path``, created, after writing a probe file there; raises ``OSError`` if it cannot.

    The probe has a unique name, so processes checking the same directory at once (the study's
    workers all load the dataset together) never remove each other's probe."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
    return path


def _writable_cache(path: Path) -> Path:
    """``path``, created, after checking that srgnn can write there."""
    try:
        return ensure_writable_dir(path)
    except OSError as err:
        raise CacheNotWritableError(
            f"The srgnn cache {path} is not writable ({err.strerror or err}); set SRGNN_CACHE to a "
            "directory you can write (it holds copies of the raw files and PyG's processed/ output).") from err


def _normalize(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _registry() and key not in OGB_DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {dataset_names()} (case-insensitive).")
    return key


def _search_roots(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get("SRGNN_DATA")
    return [Path(env).expanduser()] if env else []


def published_splits_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """The authors' 100 published sets of ``name`` (``localized_seeds_<name>.p``) in the
    ``srgnn_localized_seeds`` folder of ``root`` or ``$SRGNN_DATA``; a clear error if not there."""
    for folder in _search_roots(root):
        path = folder / "srgnn_localized_seeds" / f"localized_seeds_{_normalize(name)}.p"
        if path.is_file():
            return path
    raise FileNotFoundError(f"No published sets of {name!r} found: pass their file (localized_seeds_{name}.p), "
                            "or set SRGNN_DATA to the folder that holds srgnn_localized_seeds/.")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(raw_dir: Path, expected: dict[str, str]) -> None:
    for filename, digest in expected.items():
        actual = sha256(raw_dir / filename)
        if actual != digest:
            raise ChecksumError(
                f"{raw_dir / filename} has SHA-256 {actual}, but the registry records {digest}. "
                "The file is corrupt or was altered; it was NOT unpickled. Delete it and load again "
                "to fetch a clean copy, or pass verify_checksums=False if you trust this file.")


def _copy_raw(source: Path, cached_raw: Path, expected: dict[str, str], verify_checksums: bool) -> None:
    """Copy the raw files ``expected`` names from ``source`` into ``cached_raw`` (checked first),
    dropping PyG's ``processed/`` beside it when a file changed: it was built from the old one."""
    if source.resolve() == cached_raw.resolve():
        return
    if verify_checksums:
        _verify(source, expected)
    cached_raw.mkdir(parents=True, exist_ok=True)
    for f in sorted(expected):
        if not (cached_raw / f).is_file() or sha256(cached_raw / f) != sha256(source / f):
            shutil.copyfile(source / f, cached_raw / f)
            shutil.rmtree(cached_raw.parent / "processed", ignore_errors=True)


def _find_raw_dir(roots: list[Path], folder: str, files: list[str]) -> Path | None:
    # Accept both <root>/<Name>/raw and <root>/planetoid/<Name>/raw.
    for root in roots:
        for candidate in (root / folder / "raw", root / "planetoid" / folder / "raw"):
            if all((candidate / f).is_file() for f in files):
                return candidate
    return None


def _download_planetoid(folder: str, files: list[str], raw_dir: Path) -> None:
    from torch_geometric.data import download_url
    from torch_geometric.datasets import Planetoid

    raw_dir.mkdir(parents=True, exist_ok=True)
    for filename in files:
        download_url(f"{Planetoid.url}/{filename}", str(raw_dir), log=False)


def load_dataset(name: str, root: str | os.PathLike | None = None, *, verify_checksums: bool = True,
                 normalize_features: bool = True) -> Data:
    """Load a citation graph as a ``torch_geometric.data.Data``.

    Args:
        name: ``"cora"``, ``"citeseer"``, ``"pubmed"`` or ``"ogbn-arxiv"`` (case-insensitive).
        root: directory holding ``<Name>/raw/`` (or ``planetoid/<Name>/raw/``). Defaults to
            ``$SRGNN_DATA``, then the srgnn cache, then a download through PyG.
        verify_checksums: refuse raw files whose SHA-256 differs from the registry.
        normalize_features: scale each Planetoid feature row to sum 1 (PyG's
            ``NormalizeFeatures``, as in the GCN and SR-GNN code).

    Returns:
        ``Data`` with ``x`` ``[N, F]``, undirected ``edge_index`` ``[2, E]``, ``y`` ``[N]``,
        the standard ``train_mask``/``val_mask``/``test_mask``, ``num_classes`` and ``name``.
    """
    key = _normalize(name)
    # One process at a time copies raw files into the cache and builds PyG's processed/ there:
    # the ranks of a torchrun job or a study's workers load the same graph at once, and a
    # process reading a processed/ file that another is writing fails.
    with _exclusive(_writable_cache(cache_dir())):
        if key in OGB_DATASETS:
            return _load_ogb(key, root)
        info = _registry()[key]
        if info["collection"] == "graphs":
            return _load_graph_dataset(key, info, root, verify_checksums)
        return _load_planetoid(key, info, root, verify_checksums, normalize_features)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` (POSIX ``flock``; no lock where there is none)."""
    try:
        import fcntl
    except ImportError:  # Windows: processes sharing a cache there load one after another themselves
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_planetoid(key: str, info: dict, root: str | os.PathLike | None, verify_checksums: bool,
                    normalize_features: bool) -> Data:
    """A Planetoid graph through PyG's ``Planetoid``, from its raw files copied into the cache
    and checked against their SHA-256."""
    folder, expected = info["name"], info["raw_sha256"]
    files = sorted(expected)

    cache_root = _writable_cache(cache_dir() / "planetoid")
    cached_raw = cache_root / folder / "raw"
    searched = _search_roots(root)
    source = _find_raw_dir(searched, folder, files)
    if source is not None:
        _copy_raw(source, cached_raw, expected, verify_checksums)
    elif not all((cached_raw / f).is_file() for f in files):
        try:
            _download_planetoid(folder, files, cached_raw)
        except OSError as err:
            where = [str(p) for p in searched] + [str(cache_root)]
            raise DataNotFoundError(
                f"Raw {folder} files not found in {where} and the download failed ({err}). "
                f"Put the Planetoid raw files in <dir>/{folder}/raw/ and pass root=<dir> "
                f"or set SRGNN_DATA=<dir>.") from err
    if verify_checksums:
        _verify(cached_raw, expected)
    else:
        warnings.warn(f"Checksums of the {folder} raw files were not verified.", stacklevel=3)

    from torch_geometric.datasets import Planetoid

    from torch_geometric.transforms import NormalizeFeatures

    transform = NormalizeFeatures() if normalize_features else None
    _drop_unsafe_processed(cache_root / folder / "processed")
    # With PyG's Data classes allowed, PyG's own weights-only load of processed/ succeeds and
    # never falls back to a full unpickle.
    with torch.serialization.safe_globals(_data_globals()):
        try:
            dataset = Planetoid(str(cache_root), folder, transform=transform)
        except Exception:  # noqa: BLE001 - a truncated or stale processed/ file, in whatever way torch.load fails
            # processed/ is derived from the raw files just verified: rebuild it from them.
            shutil.rmtree(cache_root / folder / "processed", ignore_errors=True)
            try:
                dataset = Planetoid(str(cache_root), folder, transform=transform)
            except Exception as err:
                raise RuntimeError(f"PyG could not build {cache_root / folder / 'processed'} from the verified raw "
                                   f"files ({type(err).__name__}: {err}); delete {cache_root / folder} and "
                                   "retry.") from err
    data = dataset[0]
    data.num_classes = dataset.num_classes
    data.name = key
    check_graph(data, require_labels=True)
    return data


def _load_graph_dataset(key: str, info: dict, root: str | os.PathLike | None, verify_checksums: bool) -> Data:
    """One of the real graphs of the registry's ``graphs`` collection, through PyG's own class
    (``Amazon``, ``Coauthor``, ``CitationFull``, ``Actor``), from a copy of its raw files in
    the cache, checked against their SHA-256 first. Features stay as PyG gives them (raw counts
    or binary indicators); a directed graph (Actor) is made undirected, as the samplers need."""
    import torch_geometric.datasets as pyg_datasets

    raw_dir, expected = info["raw_dir"], info["raw_sha256"]
    cache_root = _writable_cache(cache_dir() / "graphs")
    source = next((candidate / raw_dir for candidate in _search_roots(root) for candidate in (candidate,
                   candidate / "graphs") if all((candidate / raw_dir / f).is_file() for f in expected)), None)
    cached_raw = cache_root / raw_dir
    if source is None and not all((cached_raw / f).is_file() for f in expected):
        where = [str(p) for p in _search_roots(root)] + [str(cache_root)]
        raise DataNotFoundError(f"The raw files of {key} ({raw_dir}/: {', '.join(sorted(expected))}) are in none of "
                                f"{where}. Put them in <dir>/{raw_dir}/ (or <dir>/graphs/{raw_dir}/) and pass "
                                "root=<dir> or set SRGNN_DATA=<dir>.")
    if source is not None:
        _copy_raw(source, cached_raw, expected, verify_checksums)
    if verify_checksums:
        _verify(cached_raw, expected)
    _drop_unsafe_processed(cached_raw.parent / "processed")
    cls = getattr(pyg_datasets, info["pyg_class"])
    kwargs = {} if info["pyg_name"] is None else {"name": info["pyg_name"]}
    with torch.serialization.safe_globals(_data_globals()):
        dataset = cls(str(cache_root / info["pyg_root"]), **kwargs)
    data = dataset[0]
    if not data.is_undirected():
        data.edge_index = to_undirected(data.edge_index, num_nodes=data.num_nodes)
    data.num_classes = dataset.num_classes
    data.name = key
    check_graph(data, require_labels=True)
    return data


def _load_ogb(key: str, root: str | os.PathLike | None) -> Data:
    """Load an ogbn node-property dataset from ogb's on-disk format, copied into the cache."""
    from ogb.nodeproppred import PygNodePropPredDataset

    folder = key.replace("-", "_")
    cache_root = _writable_cache(cache_dir() / "ogb")
    for candidate in _search_roots(root):
        source = candidate / folder
        if (source / "raw").is_dir() and source.resolve() != (cache_root / folder).resolve():
            shutil.copytree(source, cache_root / folder, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("processed"))
            break
    if not (cache_root / folder / "raw").is_dir():
        where = [str(p) for p in _search_roots(root)] + [str(cache_root)]
        raise DataNotFoundError(
            f"{key} files not found in {where}. Download them with ogb on a networked machine "
            f"(PygNodePropPredDataset('{key}', root=<dir>)) and pass root=<dir> or set SRGNN_DATA=<dir>.")
    # ogb 1.3.6 reads its processed file with a plain torch.load (weights-only by default), which
    # loads only allowlisted types: allow the PyG Data classes that file holds, for this load alone.
    with torch.serialization.safe_globals(_data_globals()):
        dataset = PygNodePropPredDataset(key, root=str(cache_root))
    data = dataset[0]
    split = dataset.get_idx_split()
    n = data.num_nodes
    data.y = data.y.view(-1)
    data.edge_index = to_undirected(data.edge_index, num_nodes=n)
    for mask_name, part in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[split[part]] = True
        data[mask_name] = mask
    data.num_classes = dataset.num_classes
    data.name = key
    check_graph(data, require_labels=True)
    return data
