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
edited docs.tsv has another hash and gets a new index, never a stale one. Several jobs share
that index (the K fold jobs of one source start together), so it has one builder at a time:
:class:`_LocalDocStore` takes an exclusive ``fcntl`` lock on ``docs.tsv.pklz4.lock`` before it
asks whether the index is built, builds into a temporary folder, writes a manifest of the
index's file sizes (``pairrel-complete.json``) last and renames the folder into place. An
index without a matching manifest (a crash, a truncated file, an index of an older version,
which ir_datasets would trust) is named in a warning, removed and rebuilt. ir_datasets' own
``PickleLz4FullStore`` asks ``built()`` before it locks, so concurrent first builds append the
corpus twice; :func:`built_docs_store` builds hub datasets' indexes under the same lock.

Configured datasets are registered lazily (:func:`register_from_config`): the directory is
checked and its files read the first time the dataset is loaded, so a command never opens,
or fails on, a dataset it does not read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
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
# id -> directory of configured datasets not yet used (registered on first load).
_PENDING: dict[str, Path] = {}
_logger = logging.getLogger(__name__)


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


@contextlib.contextmanager
def index_lock(index_path: str | os.PathLike):
    """Hold an exclusive ``fcntl`` lock on ``<index_path>.lock``: the one builder of an index.

    The lock file is never removed (removing it would let two jobs lock two different files);
    the kernel releases the lock when its holder exits, however it exits.
    """
    lock_path = Path(f"{os.fspath(index_path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


INDEX_MANIFEST = "pairrel-complete.json"  # written last into a complete index


def _index_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != INDEX_MANIFEST}


def index_problem(folder: Path) -> str | None:
    """Why the index folder cannot be trusted (None: complete): no manifest, or files whose
    names or sizes differ from the manifest's."""
    try:
        manifest = json.loads((folder / INDEX_MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {INDEX_MANIFEST} (half-written, or built by an older version)"
    except (OSError, ValueError) as err:
        return f"unreadable {INDEX_MANIFEST} ({err})"
    if not isinstance(manifest, dict) or manifest.get("files") != _index_files(folder):
        return f"its files differ from {INDEX_MANIFEST} (truncated or altered)"
    return None


class _LocalDocStore(PickleLz4FullStore):
    """A PickleLz4FullStore with one builder at a time, built to a temporary name and renamed,
    and never trusted without its manifest (see the module docstring)."""

    def built(self) -> bool:
        return os.path.isdir(self.path) and index_problem(Path(self.path)) is None

    def build(self) -> None:
        if getattr(self, "_checked", False):
            return
        with index_lock(self.path):  # before the check: a job waits while another builds
            final = Path(self.path)
            problem = index_problem(final) if final.exists() else None
            if problem is None and final.exists():
                self._checked = True
                return
            if problem is not None:
                _logger.warning("document index %s: %s; rebuilding it", final, problem)
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                PickleLz4FullStore(os.fspath(tmp), self.init_iter_fn, self._doc_cls, self._id_field,
                                   self.lookup._index_fields, size_hint=self.size_hint).build()
                for name in _index_files(tmp):
                    with open(tmp / name, "rb") as handle:
                        os.fsync(handle.fileno())
                from pairrel.io import atomic_write_text

                atomic_write_text(tmp / INDEX_MANIFEST, json.dumps({"files": _index_files(tmp)}, sort_keys=True) + "\n")
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self.lookup.close()  # reopened on the next read, from the new files
            self._checked = True


def built_docs_store(dataset):
    """``dataset.docs_store()``, built before it is returned with one builder at a time: hub
    datasets' ir_datasets indexes under :func:`index_lock` too (ir_datasets checks before it
    locks)."""
    store = dataset.docs_store()
    if isinstance(store, PickleLz4FullStore) and not isinstance(store, _LocalDocStore):
        with index_lock(store.path):
            store.build()
    elif isinstance(store, _LocalDocStore):
        store.build()
    return store


class _LocalTsvDocs(TsvDocs):
    """TsvDocs whose index lives in the ir_datasets home, keyed by the content of docs.tsv."""

    def docs_store(self, field="doc_id", options=DEFAULT_DOCSTORE_OPTIONS):
        folder = Path(ir_datasets.util.home_path()) / INDEX_CACHE / self._dlc.sha256()
        folder.mkdir(parents=True, exist_ok=True)
        return _LocalDocStore(
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
    if dataset_id in ir_datasets.registry._registered and dataset_id not in _LOCAL_DIRS and dataset_id not in _PENDING:
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
    _PENDING.pop(dataset_id, None)
    return ir_datasets.registry._registered[dataset_id]


class _PendingLocalDataset:
    """Holds a configured local dataset's place in the ir_datasets registry until it is used;
    the first attribute asked of it registers the directory (checks included) and answers."""

    def __init__(self, dataset_id: str, directory: Path) -> None:
        self._dataset_id, self._directory = dataset_id, directory

    def __getattr__(self, name):
        if name.startswith("__") or name == "deprecated":  # ir_datasets' load() probes this one
            raise AttributeError(name)
        return getattr(register_local_dir(self._dataset_id, self._directory), name)


def register_lazily(dataset_id: str, directory: str | Path) -> None:
    """Register ``directory`` as ``dataset_id`` on first use (``load_dataset``, ``local_dir``,
    ``ir_datasets.load``); nothing is checked or opened before. An ir_datasets built-in id is
    refused at once, as :func:`register_local_dir` refuses it."""
    directory = Path(directory).resolve()
    if _LOCAL_DIRS.get(dataset_id) == directory or _PENDING.get(dataset_id) == directory:
        return
    if dataset_id in ir_datasets.registry._registered and dataset_id not in _LOCAL_DIRS and dataset_id not in _PENDING:
        raise ValueError(f"dataset id {dataset_id!r} is an ir_datasets built-in; choose another id for {directory}")
    _LOCAL_DIRS.pop(dataset_id, None)
    ir_datasets.registry._registered[dataset_id] = _PendingLocalDataset(dataset_id, directory)
    _PENDING[dataset_id] = directory


def _resolve(dataset_id: str) -> None:
    if dataset_id in _PENDING:
        register_local_dir(dataset_id, _PENDING[dataset_id])


def register_from_config(cfg: dict, base_dir: str | Path | None = None) -> list[str]:
    """Register every ``local_datasets: {id: directory}`` entry of a config; returns the ids.

    Relative directories are resolved against ``base_dir`` (default: the working directory).
    Lazily (:func:`register_lazily`): a dataset the command never loads is never checked.
    """
    entries = cfg.get("local_datasets") or {}
    if not isinstance(entries, dict):
        raise ValueError(f"config key 'local_datasets' must map dataset ids to directories, got {entries!r}")
    for dataset_id, directory in entries.items():
        path = Path(directory)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        register_lazily(dataset_id, path)
    return list(entries)


def local_dir(dataset_id: str) -> Path | None:
    """The directory a dataset was registered from in this process (None for others)."""
    _resolve(dataset_id)
    return _LOCAL_DIRS.get(dataset_id)


def load_dataset(dataset_id: str):
    """``ir_datasets.load`` with an error that says what to do about an unknown id."""
    _resolve(dataset_id)
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        known = sorted(set(_LOCAL_DIRS) | set(_PENDING))
        raise UnknownDatasetError(
            f"unknown ir_datasets id {dataset_id!r}: it is not built into ir_datasets "
            f"{ir_datasets.__version__} and not registered by pairrel (registered local datasets: "
            f"{known or 'none'}); add it under 'local_datasets:' in the config, or pass --register ID=DIR"
        ) from None
