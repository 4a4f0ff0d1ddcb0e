"""Serve local dataset directories through ir_datasets, and name unknown ids clearly.

A *local dataset directory* (docs/internals.md) holds

    docs.tsv       doc_id<TAB>text                       (required)
    queries.tsv    query_id<TAB>text                     (required)
    qrels.txt      query_id 0 doc_id grade               (optional: TREC qrels, integer grades)
    docpairs.tsv   query_id<TAB>pos_doc_id<TAB>neg_doc_id (optional: training triples)
    meta.json      {"qrels_defs": {"0": "...", ...}, "max_grade": 3, "instruction": "..."}

`register_local_dir` builds an ir_datasets ``Dataset`` from ``TsvDocs``, ``TsvQueries``,
``TrecQrels`` and ``TsvDocPairs`` and registers it, so that ``ir_datasets.load(dataset_id)``
serves it like any hub dataset. Nothing is written into the directory (it may be read-only).

Each file is checked in full the first time a process reads it (:func:`check_local_file`), and
any fault is an error naming the file and line: bytes that are not UTF-8, a NUL byte, a last
line without its newline (a file cut mid-record), a line without the expected tab-separated
fields, an empty id, a doc id listed twice, a query id listed twice with different texts, a
qrels line that is not ``query_id 0 doc_id grade`` or whose grade is neither in 0..max_grade
(``max_grade`` of meta.json, else the largest grade of ``qrels_defs``) nor declared in
``qrels_defs`` (TREC's ``-1``, "junk", may be declared: it can be summarised, but preparing a
training source refuses it, see pairrel.data.sources). A UTF-8 byte-order mark
at the start of a file is skipped (Windows editors write one; it would otherwise become part of
the first id). Blank lines are allowed, as ir_datasets skips them.

The document index that ``docs_store()`` builds (ir_datasets writes it beside its input, as
``docs.tsv.pklz4``) goes to ``$IR_DATASETS_HOME/pairrel-local/<sha256 of docs.tsv>/``: an
edited docs.tsv has another hash and gets a new index, never a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import ir_datasets
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import TrecQrels, TsvDocPairs, TsvDocs, TsvQueries
from ir_datasets.indices import DEFAULT_DOCSTORE_OPTIONS, PickleLz4FullStore
from ir_datasets.util import LocalDownload

REQUIRED_FILES = ("docs.tsv", "queries.tsv", "meta.json")
OPTIONAL_FILES = ("qrels.txt", "docpairs.tsv")

# id -> resolved directory of every dataset this process registered from a local directory;
# it makes a second registration of the same pair a no-op and a conflicting one an error.
_LOCAL_DIRS: dict[str, Path] = {}


INDEX_CACHE = "pairrel-local"  # folder under $IR_DATASETS_HOME for the document indexes
_BOM = b"\xef\xbb\xbf"
# (kind, n tab-separated fields) of each file; qrels are whitespace-separated, 4 columns.
_TSV_FIELDS = {"docs": 2, "queries": 2, "docpairs": 3}
# (path, size, mtime_ns, inode) -> sha256 of the files checked in this process
_CHECKED: dict[tuple, str] = {}


class LocalDataError(ValueError):
    """A local dataset file with a fault; the message names the file and line."""


class UnknownDatasetError(KeyError):
    """An ir_datasets id that is neither built in nor registered by pairrel."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def local_dataset_files(dataset_dir: str | Path) -> list[Path]:
    """The files of a local dataset directory that pairrel reads (to declare as rule inputs)."""
    directory = Path(dataset_dir)
    return [directory / name for name in REQUIRED_FILES + OPTIONAL_FILES if (directory / name).is_file()]


def read_meta(directory: Path) -> dict:
    """meta.json of a local dataset directory, with ``qrels_defs`` keys turned into ints."""
    from pairrel.io import read_json

    path = Path(directory) / "meta.json"
    meta = read_json(path)
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


def _line_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.readline()


def _max_grade_of(meta: dict) -> int | None:
    if "max_grade" in meta:
        return meta["max_grade"]
    return max(meta["qrels_defs"]) if meta.get("qrels_defs") else None


