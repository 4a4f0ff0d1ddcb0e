"""Serve local dataset directories through ir_datasets, and name unknown ids clearly.

A *local dataset directory* (docs/internals.md) holds

    docs.tsv       doc_id<TAB>text                       (required)
    queries.tsv    query_id<TAB>text                     (required)
    qrels.txt      query_id 0 doc_id grade               (optional: TREC qrels, integer grades)
    docpairs.tsv   query_id<TAB>pos_doc_id<TAB>neg_doc_id (optional: training triples)
    meta.json      {"qrels_defs": {"0": "...", ...}, "max_grade": 3, "instruction": "..."}

`register_local_dir` builds an ir_datasets ``Dataset`` from ``TsvDocs``, ``TsvQueries``,
``TrecQrels`` and ``TsvDocPairs`` over ``LocalDownload`` and registers it, so that
``ir_datasets.load(dataset_id)`` serves it like any hub dataset (``docs_store()`` writes its
``docs.tsv.pklz4`` index beside the file, so the directory must be writable).
"""

from __future__ import annotations

import json
from pathlib import Path

import ir_datasets
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import TrecQrels, TsvDocPairs, TsvDocs, TsvQueries
from ir_datasets.util import LocalDownload

REQUIRED_FILES = ("docs.tsv", "queries.tsv", "meta.json")
OPTIONAL_FILES = ("qrels.txt", "docpairs.tsv")

# id -> resolved directory of every dataset this process registered from a local directory;
# it makes a second registration of the same pair a no-op and a conflicting one an error.
_LOCAL_DIRS: dict[str, Path] = {}


class UnknownDatasetError(KeyError):
    """An ir_datasets id that is neither built in nor registered by pairrel."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def read_meta(directory: Path) -> dict:
    """meta.json of a local dataset directory, with ``qrels_defs`` keys turned into ints."""
    path = Path(directory) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    defs = meta.get("qrels_defs", {})
    if not isinstance(defs, dict):
        raise ValueError(f"{path}: key 'qrels_defs' must be an object of grade -> meaning")
    try:
        meta["qrels_defs"] = {int(grade): str(text) for grade, text in defs.items()}
    except ValueError:
        raise ValueError(f"{path}: key 'qrels_defs': grades must be integers, got {list(defs)}") from None
    if "max_grade" in meta and not isinstance(meta["max_grade"], int):
        raise ValueError(f"{path}: key 'max_grade' must be an integer, got {meta['max_grade']!r}")
    return meta


def _build_dataset(directory: Path, meta: dict) -> Dataset:
    namespace = directory.name
    parts = [
        TsvDocs(LocalDownload(directory / "docs.tsv"), namespace=namespace, lang="en"),
        TsvQueries(LocalDownload(directory / "queries.tsv"), namespace=namespace, lang="en"),
    ]
    if (directory / "qrels.txt").exists():
        parts.append(TrecQrels(LocalDownload(directory / "qrels.txt"), meta["qrels_defs"]))
    if (directory / "docpairs.tsv").exists():
        parts.append(TsvDocPairs(LocalDownload(directory / "docpairs.tsv")))
    return Dataset(*parts)


def register_local_dir(dataset_id: str, directory: str | Path) -> Dataset:
    """Register ``directory`` (the layout above) as ir_datasets id ``dataset_id``.

    Idempotent: the same id with the same directory again returns the registered dataset.
    Errors: a missing directory or required file, a bad meta.json, an id that ir_datasets
    already knows (built in, or registered here with another directory).
    """
    directory = Path(directory).resolve()
    if dataset_id in _LOCAL_DIRS:
        if _LOCAL_DIRS[dataset_id] == directory:
            return ir_datasets.registry._registered[dataset_id]
        raise ValueError(
            f"dataset id {dataset_id!r} is already registered from {_LOCAL_DIRS[dataset_id]}; "
            f"cannot register it again from {directory}"
        )
    if dataset_id in ir_datasets.registry._registered:
        raise ValueError(f"dataset id {dataset_id!r} is an ir_datasets built-in; choose another id for {directory}")
    if not directory.is_dir():
        raise FileNotFoundError(f"local dataset {dataset_id!r}: directory {directory} does not exist")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"local dataset {dataset_id!r}: missing {', '.join(missing)} in {directory}")
    if not any((directory / name).is_file() for name in OPTIONAL_FILES):
        raise FileNotFoundError(f"local dataset {dataset_id!r}: {directory} has neither qrels.txt nor docpairs.tsv")
    dataset = _build_dataset(directory, read_meta(directory))
    ir_datasets.registry.register(dataset_id, dataset)
    _LOCAL_DIRS[dataset_id] = directory
    return ir_datasets.registry._registered[dataset_id]


def register_from_config(cfg: dict, base_dir: str | Path | None = None) -> list[str]:
    """Register every ``local_datasets: {id: directory}`` entry of a config; returns the ids.

    Relative directories are resolved against ``base_dir`` (default: the working directory).
    """
    entries = cfg.get("local_datasets") or {}
    if not isinstance(entries, dict):
        raise ValueError(f"config key 'local_datasets' must map dataset ids to directories, got {entries!r}")
    for dataset_id, directory in entries.items():
        path = Path(directory)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        register_local_dir(dataset_id, path)
    return list(entries)


def local_dir(dataset_id: str) -> Path | None:
    """The directory a dataset was registered from in this process (None for others)."""
    return _LOCAL_DIRS.get(dataset_id)


def load_dataset(dataset_id: str):
    """``ir_datasets.load`` with an error that says what to do about an unknown id."""
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        known = sorted(_LOCAL_DIRS)
        raise UnknownDatasetError(
            f"unknown ir_datasets id {dataset_id!r}: it is not built into ir_datasets "
            f"{ir_datasets.__version__} and not registered by pairrel (registered local datasets: "
            f"{known or 'none'}); add it under 'local_datasets:' in the config, or pass --register ID=DIR"
        ) from None
