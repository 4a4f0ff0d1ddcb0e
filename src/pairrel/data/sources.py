"""Prepare one training source as Parquet: one row per judged (query, document) pair.

Output (docs/internals.md): ``out.parquet`` with columns query_id, query, doc_id, doc, grade
(int16, the raw grade), written in row groups of ``chunk_size`` rows to a temporary file that
replaces ``out`` only when complete; ``out.meta.json`` beside it; for K-fold sources also
``out.folds.json``. Where the pairs come from:

* ``dataset:`` an ir_datasets id. ``pairs: auto`` (default) reads docpairs when the dataset has
  them (a line (q, a, b) gives (q, a, grade 1) and (q, b, grade 0)), else qrels (raw grades;
  grade-0 / negative judgments are the hard negatives). ``pairs: qrels|docpairs`` forces one.
  Document texts are looked up per chunk with ``docs_store().get_many`` (never a corpus scan,
  so TREC-DL reads only the judged passages); query texts are read once into a dict.
* ``jsonl:`` a local file, one object per line: ``{"query": str, "positive": str | [str],
  "negative": str | [str]}`` (negative optional); ids are ``q``/``d`` + 16 hex digits of the
  text's SHA-1, so repeated texts share an id; positives get grade 1, negatives grade 0.
* ``folds: K, fold: i`` (graded qrels sources only): only the training queries of fold i are
  written; ``out.folds.json`` lists every fold's train/test query ids (trecdl.kfold_queries,
  seed ``fold_seed``).
* ``max_queries: N`` (older name: ``max_examples``): keep the first N distinct query ids in
  file order (qrels, docpairs, JSONL); later lines of those queries are kept, lines of other
  queries skipped. Set to the number of examples of LLM2Vec's released file, it gives an
  ir_datasets source the size of the release's sample (not the same sample).
* ``symmetric: true``: recorded in the meta file; batches then put the instruction on the
  documents too (pairrel.data.batching).
* ``parts:`` a pooled source (pairrel.data.parts): several JSONL files written into one Parquet
  file, in config order, each row carrying its part's instruction in two more columns,
  ``query_instruction`` and ``doc_instruction`` ("" unless the part is symmetric). Ids are
  prefixed with the part's name (``allnli_split2:q…``): the same text in two parts is two
  examples under two instructions, as in LLM2Vec, where every line is its own example.
  ``max_queries`` caps each part.
* Negative qrels grades (dpr-w100's −1 = "random negative sample") are skipped and counted as
  ``negative_grades``: −1 means *unjudged* in batches, and random negatives come from the other
  queries' documents anyway. dpr-w100's grade 0 (BM25 "hard" negatives) are kept: they are the
  dataset's own mined hard negatives.

Memory is bounded by the number of queries (their texts and the judged (query, positive) keys),
never by the corpus or the docpairs file: pairs stream through chunks.

Bad input (the rule): input that makes the output wrong is an error naming the file and line
(or the dataset id and id); input that can be skipped without changing what remains is skipped
and counted under ``warnings`` in the meta file and in the log. Errors:
  malformed JSONL (not JSON, not an object, query not a non-empty string, positive/negative not a
  string or list of strings); malformed qrels (not 4 columns, non-integer grade); the same
  (query, doc) judged twice with different grades; a query id listed twice with different texts;
  a source that yields no pairs (empty, or every judged document missing); both or neither of
  dataset/jsonl; a dataset or JSONL source without an instruction ("" for none); folds on a
  source without qrels.
Counted warnings:
  ``missing_docs`` judged document absent from the corpus (pair skipped); ``missing_queries``
  judged query absent from the queries file (skipped); ``duplicate_pairs`` the same (query, doc)
  again with the same grade (kept once; for docpairs/JSONL negatives, within a chunk);
  (a negative that is also a positive of its query is dropped and counted here too);
  ``duplicate_queries`` a query id listed twice with the same text; ``no_positive`` a JSONL line
  without positives (skipped); ``blank_lines`` blank JSONL lines; ``negative_grades`` qrels with
  a grade below 0 (skipped).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pairrel.config import fill_source_defaults
from pairrel.io import iter_json_objects, write_json
from pairrel.layout import FOLDS, META
from pairrel.data import trecdl
from pairrel.data.parts import is_pooled, source_parts
from pairrel.data.prefetch import require_files, source_components
from pairrel.data.registry import LocalDataError, built_docs_store, load_dataset, local_dir, qrels_line, read_meta

_logger = logging.getLogger(__name__)

CHUNK_SIZE = 20_000
SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("doc_id", pa.string()),
    ("doc", pa.string()), ("grade", pa.int16()),
])
# A pooled source's Parquet file: each row's query and document instructions as well.
POOLED_SCHEMA = SCHEMA.append(pa.field("query_instruction", pa.string())).append(pa.field("doc_instruction", pa.string()))
WARNING_EXAMPLES = 3  # examples of each warning kind shown in the log


class SourceError(ValueError):
    """Bad input that makes a prepared source wrong (see the module docstring's rule)."""


class _Warnings:
    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: str, n: int = 1) -> None:
        self.counts[kind] += n
        examples = self.examples.setdefault(kind, [])
        if len(examples) < WARNING_EXAMPLES:
            examples.append(example)


