"""MTEB tasks built from a user's own files, declared in the config::

    evaluation:
      local_tasks:
        - {name: MySTS, type: STS, path: data/sts.csv, min_score: 0, max_score: 5}
        - {name: MyPairs, type: PairClassification, path: data/pairs.tsv}
        - {name: MyRetrieval, type: Retrieval, path: data/my_beir/}
        - {name: MyRerank, type: Reranking, path: data/my_beir/, instruction: "Given a query, ..."}

File formats
------------
**STS and PairClassification**: one file, ``.csv`` (comma separated, double-quote quoting),
``.tsv`` (tab separated, no quoting: a quote is an ordinary character) or ``.jsonl`` (one JSON
object per line). A header row (CSV/TSV) or the object keys (JSONL) name the columns
``sentence1``, ``sentence2`` and ``score`` (STS: any real number, within
``[min_score, max_score]`` when those are given, else the observed range is the scale) or
``label`` (PairClassification: 0 or 1, both present). Other columns are ignored.

**Retrieval and Reranking**: a folder in the BEIR layout: ``corpus.jsonl``
(``{"_id", "title"?, "text"}``), ``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/test.tsv``
(``query-id<TAB>corpus-id<TAB>score``, integer grades 0..4, an optional header line). Queries
without judgments are left out, as BEIR does. Retrieval ranks the whole corpus; Reranking
ranks, for each query, only the documents judged for it (grade 0 included).

Scoring (the same as MTEB's own tasks of the type, through the same mteb classes): STS
``cosine_spearman``; PairClassification ``max_ap``; Retrieval ``ndcg_at_10`` with the grades as
gains; Reranking ``map_at_1000`` (MTEB(eng, v1)'s reranking measure; mteb counts grade >= 1 as
relevant). An optional ``instruction`` goes on both sides of STS and PairClassification pairs
and on the query side of Retrieval and Reranking, as for MTEB's tasks.

Nothing is written beside the user's files: they are read with plain Python, never indexed.
Each task carries a ``fingerprint`` (also as ``data_fingerprint``: SHA-256 over its files' bytes
and the settings that change scores), recorded as the task's dataset revision, so mteb writes it
into each result file and ``pairrel.evaluate.run.drop_stale_results`` recomputes a result whose
data changed. Bad input raises :class:`TaskFileError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from datasets import Dataset
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from pairrel.evaluate.local_tasks import LOCAL_TASK_METADATA, OneSplitTask
from pairrel.evaluate.task_specs import USER_TASK_TYPES, user_task_spec
from pairrel.io import iter_json_objects, read_text

CONFIG_KEY = "evaluation.local_tasks"
BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")
PAIR_SUFFIXES = (".csv", ".tsv", ".jsonl")
# Highest relevance grade of a BEIR qrels file: BEIR's and TREC's graded sets use 0..2 or 0..3 (a
# few 0..4); nDCG takes the grade as the gain, so a stray 99 or -1 would silently dominate it.
MAX_GRADE = 4
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the name becomes a result file name


class TaskFileError(ValueError):
    """A user task file (or its config entry) is malformed; the message names file and line."""


# ---------------------------------------------------------------------------------------------
# Reading files


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, row)`` for every data row of a CSV, TSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix not in PAIR_SUFFIXES:
        raise TaskFileError(f"{path}: unsupported file type {suffix!r} (expected one of {', '.join(PAIR_SUFFIXES)})")
    if suffix == ".jsonl":
        yield from iter_json_objects(path, error=TaskFileError)
        return
    with io.StringIO(_decoded(path), newline="") as handle:
        if suffix == ".tsv":
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.DictReader(handle)
        try:
            for row in reader:
                if None in row:  # more fields than the header names
                    raise TaskFileError(f"{path}: line {reader.line_num}: {len(reader.fieldnames) + len(row[None])} fields, "
                                        f"the header has {len(reader.fieldnames)}")
                if not any((value or "").strip() for value in row.values()):
                    continue  # blank line
                yield reader.line_num, row
        except csv.Error as err:
            raise TaskFileError(f"{path}: line {reader.line_num}: {err}") from None


def _decoded(path: Path) -> str:
    """The file's text: UTF-8, a leading byte-order mark skipped (Windows editors write one; it
    would otherwise be part of the first column's name); other bytes are an error naming the line."""
    return read_text(path, error=TaskFileError, skip_bom=True)