def check_local_file(path: Path, kind: str, max_grade: int | None = None, declared_grades=()) -> str:
    """Check one file of a local dataset (the faults in the module docstring); its SHA-256.

    One streaming pass; memory grows with the number of ids (an int hash and offset each),
    never with the texts. Cached per process for an unchanged file (same size, mtime, inode).
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _CHECKED:
        return _CHECKED[key]
    digest = hashlib.sha256()
    seen: dict[int, tuple[int, int]] = {}  # hash(id) -> (byte offset, line number) of its line
    offset = records = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            digest.update(raw)
            where = f"{path} line {number}"
            line_offset, offset = offset, offset + len(raw)
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            nul = raw.find(b"\0")
            if nul >= 0:
                raise LocalDataError(f"{where}: NUL byte at column {nul + 1} (a damaged or padded file)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise LocalDataError(f"{where}: not valid UTF-8 (byte {err.start + 1} of the line); save the file as UTF-8") from None
            if not line.endswith("\n"):
                raise LocalDataError(f"{where}: the file ends mid-record (no newline after the last line); "
                                     "if the file is complete, end it with a newline")
            if not line.strip():
                continue  # ir_datasets skips blank lines too
            records += 1
            if kind == "qrels":
                cols = line.split()
                if len(cols) != 4 or not cols[3].lstrip("-").isdigit():
                    raise LocalDataError(f"{where}: {line.rstrip()!r} is not 'query_id 0 doc_id grade' (integer grade)")
                grade = int(cols[3])
                if grade not in declared_grades and (grade < 0 or (max_grade is not None and grade > max_grade)):
                    raise LocalDataError(f"{where}: grade {grade} is outside 0..{max_grade if max_grade is not None else ''} "
                                         f"and not declared in qrels_defs ({path.parent / 'meta.json'})")
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != _TSV_FIELDS[kind]:
                raise LocalDataError(f"{where}: expected {_TSV_FIELDS[kind]} tab-separated fields, got {len(fields)}")
            if not fields[0]:
                raise LocalDataError(f"{where}: empty id")
            if kind in ("docs", "queries"):
                earlier = seen.setdefault(hash(fields[0]), (line_offset, number))
                if earlier[1] != number:
                    previous = _line_at(path, earlier[0]).decode("utf-8").lstrip("\ufeff").rstrip("\r\n").split("\t")
                    if previous[0] == fields[0] and (kind == "docs" or previous[1] != fields[1]):
                        what = "doc id" if kind == "docs" else "query id (with different texts)"
                        raise LocalDataError(f"{where}: {what} {fields[0]!r} already on line {earlier[1]}; ids must be unique")
    if not records:  # ir_datasets would serve an empty dataset and fail later without a name
        raise LocalDataError(f"{path}: no records (the file is empty); a local dataset's {path.name} needs at least one line")
    _CHECKED[key] = digest.hexdigest()
    return _CHECKED[key]


def qrels_line(path: Path, query_id: str, doc_id: str) -> int | None:
    """Line number of the judgment (query_id, doc_id) in a TREC qrels file (for error messages)."""
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            cols = line.split()
            if len(cols) == 4 and cols[0] == query_id and cols[2] == doc_id:
                return number
    return None


class _CheckedFile(LocalDownload):
    """A local dataset file, checked before ir_datasets reads it, a leading BOM skipped."""

    def __init__(self, path: Path, kind: str, max_grade: int | None = None, declared_grades=()) -> None:
        super().__init__(path, mkdir=False)
        self.kind, self.max_grade, self.declared_grades = kind, max_grade, frozenset(declared_grades)

    def sha256(self) -> str:
        return check_local_file(self.path(), self.kind, self.max_grade, self.declared_grades)

    @contextlib.contextmanager
    def stream(self):
        self.sha256()
        with self.path().open("rb") as handle:
            if handle.read(len(_BOM)) != _BOM:
                handle.seek(0)
            yield handle


class _LocalTsvDocs(TsvDocs):
    """TsvDocs whose index lives in the ir_datasets home, keyed by the content of docs.tsv."""

    def docs_store(self, field="doc_id", options=DEFAULT_DOCSTORE_OPTIONS):
        folder = Path(ir_datasets.util.home_path()) / INDEX_CACHE / self._dlc.sha256()
        folder.mkdir(parents=True, exist_ok=True)
        return PickleLz4FullStore(
            path=os.fspath(folder / "docs.tsv.pklz4"), init_iter_fn=self.docs_iter, data_cls=self.docs_cls(),
            lookup_field=field, index_fields=self._doc_store_index_fields or ["doc_id"],
            size_hint=self._docstore_size_hint,
        )


def _build_dataset(directory: Path, meta: dict) -> Dataset:
    namespace = directory.name
    parts = [
        _LocalTsvDocs(_CheckedFile(directory / "docs.tsv", "docs"), namespace=namespace, lang="en"),
        TsvQueries(_CheckedFile(directory / "queries.tsv", "queries"), namespace=namespace, lang="en"),
    ]
    if (directory / "qrels.txt").exists():
        qrels = _CheckedFile(directory / "qrels.txt", "qrels", _max_grade_of(meta), meta["qrels_defs"])
        parts.append(TrecQrels(qrels, meta["qrels_defs"]))
    if (directory / "docpairs.tsv").exists():
        parts.append(TsvDocPairs(_CheckedFile(directory / "docpairs.tsv", "docpairs")))
    return Dataset(*parts)


def register_local_dir(dataset_id: str, directory: str | Path) -> Dataset:
    """Register ``directory`` (the layout above) as ir_datasets id ``dataset_id``.

    Idempotent: the same id with the same directory again returns the registered dataset; an
    id this module registered from another directory is registered anew (one process may serve
    several studies, e.g. two quickstart corpora). Errors: a missing directory or required
    file, a bad meta.json, an id of an ir_datasets built-in.
    """
    directory = Path(directory).resolve()
    if _LOCAL_DIRS.get(dataset_id) == directory:
        return ir_datasets.registry._registered[dataset_id]
    if dataset_id in ir_datasets.registry._registered and dataset_id not in _LOCAL_DIRS:
        raise ValueError(f"dataset id {dataset_id!r} is an ir_datasets built-in; choose another id for {directory}")
    if not directory.is_dir():
        raise FileNotFoundError(f"local dataset {dataset_id!r}: directory {directory} does not exist")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"local dataset {dataset_id!r}: missing {', '.join(missing)} in {directory}")
    if not any((directory / name).is_file() for name in OPTIONAL_FILES):
        raise FileNotFoundError(f"local dataset {dataset_id!r}: {directory} has neither qrels.txt nor docpairs.tsv")
    dataset = _build_dataset(directory, read_meta(directory))
    ir_datasets.registry._registered.pop(dataset_id, None)  # an earlier local registration
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
