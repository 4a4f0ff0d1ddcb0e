"""Training batches from prepared sources: one source per batch, every known label kept.

A batch is a pure function of (seed, step), so a resumed run sees exactly the batches it would
have seen (``SourceBatcher.batch_at(step)``; no iterator state is carried between steps).

Step k is built as follows (each draw uses its own ``numpy`` Generator seeded from the tuple
``(seed, k, stream)`` or ``(seed, source, epoch, stream)``):

1. **Source.** Source s is drawn with probability weight_s / Σ weights (sources in name order).
2. **Queries.** If step k is the n-th step (0-based) that drew s, it takes slice
   ``n mod E`` of epoch ``n div E`` of s, where an epoch is a fresh permutation of the source's
   usable queries cut into E = ⌊N / batch_size⌋ slices (``drop_last``; the incomplete tail of
   each epoch is dropped, as in LLM2Vec) or ⌈N / batch_size⌉ slices (last one shorter).
   A query is *usable* if some judged document has target > 0 under the label granularity.
3. **Documents, per query.** The positive is a judged document with the query's highest target
   (uniformly at random among ties). The hard negatives are ``n_negatives`` documents whose
   target is strictly lower than the positive's: judged ones first (uniformly without
   replacement), and if there are too few, random documents of the same source that are not
   judged for this query (other queries' documents, i.e. random negatives). Strictly lower
   *target* rather than grade: under ``binary@2`` a grade-2 document beside a grade-3 positive
   has the same target 1 and is another positive, not a negative.
4. **Labels.** Documents are deduplicated by doc_id (first occurrence order). ``grades[i, j]`` is
   the grade of document j for query i in the source's full judgments, −1 if unjudged, so a
   document relevant to another query of the batch keeps its label for that query — never a
   silent negative. ``targets`` = the label granularity applied to ``grades``.

Prepared sources are the Parquet + meta JSON files of docs/internals.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pairrel.labels import LabelMap, grades_to_targets, parse_label_granularity

COLUMNS = ("query_id", "query", "doc_id", "doc", "grade")
META_KEYS = ("instruction", "weight", "max_grade")

# Stream ids keep the Generators of different draws independent for the same (seed, step).
_SOURCE_STREAM, _PERMUTATION_STREAM, _DOCS_STREAM = 0, 1, 2


@dataclass
class Batch:
    """One training step's texts and labels (docs/internals.md, "Batches").

    ``queries`` are raw texts: the encoder adds ``instruction`` as ``"{instruction}; {text}"``.
    """

    queries: list[str]
    instruction: str
    docs: list[str]
    grades: torch.Tensor  # LongTensor [Q, D]; −1 = unjudged
    targets: torch.Tensor  # FloatTensor [Q, D] in [0, 1]
    source: str
    query_ids: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    step: int = -1


@dataclass
class SourceData:
    """A prepared source in memory, its judgments stored per query (CSR layout).

    The judgments of query code q are rows ``offsets[q]:offsets[q + 1]`` of ``judged_docs``
    (doc codes) and ``judged_grades``; each (query, doc) pair occurs once.
    """

    name: str
    instruction: str
    weight: float
    max_grade: int
    query_ids: np.ndarray
    query_texts: np.ndarray
    doc_ids: np.ndarray
    doc_texts: np.ndarray
    offsets: np.ndarray
    judged_docs: np.ndarray
    judged_grades: np.ndarray

    def judgments(self, query_code: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[query_code], self.offsets[query_code + 1]
        return self.judged_docs[lo:hi], self.judged_grades[lo:hi]


def _first_text_per_code(codes: np.ndarray, texts: pd.Series, ids: pd.Index, what: str, path: Path) -> np.ndarray:
    """The text of each code; ValueError if one id carries two different texts."""
    frame = pd.DataFrame({"code": codes, "text": texts.to_numpy(dtype=object)})
    counts = frame.groupby("code")["text"].nunique()
    if (counts > 1).any():
        bad = ids[int(counts.index[np.argmax(counts.to_numpy() > 1)])]
        raise ValueError(f"{path}: {what} {bad!r} appears with different texts")
    first = frame.drop_duplicates("code").sort_values("code")
    return first["text"].to_numpy(dtype=object)


def load_prepared_source(parquet_path: str | Path, meta_json_path: str | Path | None = None) -> SourceData:
    """Read ``{source}.parquet`` and ``{source}.meta.json`` (default: beside the Parquet file)."""
    parquet_path = Path(parquet_path)
    meta_path = Path(meta_json_path) if meta_json_path is not None else parquet_path.with_suffix(".meta.json")
    from pairrel.io import read_json

    try:
        meta = read_json(meta_path)  # errors name the file and line
    except OSError as err:
        raise ValueError(f"{meta_path}: cannot read the source's meta JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    max_grade, weight = int(meta["max_grade"]), float(meta["weight"])
    if max_grade < 1 or weight <= 0:
        raise ValueError(f"{meta_path}: need max_grade >= 1 and weight > 0, got {max_grade} and {weight}")

    try:  # a truncated or foreign file: pyarrow's message alone does not say which file
        schema_names = pq.read_schema(parquet_path).names
        absent = [c for c in COLUMNS if c not in schema_names]
        if absent:
            raise ValueError(f"{parquet_path}: missing column(s) {', '.join(absent)} (expected {', '.join(COLUMNS)})")
        frame = pq.read_table(parquet_path, columns=list(COLUMNS)).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{parquet_path}: cannot read the prepared source ({err}); delete it to prepare it again") from None
    if frame.empty:
        raise ValueError(f"{parquet_path}: no rows")
    if frame[list(COLUMNS)].isna().any().any():
        column = frame.columns[frame.isna().any()].tolist()[0]
        raise ValueError(f"{parquet_path}: null values in column {column!r}")
    grades = frame["grade"].to_numpy().astype(np.int64)
    out_of_range = (grades < 0) | (grades > max_grade)
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        raise ValueError(f"{parquet_path}: row {row} has grade {grades[row]} outside 0..{max_grade} (max_grade in {meta_path.name})")

    query_codes, query_ids = pd.factorize(frame["query_id"])
    doc_codes, doc_ids = pd.factorize(frame["doc_id"])
    query_texts = _first_text_per_code(query_codes, frame["query"], query_ids, "query_id", parquet_path)
    doc_texts = _first_text_per_code(doc_codes, frame["doc"], doc_ids, "doc_id", parquet_path)

    pairs = pd.DataFrame({"q": query_codes, "d": doc_codes, "g": grades}).drop_duplicates()
    clash = pairs.duplicated(["q", "d"], keep=False)
    if clash.any():
        first = pairs[clash].iloc[0]
        raise ValueError(
            f"{parquet_path}: pair (query_id {query_ids[first.q]!r}, doc_id {doc_ids[first.d]!r}) is judged with different grades"
        )
    pairs = pairs.sort_values(["q", "d"], kind="stable")
    offsets = np.zeros(len(query_ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(pairs["q"].to_numpy(), minlength=len(query_ids)))
    return SourceData(
        name=str(meta.get("source", parquet_path.stem)),
        instruction=str(meta["instruction"] or ""),
        weight=weight,
        max_grade=max_grade,
        query_ids=np.asarray(query_ids, dtype=object),
        query_texts=query_texts,
        doc_ids=np.asarray(doc_ids, dtype=object),
        doc_texts=doc_texts,
        offsets=offsets,
        judged_docs=pairs["d"].to_numpy(dtype=np.int64),
        judged_grades=pairs["g"].to_numpy(dtype=np.int64),
    )


class SourceBatcher:
    """Deterministic, resumable batches over several prepared sources (see the module docstring).

    Args:
        sources: source name → SourceData (``load_prepared_source``).
        batch_size: queries per batch (over all devices).
        n_negatives: hard negatives per query.
        label_granularity: e.g. ``binary@2``, ``graded-linear`` (pairrel.labels).
        seed: non-negative int; batch k is a pure function of (seed, k).
        drop_last: drop each epoch's incomplete last slice of a source's queries.
    """

    def __init__(
        self,
        sources: dict[str, SourceData],
        batch_size: int,
        n_negatives: int,
        label_granularity: str,
        seed: int,
        drop_last: bool = True,
    ) -> None:
        if not sources:
            raise ValueError("SourceBatcher needs at least one source")
        if batch_size < 1 or n_negatives < 0 or seed < 0:
            raise ValueError(f"need batch_size >= 1, n_negatives >= 0, seed >= 0; got {batch_size}, {n_negatives}, {seed}")
        self.label_map: LabelMap = parse_label_granularity(label_granularity)
        self.batch_size, self.n_negatives, self.seed, self.drop_last = batch_size, n_negatives, seed, drop_last
        self.names = sorted(sources)
        self.sources = [sources[name] for name in self.names]
        weights = np.array([s.weight for s in self.sources], dtype=np.float64)
        self._cumulative = np.cumsum(weights / weights.sum())
        # Per source: judged targets (aligned with judged_docs) and the usable query codes.
        self._targets = [grades_to_targets(torch.tensor(s.judged_grades), self.label_map, s.max_grade).numpy() for s in self.sources]
        self._usable = []
        self._slices_per_epoch = []
        for name, source, targets in zip(self.names, self.sources, self._targets):
            best = np.maximum.reduceat(targets, source.offsets[:-1])  # every query has ≥ 1 judgment
            usable = np.flatnonzero(best > 0)
            n_slices = len(usable) // batch_size if drop_last else -(-len(usable) // batch_size)
            if n_slices == 0:
                raise ValueError(
                    f"source {name!r}: {len(usable)} queries with a positive under {label_granularity!r}, "
                    f"fewer than batch_size {batch_size} (drop_last)"
                )
            self._usable.append(usable)
            self._slices_per_epoch.append(n_slices)
        self._choices: list[int] = []  # source index of steps 0, 1, … (memo of a pure function)
        self._uses: list[int] = []  # how many earlier steps drew the same source
        self._draws = [0] * len(self.sources)  # steps so far in self._choices that drew each source
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    # -- pure functions of (seed, step) ------------------------------------------------------

    def _source_of(self, step: int) -> tuple[int, int]:
        """(source index, how many earlier steps drew that source) for ``step``."""
        while len(self._choices) <= step:
            u = np.random.default_rng([self.seed, len(self._choices), _SOURCE_STREAM]).random()
            choice = min(int(np.searchsorted(self._cumulative, u, side="right")), len(self.sources) - 1)
            self._choices.append(choice)
            self._uses.append(self._draws[choice])
            self._draws[choice] += 1
        return self._choices[step], self._uses[step]

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._permutations:
            if len(self._permutations) > 4 * len(self.sources):
                self._permutations.clear()
            # crc32 of the name: adding a source leaves the other sources' epochs unchanged.
            name_key = zlib.crc32(self.names[source].encode())
            rng = np.random.default_rng([self.seed, name_key, epoch, _PERMUTATION_STREAM])
            self._permutations[key] = rng.permutation(len(self._usable[source]))
        return self._permutations[key]

    def _query_codes(self, source: int, use: int) -> np.ndarray:
        epoch, index = divmod(use, self._slices_per_epoch[source])
        order = self._permutation(source, epoch)
        return self._usable[source][order[index * self.batch_size : (index + 1) * self.batch_size]]

    def _documents_for(self, source: int, query: int, rng: np.random.Generator) -> list[int]:
        """Doc codes: the positive, then the hard negatives (rules 3 in the module docstring)."""
        data = self.sources[source]
        docs, _ = data.judgments(query)
        lo, hi = data.offsets[query], data.offsets[query + 1]
        targets = self._targets[source][lo:hi]
        top = targets.max()
        positive = int(docs[rng.choice(np.flatnonzero(targets == top))])
        lower = docs[targets < top]
        take = min(self.n_negatives, len(lower))
        negatives = [int(d) for d in rng.choice(lower, size=take, replace=False)] if take else []
        missing = self.n_negatives - take
        if missing:
            judged = set(docs.tolist())
            # Rejection sampling; bounded so a source with almost no other documents ends it.
            for _ in range(20 * missing + 100):
                candidate = int(rng.integers(len(data.doc_ids)))
                if candidate not in judged and candidate not in negatives:
                    negatives.append(candidate)
                    if len(negatives) == self.n_negatives:
                        break
        return [positive, *negatives]

    def batch_at(self, step: int) -> Batch:
        """The batch of training step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        source, use = self._source_of(step)
        data = self.sources[source]
        queries = self._query_codes(source, use)
        rng = np.random.default_rng([self.seed, step, _DOCS_STREAM])
        column: dict[int, int] = {}
        for query in queries:
            for doc in self._documents_for(source, int(query), rng):
                column.setdefault(doc, len(column))
        grades = torch.full((len(queries), len(column)), -1, dtype=torch.long)
        for row, query in enumerate(queries):
            docs, doc_grades = data.judgments(int(query))
            for doc, grade in zip(docs.tolist(), doc_grades.tolist()):
                if doc in column:
                    grades[row, column[doc]] = grade
        doc_codes = list(column)
        return Batch(
            queries=[str(t) for t in data.query_texts[queries]],
            instruction=data.instruction,
            docs=[str(t) for t in data.doc_texts[doc_codes]],
            grades=grades,
            targets=grades_to_targets(grades, self.label_map, data.max_grade),
            source=self.names[source],
            query_ids=[str(q) for q in data.query_ids[queries]],
            doc_ids=[str(d) for d in data.doc_ids[doc_codes]],
            step=step,
        )

    # -- iteration ---------------------------------------------------------------------------

    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        """Batches of steps start_step, start_step + 1, … (endless)."""
        step = start_step
        while True:
            yield self.batch_at(step)
            step += 1

    def iter_steps(self, num_steps: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches of steps start_step … num_steps − 1 (``num_steps`` = the run's total steps)."""
        for step in range(start_step, num_steps):
            yield self.batch_at(step)