def _text(path: Path, number: int, row: dict, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise TaskFileError(f"{path}: line {number}: column '{column}' is missing or empty")
    return value


def _number(path: Path, number: int, row: dict, column: str) -> float:
    value = row.get(column)
    try:
        result = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        raise TaskFileError(f"{path}: line {number}: column '{column}' must be a number, got {value!r}")
    return result


def _require_columns(path: Path, number: int, row: dict, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        where = "header" if path.suffix.lower() != ".jsonl" else f"line {number}"
        raise TaskFileError(f"{path}: {where} lacks column(s) {', '.join(missing)} "
                            f"(found: {', '.join(k for k in row if k is not None)})")


def read_sts_file(path: str | Path, min_score: float | None = None, max_score: float | None = None) -> dict[str, list]:
    """``{"sentence1", "sentence2", "score"}`` columns of an STS file, every row checked."""
    path = Path(path)
    columns: dict[str, list] = {"sentence1": [], "sentence2": [], "score": []}
    for number, row in _rows(path):
        _require_columns(path, number, row, ("sentence1", "sentence2", "score"))
        score = _number(path, number, row, "score")
        if (min_score is not None and score < min_score) or (max_score is not None and score > max_score):
            raise TaskFileError(f"{path}: line {number}: score {score:g} outside [min_score, max_score] = [{min_score}, {max_score}]")
        columns["sentence1"].append(_text(path, number, row, "sentence1"))
        columns["sentence2"].append(_text(path, number, row, "sentence2"))
        columns["score"].append(score)
    if len(columns["score"]) < 2:
        raise TaskFileError(f"{path}: needs at least two pairs, found {len(columns['score'])}")
    if len(set(columns["score"])) < 2:
        raise TaskFileError(f"{path}: every score is {columns['score'][0]:g}; a correlation needs at least two values")
    return columns


def read_pair_file(path: str | Path) -> dict[str, list]:
    """``{"sentence1", "sentence2", "labels"}`` columns of a pair-classification file."""
    path = Path(path)
    columns: dict[str, list] = {"sentence1": [], "sentence2": [], "labels": []}
    for number, row in _rows(path):
        _require_columns(path, number, row, ("sentence1", "sentence2", "label"))
        label = row["label"]
        if isinstance(label, str):
            label = label.strip()
        if label not in (0, 1, "0", "1") or isinstance(label, (bool, float)):
            raise TaskFileError(f"{path}: line {number}: column 'label' must be 0 or 1, got {row['label']!r}")
        columns["sentence1"].append(_text(path, number, row, "sentence1"))
        columns["sentence2"].append(_text(path, number, row, "sentence2"))
        columns["labels"].append(int(label))
    if set(columns["labels"]) != {0, 1}:
        raise TaskFileError(f"{path}: needs pairs of both labels 0 and 1 (average precision), "
                            f"found only {sorted(set(columns['labels']))}")
    return columns


def _jsonl_records(path: Path, required: tuple[str, ...]) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for number, row in _rows(path):
        _require_columns(path, number, row, required)
        record_id = row["_id"]
        if not isinstance(record_id, (str, int)) or isinstance(record_id, bool) or str(record_id) == "":
            raise TaskFileError(f"{path}: line {number}: '_id' must be a non-empty string or integer, got {record_id!r}")
        record_id = str(record_id)
        if record_id in records:
            raise TaskFileError(f"{path}: line {number}: duplicate _id {record_id!r}")
        text = row["text"]
        title = row.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str) or not (text.strip() or title.strip()):
            raise TaskFileError(f"{path}: line {number}: 'text' must be a non-empty string")
        records[record_id] = {"text": text, "title": title}
    if not records:
        raise TaskFileError(f"{path}: no records")
    return records


def read_beir_folder(path: str | Path) -> tuple[dict[str, dict], dict[str, str], dict[str, dict[str, int]]]:
    """``(corpus {id: {"title", "text"}}, queries {id: text}, qrels {query: {doc: grade}})``.

    Only judged queries are kept; every judgment must name a known query and document.
    """
    root = Path(path)
    if not root.is_dir():
        raise TaskFileError(f"{root}: not a folder (a Retrieval/Reranking task reads a BEIR folder: {', '.join(BEIR_FILES)})")
    for name in BEIR_FILES:
        if not (root / name).is_file():
            raise TaskFileError(f"{root / name}: missing (BEIR layout: {', '.join(BEIR_FILES)})")
    corpus = _jsonl_records(root / "corpus.jsonl", ("_id", "text"))
    queries = {qid: q["text"] for qid, q in _jsonl_records(root / "queries.jsonl", ("_id", "text")).items()}
    qrels_path = root / "qrels" / "test.tsv"
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with io.StringIO(_decoded(qrels_path)) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise TaskFileError(f"{qrels_path}: line {number}: expected 3 tab-separated fields "
                                    f"(query-id, corpus-id, score), got {len(fields)}")
            query_id, doc_id, grade = (f.strip() for f in fields)
            if number == 1 and not re.fullmatch(r"-?\d+", grade):
                continue  # header line ("query-id  corpus-id  score")
            if not re.fullmatch(r"-?\d+", grade):
                raise TaskFileError(f"{qrels_path}: line {number}: score must be an integer grade, got {grade!r}")
            if not 0 <= int(grade) <= MAX_GRADE:
                raise TaskFileError(f"{qrels_path}: line {number}: grade {grade} is outside 0..{MAX_GRADE} (mteb uses "
                                    "grades as gains: a negative or huge grade would distort nDCG)")
            if query_id not in queries:
                raise TaskFileError(f"{qrels_path}: line {number}: query-id {query_id!r} is not in queries.jsonl")
            if doc_id not in corpus:
                raise TaskFileError(f"{qrels_path}: line {number}: corpus-id {doc_id!r} is not in corpus.jsonl")
            if doc_id in qrels[query_id]:
                raise TaskFileError(f"{qrels_path}: line {number}: ({query_id}, {doc_id}) is judged twice")
            qrels[query_id][doc_id] = int(grade)
    if not qrels:
        raise TaskFileError(f"{qrels_path}: no judgments")
    if not any(g > 0 for docs in qrels.values() for g in docs.values()):
        raise TaskFileError(f"{qrels_path}: no judgment has a grade >= 1 (nothing is relevant)")
    return corpus, {q: queries[q] for q in queries if q in qrels}, dict(qrels)


# ---------------------------------------------------------------------------------------------
# Fingerprints


def _task_files(task_type: str, path: Path) -> list[Path]:
    return [path / name for name in BEIR_FILES] if task_type in ("Retrieval", "Reranking") else [path]


def fingerprint(entry: dict[str, Any], base_dir: str | Path | None = None) -> str:
    """SHA-256 (hex) of a task's files and the settings that change its scores.

    Hashed: the type, ``min_score``/``max_score``, the instruction, then for each file its path
    inside the task (``corpus.jsonl``, …; a single file as its name's suffix) and its bytes.
    The name and the folder's location are left out: moving the data keeps the fingerprint.
    """
    task_type = entry["type"]
    path = _resolve(entry, base_dir)
    digest = hashlib.sha256()
    settings = {k: entry.get(k) for k in ("type", "min_score", "max_score", "instruction")}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for file in _task_files(task_type, path):
        label = file.relative_to(path).as_posix() if task_type in ("Retrieval", "Reranking") else path.suffix.lower()
        digest.update(b"\0" + label.encode() + b"\0")
        try:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise TaskFileError(f"{file}: missing") from None
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# mteb tasks


# The provenance fields every local task shares, with what differs for the user's own files.
_COMMON_METADATA: dict[str, Any] = {**LOCAL_TASK_METADATA, "license": "not specified", "sample_creation": "found"}


class _UserFileTask(OneSplitTask):
    """Mixin: the task reads ``source_path`` (a user's file or BEIR folder) with plain Python.

    mteb keeps ``metadata`` on the class, so :func:`user_task` makes one subclass per task.
    """

    source_path: Path
    fingerprint: str


class UserSTS(_UserFileTask, AbsTaskSTS):
    """Sentence pairs with a similarity score; Spearman of cosine similarity with the score."""

    declared_range: tuple[float | None, float | None] = (None, None)

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        low, high = self.declared_range
        columns = read_sts_file(self.source_path, low, high)
        # mteb rescales the gold scores to [0, 1] with these; correlations are unaffected.
        self.min_score = low if low is not None else min(columns["score"])
        self.max_score = high if high is not None else max(columns["score"])
        self._store(Dataset.from_dict(columns))


class UserPairClassification(_UserFileTask, AbsTaskPairClassification):
    """Sentence pairs labelled 0/1; average precision of the similarity (max over similarity functions)."""

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self._store(Dataset.from_dict(read_pair_file(self.source_path)))


class UserRetrieval(_UserFileTask, AbsTaskRetrieval):
    """BEIR folder: every query against the whole corpus (Retrieval) or its judged documents (Reranking)."""

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        corpus, queries, qrels = read_beir_folder(self.source_path)
        rerank = self.metadata.type == "Reranking"
        self._store(
            {
                "corpus": Dataset.from_list([{"id": d, "title": r["title"], "text": r["text"]} for d, r in corpus.items()]),
                "queries": Dataset.from_list([{"id": q, "text": text} for q, text in queries.items()]),
                "relevant_docs": qrels,
                "top_ranked": {q: sorted(docs) for q, docs in qrels.items()} if rerank else None,
            }
        )


_BASES = {"STS": UserSTS, "PairClassification": UserPairClassification, "Retrieval": UserRetrieval, "Reranking": UserRetrieval}
_ALLOWED_KEYS = {"name", "type", "path", "min_score", "max_score", "instruction"}


def _resolve(entry: dict[str, Any], base_dir: str | Path | None) -> Path:
    path = Path(entry["path"]).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def _check_entry(entry: Any, key: str) -> None:
    if not isinstance(entry, dict):
        raise TaskFileError(f"config key '{key}': expected a mapping {{name, type, path, ...}}, got {entry!r}")
    unknown = set(entry) - _ALLOWED_KEYS
    if unknown:
        raise TaskFileError(f"config key '{key}': unknown key(s) {', '.join(sorted(unknown))} "
                            f"(allowed: {', '.join(sorted(_ALLOWED_KEYS))})")
    for required in ("name", "type", "path"):
        if not entry.get(required):
            raise TaskFileError(f"config key '{key}.{required}' is required")
    if not isinstance(entry["name"], str) or not _NAME.match(entry["name"]):
        raise TaskFileError(f"config key '{key}.name': {entry['name']!r} must be letters, digits, '_', '.', '-'")
    if entry["type"] not in USER_TASK_TYPES:
        raise TaskFileError(f"config key '{key}.type': {entry['type']!r} is not one of {', '.join(USER_TASK_TYPES)}")
    if entry["type"] != "STS" and ("min_score" in entry or "max_score" in entry):
        raise TaskFileError(f"config key '{key}': min_score/max_score apply to STS tasks only")
    low, high = entry.get("min_score"), entry.get("max_score")
    for bound, value in (("min_score", low), ("max_score", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TaskFileError(f"config key '{key}.{bound}': expected a number, got {value!r}")
    if low is not None and high is not None and not low < high:
        raise TaskFileError(f"config key '{key}': min_score {low} must be below max_score {high}")


def user_task(entry: dict[str, Any], base_dir: str | Path | None = None, key: str = CONFIG_KEY):
    """The mteb task one ``evaluation.local_tasks`` entry declares (data are read on ``load_data``).

    Relative paths are taken from ``base_dir`` (default: the working directory). The entry is
    checked and the files fingerprinted now, so a missing file fails before any model loads.
    """
    _check_entry(entry, key)
    name, task_type = entry["name"], entry["type"]
    path = _resolve(entry, base_dir)
    if task_type in ("Retrieval", "Reranking") and not path.is_dir():
        raise TaskFileError(f"config key '{key}.path': {path} is not a folder (BEIR layout: {', '.join(BEIR_FILES)})")
    if task_type not in ("Retrieval", "Reranking") and not path.is_file():
        raise TaskFileError(f"config key '{key}.path': {path} is not a file")
    digest = fingerprint(entry, base_dir)
    spec = user_task_spec(task_type)
    instruction = entry.get("instruction") or ""
    if not instruction:
        prompt = None
    elif task_type in ("Retrieval", "Reranking"):
        prompt = {"query": instruction}
    else:
        prompt = instruction  # symmetric pair tasks: both sides, as MTEB's STS/pair tasks
    metadata = TaskMetadata(
        name=name,
        description=f"User {task_type} task from {path}.",
        prompt=prompt,
        # Not a hub dataset: the path records the source, the revision its fingerprint.
        dataset={"path": f"file:{path.resolve()}", "revision": digest},
        type=task_type,
        eval_splits=[spec["split"]],
        main_score=spec["main_score"],
        **_COMMON_METADATA,
    )
    # ``data_fingerprint`` is the name pairrel.evaluate.run.drop_stale_results asks for.
    attrs: dict[str, Any] = {"metadata": metadata, "source_path": path, "fingerprint": digest, "data_fingerprint": digest}
    if task_type == "STS":
        attrs["declared_range"] = (entry.get("min_score"), entry.get("max_score"))
    cls = type(re.sub(r"\W", "_", name), (_BASES[task_type],), attrs)
    return cls()


def _is_mteb_task(name: str) -> bool:
    import mteb

    try:
        mteb.get_task(name)  # the whole registry: superseded, private and beta tasks too
    except KeyError:
        return False
    return True


def user_tasks(entries: list[dict[str, Any]] | None, base_dir: str | Path | None = None) -> list:
    """Every task of ``evaluation.local_tasks``: names unique, and none an MTEB task's name
    (results are filed by task name, so a clash would mix the user's scores into MTEB's)."""
    tasks, seen = [], set()
    for index, entry in enumerate(entries or []):
        key = f"{CONFIG_KEY}[{index}]"
        task = user_task(entry, base_dir, key)
        if task.metadata.name in seen:
            raise TaskFileError(f"config key '{key}.name': {task.metadata.name!r} is used twice")
        if _is_mteb_task(task.metadata.name):
            raise TaskFileError(f"config key '{key}.name': {task.metadata.name!r} is an MTEB task's name; choose another")
        seen.add(task.metadata.name)
        tasks.append(task)
    return tasks