def _text(record) -> str:
    return record.default_text() if hasattr(record, "default_text") else record.text


def text_id(prefix: str, text: str) -> str:
    """Stable id of a text: prefix + first 16 hex digits of its SHA-1 (UTF-8)."""
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- writing

class _ParquetSink:
    """Row groups into a temporary file; ``commit`` renames it over the target."""

    def __init__(self, out: Path, schema: pa.Schema = SCHEMA):
        self.out, self.schema = out, schema
        self.tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.n_rows = 0
        self.grades: Counter = Counter()
        self.query_ids: set[str] = set()

    def write(self, rows: dict[str, list]) -> None:
        if not rows["query_id"]:
            return
        self.writer.write_table(pa.table(rows, schema=self.schema))
        self.n_rows += len(rows["query_id"])
        self.grades.update(rows["grade"])
        self.query_ids.update(rows["query_id"])

    def commit(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _rows() -> dict[str, list]:
    return {"query_id": [], "query": [], "doc_id": [], "doc": [], "grade": []}


# ----------------------------------------------------------------------------- ir_datasets

def _read_queries(dataset, dataset_id: str, wanted: set | None, warnings: _Warnings) -> dict[str, str]:
    texts: dict[str, str] = {}
    for query in dataset.queries_iter():
        if wanted is not None and query.query_id not in wanted:
            continue
        text = _text(query)
        previous = texts.setdefault(query.query_id, text)
        if previous is not text:
            if previous != text:
                raise SourceError(f"{dataset_id}: query id {query.query_id!r} is listed twice with "
                                  f"different texts ({previous!r} and {text!r})")
            warnings.add("duplicate_queries", query.query_id)
    return texts


def _first_bad_qrels_line(dataset) -> str:
    """'<path> line N: <content>' of the first malformed qrels line, when the file is readable."""
    try:
        path = Path(dataset.qrels_handler().qrels_path())
    except Exception:  # not every qrels handler has one plain file
        return "the qrels file"
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            cols = line.split()
            if line != "\n" and (len(cols) != 4 or not cols[3].lstrip("-").isdigit()):
                return f"{path}: line {number}: {line.rstrip()!r} (expected 'query_id 0 doc_id grade')"
    return str(path)


def _qrels(dataset, dataset_id: str) -> Iterator:
    try:
        yield from dataset.qrels_iter()
    except LocalDataError:
        raise  # already names the file and line
    except (RuntimeError, ValueError) as err:
        raise SourceError(f"{dataset_id}: malformed qrels: {_first_bad_qrels_line(dataset)}: {err}") from None


def _first_queries(query_ids: Iterator[str], cap: int | None) -> set | None:
    if cap is None:
        return None
    kept: dict[str, None] = {}
    for qid in query_ids:
        if len(kept) >= cap:
            break
        kept.setdefault(qid, None)
    return set(kept)


def _check_grade(qrel, dataset, dataset_id: str, max_grade: int | None) -> None:
    """A training grade must be in 0..max_grade (batching and the label maps assume it)."""
    if qrel.relevance >= 0 and (max_grade is None or qrel.relevance <= max_grade):
        return
    where = dataset_id
    with contextlib.suppress(Exception):  # not every qrels handler has one plain file
        path = Path(dataset.qrels_handler().qrels_path())
        where = f"{path}: line {qrels_line(path, qrel.query_id, qrel.doc_id)}"
    raise SourceError(f"{where}: query {qrel.query_id} doc {qrel.doc_id} has grade {qrel.relevance}, outside "
                      f"0..{max_grade if max_grade is not None else ''}; training grades must lie in 0..max_grade")


def _qrels_pairs(dataset, dataset_id: str, allowed: set | None, warnings: _Warnings,
                 max_grade: int | None = None) -> Iterator[tuple]:
    judged: dict[tuple[str, str], int] = {}  # qrels are bounded by the judged queries
    for qrel in _qrels(dataset, dataset_id):
        if allowed is not None and qrel.query_id not in allowed:
            continue
        if qrel.relevance < 0:
            # dpr-w100 (NQ, TriviaQA) marks its random negatives -1: not a training grade
            warnings.add("negative_grades", f"{qrel.query_id} {qrel.doc_id} {qrel.relevance}")
            continue
        _check_grade(qrel, dataset, dataset_id, max_grade)
        key = (qrel.query_id, qrel.doc_id)
        if key in judged:
            if judged[key] != qrel.relevance:
                raise SourceError(f"{dataset_id}: query {qrel.query_id} doc {qrel.doc_id} is judged twice "
                                  f"with different grades ({judged[key]} and {qrel.relevance})")
            warnings.add("duplicate_pairs", f"{key[0]} {key[1]}")
            continue
        judged[key] = qrel.relevance
        yield qrel.query_id, qrel.doc_id, qrel.relevance


def _docpair_pairs(dataset, allowed: set | None, cap: int | None, warnings: _Warnings,
                   chunk_size: int) -> Iterator[tuple]:
    positives: set[tuple[str, str]] = set()  # one per (query, positive): bounded by the queries
    negatives_in_chunk: set[tuple[str, str]] = set()
    seen_queries: set[str] = set()
    for n, pair in enumerate(dataset.docpairs_iter()):
        if n % chunk_size == 0:
            negatives_in_chunk.clear()
        qid = pair.query_id
        if allowed is not None and qid not in allowed:
            continue
        if qid not in seen_queries:
            if cap is not None and len(seen_queries) >= cap:
                continue
            seen_queries.add(qid)
        for doc_id, grade, seen in ((pair.doc_id_a, 1, positives), (pair.doc_id_b, 0, negatives_in_chunk)):
            if (qid, doc_id) in seen or (grade == 0 and (qid, doc_id) in positives):
                warnings.add("duplicate_pairs", f"{qid} {doc_id}")
                continue
            seen.add((qid, doc_id))
            yield qid, doc_id, grade


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _dataset_rows(dataset, pairs: Iterator[tuple], query_texts: dict,
                  warnings: _Warnings, chunk_size: int) -> Iterator[dict]:
    store = built_docs_store(dataset)  # one builder when several jobs share the index
    for chunk in _chunks(pairs, chunk_size):
        docs = store.get_many({doc_id for _, doc_id, _ in chunk})
        rows = _rows()
        for qid, doc_id, grade in chunk:
            if qid not in query_texts:
                warnings.add("missing_queries", qid)
                continue
            doc = docs.get(doc_id)
            if doc is None:
                warnings.add("missing_docs", f"{qid} {doc_id}")
                continue
            rows["query_id"].append(qid)
            rows["query"].append(query_texts[qid])
            rows["doc_id"].append(doc_id)
            rows["doc"].append(_text(doc))
            rows["grade"].append(grade)
        yield rows


# ----------------------------------------------------------------------------- JSONL

def _as_texts(value, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    raise SourceError(f"{where}: key {key!r} must be a string or a list of strings, got {type(value).__name__}")


def _jsonl_rows(path: Path, cap: int | None, warnings: _Warnings, chunk_size: int, id_prefix: str = "") -> Iterator[dict]:
    positives: set[tuple[str, str]] = set()
    negatives_in_chunk: set[tuple[str, str]] = set()
    seen_queries: set[str] = set()
    rows = _rows()

    def blank(number: int) -> None:
        warnings.add("blank_lines", f"{path}: line {number}")

    for number, record in iter_json_objects(path, error=SourceError, on_blank=blank):
        where = f"{path}: line {number}"
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise SourceError(f"{where}: key 'query' must be a non-empty string")
        docs = [(d, 1, positives) for d in _as_texts(record.get("positive"), "positive", where)]
        if not docs:
            warnings.add("no_positive", where)
            continue
        docs += [(d, 0, negatives_in_chunk) for d in _as_texts(record.get("negative"), "negative", where)]
        qid = id_prefix + text_id("q", query)
        if qid not in seen_queries:
            if cap is not None and len(seen_queries) >= cap:
                continue
            seen_queries.add(qid)
        for doc, grade, seen in docs:
            doc_id = id_prefix + text_id("d", doc)
            if (qid, doc_id) in seen or (grade == 0 and (qid, doc_id) in positives):
                warnings.add("duplicate_pairs", f"{where}: {doc_id}")
                continue
            seen.add((qid, doc_id))
            for column, value in zip(rows, (qid, query, doc_id, doc, grade)):
                rows[column].append(value)
        if len(rows["query_id"]) >= chunk_size:
            yield rows
            rows = _rows()
            negatives_in_chunk.clear()
    yield rows


# ----------------------------------------------------------------------------- entry point

def _max_grade(dataset, dataset_id: str, use_docpairs: bool, observed: Counter) -> int:
    if use_docpairs:
        return 1
    directory = local_dir(dataset_id)
    if directory is not None and "max_grade" in read_meta(directory):
        return read_meta(directory)["max_grade"]
    defs = dataset.qrels_defs() or {}
    return max(list(defs) + list(observed)) if (defs or observed) else 0


def query_cap(name: str, source_cfg: dict) -> int | None:
    """The source's cap on prepared queries: ``max_queries`` (or its older name ``max_examples``,
    which only an unvalidated config can hold); ``source_cfg`` has the schema's defaults filled."""
    cap, older = source_cfg["max_queries"], source_cfg.get("max_examples")
    if cap is not None and older is not None:
        raise SourceError(f"source {name!r}: give 'max_queries' or its older name 'max_examples', not both")
    cap = older if cap is None else cap
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        raise SourceError(f"source {name!r}: 'max_queries' must be a positive integer, got {cap!r}")
    return cap


def prepare_source(name: str, source_cfg: dict, out_parquet: str | Path,
                   log: Callable[[str], None] | None = None, chunk_size: int = CHUNK_SIZE) -> dict:
    """Prepare source ``name`` (one entry of a data mix's ``sources:``) into ``out_parquet``.

    Returns the meta dict also written to ``<out>.meta.json`` (see docs/internals.md).
    A fault in a local dataset file (pairrel.data.registry) is a SourceError naming file and line.
    """
    try:
        return _prepare_source(name, source_cfg, out_parquet, log, chunk_size)
    except LocalDataError as err:
        raise SourceError(str(err)) from None


@dataclass
class _Plan:
    """Where a source's rows come from: the row chunks to write and what the meta needs."""

    row_chunks: Iterator[dict]
    total: int | None            # pairs expected (progress bar), when known
    max_grade: Callable[[Counter], int]  # from the grades written
    folds_doc: dict | None = None
    schema: pa.Schema = SCHEMA


def _jsonl_plan(name: str, source_cfg: dict, meta: dict, cap, warnings: _Warnings, chunk_size: int) -> _Plan:
    path = Path(source_cfg["jsonl"])
    if not path.is_file():
        raise SourceError(f"source {name!r}: JSONL file {path} does not exist")
    if source_cfg["folds"]:
        raise SourceError(f"source {name!r}: 'folds' needs graded qrels; {path} is a JSONL source")
    meta.update(dataset_id=None, jsonl=str(path), pairs_from="jsonl")
    return _Plan(_jsonl_rows(path, cap, warnings, chunk_size), None, lambda grades: 1)


def _pooled_plan(name: str, source_cfg: dict, meta: dict, cap, warnings: _Warnings, chunk_size: int) -> _Plan:
    # The schema says the same; ``pairrel data prepare --config`` may run on an unvalidated config.
    own = [key for key in ("instruction", "symmetric", "origin", "folds") if source_cfg.get(key)]
    if own:
        raise SourceError(f"source {name!r}: a pooled source has no {', '.join(own)} of its own (its parts carry "
                          "instruction, symmetric and origin; folds need graded qrels)")
    parts = source_parts(name, source_cfg)
    if len(parts) < 2:
        raise SourceError(f"source {name!r}: 'parts' needs at least 2 JSONL files, got {len(parts)}")
    for part, spec in parts.items():
        for key in ("jsonl", "instruction"):
            if not isinstance(spec.get(key), str) or (key == "jsonl" and not spec[key]):
                raise SourceError(f"source {name!r}, part {part!r}: key {key!r} must be a string"
                                  + (" (a file path)" if key == "jsonl" else ""))
        if not Path(spec["jsonl"]).is_file():
            raise SourceError(f"source {name!r}, part {part!r}: JSONL file {spec['jsonl']} does not exist")
    meta.update(dataset_id=None, pairs_from="jsonl", instruction="",
                parts={part: {"jsonl": str(spec["jsonl"]), "instruction": spec["instruction"],
                              "symmetric": bool(spec["symmetric"])} for part, spec in parts.items()})

    def row_chunks() -> Iterator[dict]:
        for part, spec in parts.items():
            doc_instruction = spec["instruction"] if spec["symmetric"] else ""
            for rows in _jsonl_rows(Path(spec["jsonl"]), cap, warnings, chunk_size, id_prefix=f"{part}:"):
                n = len(rows["query_id"])
                yield {**rows, "query_instruction": [spec["instruction"]] * n, "doc_instruction": [doc_instruction] * n}

    return _Plan(row_chunks(), None, lambda grades: 1, schema=POOLED_SCHEMA)


def _fold_split(name: str, source_cfg: dict, dataset, dataset_id: str, meta: dict) -> tuple[set, dict]:
    """Training query ids of the source's fold, and the folds document listing every fold."""
    if source_cfg.get("fold") is None:  # set by pairrel.study.source_job for K-fold sources
        raise SourceError(f"source {name!r} has {source_cfg['folds']} folds: say which one to prepare ('fold')")
    k, fold, seed = int(source_cfg["folds"]), int(source_cfg["fold"]), int(source_cfg["fold_seed"])
    splits = trecdl.kfold_queries(trecdl.judged_query_ids(dataset), k, seed)
    if not 0 <= fold < k:
        raise SourceError(f"source {name!r}: fold must be in 0..{k - 1}, got {fold}")
    meta.update(folds=k, fold=fold, fold_seed=seed)
    folds_doc = {"dataset_id": dataset_id, "k": k, "seed": seed, "fold": fold,
                 "folds": [{"fold": i, "train": tr, "test": te} for i, (tr, te) in enumerate(splits)]}
    return set(splits[fold][0]), folds_doc


def _dataset_plan(name: str, source_cfg: dict, meta: dict, cap, warnings: _Warnings, chunk_size: int) -> _Plan:
    dataset_id = source_cfg["dataset"]
    dataset = load_dataset(dataset_id)
    components = source_components(dataset, source_cfg["pairs"])
    use_docpairs = "docpairs" in components
    if use_docpairs and not dataset.has_docpairs():
        raise SourceError(f"source {name!r}: {dataset_id} has no docpairs")
    if not use_docpairs and not dataset.has_qrels():
        raise SourceError(f"source {name!r}: {dataset_id} has neither qrels nor docpairs")
    require_files(dataset_id, components)  # offline: fail now, naming every missing file
    directory = local_dir(dataset_id)
    if not meta["instruction"] and directory is not None:
        meta["instruction"] = read_meta(directory).get("instruction", "")

    allowed, folds_doc = None, None
    if source_cfg["folds"]:
        if use_docpairs:
            raise SourceError(f"source {name!r}: 'folds' needs graded qrels; {dataset_id} is read as docpairs")
        allowed, folds_doc = _fold_split(name, source_cfg, dataset, dataset_id, meta)
    if cap is not None and not use_docpairs:  # docpairs apply the cap while streaming
        allowed = _first_queries((q.query_id for q in _qrels(dataset, dataset_id)
                                  if allowed is None or q.query_id in allowed), cap)
    query_texts = _read_queries(dataset, dataset_id, allowed, warnings)
    if use_docpairs:
        pairs = _docpair_pairs(dataset, allowed, cap, warnings, chunk_size)
        count = (dataset.docpairs_metadata() or {}).get("count") if hasattr(dataset, "docpairs_metadata") else None
        total = 2 * count if count else None
    else:
        declared = read_meta(directory).get("max_grade") if directory is not None else None
        pairs, total = _qrels_pairs(dataset, dataset_id, allowed, warnings, declared), None
    meta.update(dataset_id=dataset_id, pairs_from="docpairs" if use_docpairs else "qrels")
    return _Plan(_dataset_rows(dataset, pairs, query_texts, warnings, chunk_size), total,
                 lambda grades: _max_grade(dataset, dataset_id, use_docpairs, grades), folds_doc)


def _prepare_source(name: str, source_cfg: dict, out_parquet: str | Path,
                    log: Callable[[str], None] | None, chunk_size: int) -> dict:
    log = log or _logger.info
    out = Path(out_parquet)
    source_cfg = fill_source_defaults(source_cfg)  # the schema owns the defaults
    has_dataset, has_jsonl = bool(source_cfg.get("dataset")), bool(source_cfg.get("jsonl"))
    if has_dataset + has_jsonl + is_pooled(source_cfg) != 1:
        raise SourceError(f"source {name!r}: give exactly one of 'dataset' (an ir_datasets id), 'jsonl' (a file) "
                          "or 'parts' (a pooled source)")
    if not is_pooled(source_cfg) and not isinstance(source_cfg.get("instruction"), str):
        raise SourceError(f"source {name!r}: key 'instruction' is required: the query-side instruction "
                          "(\"\" for none)")
    cap = query_cap(name, source_cfg)
    warnings = _Warnings()
    # a pooled source's parts carry the instructions (_pooled_plan records "" for the source)
    meta = {"source": name, "instruction": "" if is_pooled(source_cfg) else source_cfg["instruction"],
            "weight": source_cfg["weight"]}
    if source_cfg["symmetric"]:  # absent = asymmetric (keeps older meta files valid)
        meta["symmetric"] = True
    make_plan = _pooled_plan if is_pooled(source_cfg) else _jsonl_plan if has_jsonl else _dataset_plan
    plan = make_plan(name, source_cfg, meta, cap, warnings, chunk_size)
    _write_prepared(name, out, plan, meta, warnings)
    for kind, count in sorted(warnings.counts.items()):
        log(f"source {name}: warning {kind}: {count} (e.g. {'; '.join(warnings.examples[kind])})")
    log(f"source {name}: {meta['n_pairs']} pairs, {meta['n_queries']} queries, grades {meta['grade_counts']} -> {out}")
    return meta


def _write_prepared(name: str, out: Path, plan: _Plan, meta: dict, warnings: _Warnings) -> None:
    """Stream the rows into ``out`` and write the meta (and folds) beside it: all or nothing."""
    sink = _ParquetSink(out, plan.schema)
    try:
        with tqdm(total=plan.total, unit="pair", desc=f"prepare {name}", mininterval=1.0, leave=False) as bar:
            for rows in plan.row_chunks:
                sink.write(rows)
                bar.update(len(rows["query_id"]))
        if sink.n_rows == 0:
            raise SourceError(f"source {name!r} yielded no pairs (warnings: {dict(warnings.counts) or 'none'}); "
                              "an empty source is an error")
        meta.update(max_grade=plan.max_grade(sink.grades), n_queries=len(sink.query_ids), n_pairs=sink.n_rows,
                    grade_counts={str(g): sink.grades[g] for g in sorted(sink.grades)},
                    warnings=dict(sorted(warnings.counts.items())))
        if plan.folds_doc is not None:
            write_json(out.with_suffix(FOLDS), plan.folds_doc)
        write_json(out.with_suffix(META), meta)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
