"""Training batches from prepared sources: one source per batch, every known label kept.

A batch is a pure function of (seed, step), so a resumed run sees exactly the batches it would
have seen (``SourceBatcher.batch_at(step)``; no iterator state is carried between steps). Each
draw uses its own ``numpy`` Generator seeded from a tuple such as ``(seed, k, stream)`` or
``(seed, crc32(source name), pass, stream)``.

A query is *usable* if some judged document has target > 0 under the label granularity; only
usable queries are batched (a query without a positive gives the softmax loss no target).

**Which source and which queries (the sampling rule of the data mix, ``sampling:``).**

* ``weighted`` (default). Step k draws source s with probability weight_s / Σ weights (sources
  in name order). If step k is the n-th step (0-based) that drew s, it takes slice ``n mod E``
  of epoch ``n div E`` of s, where an epoch is a fresh permutation of the source's usable
  queries cut into E = ⌊N / batch_size⌋ slices (``drop_last``; the incomplete tail of each
  epoch is dropped) or ⌈N / batch_size⌉ slices (last one shorter). A small source is revisited
  many times while a large one is still in its first epoch.
* ``proportional`` (LLM2Vec's supervised loader). One *pass* = every source's usable queries
  permuted (per source and pass) and cut into E_s = ⌊N_s / B⌋ full batches (``drop_last``), all
  T = Σ_s E_s batches of all sources in one random order (per pass). Step k is batch
  ``k mod T`` of pass ``k div T``. Within a pass every query appears at most once, and a
  source's share of steps is E_s / T — the size of its file, not a weight (weights are
  ignored). LLM2Vec applies this to the released files once, for one pass; here passes repeat
  with fresh permutations when the run has more steps than T.

**Which documents, per query** (``docs_per_query``; documents are then deduplicated by doc_id in
first-occurrence order).

* ``docs_per_query`` unset (default; LLM2Vec's recipe): the positive is a judged document with
  the query's highest target (uniformly at random among ties); then ``n_negatives`` hard
  negatives whose target is strictly lower than the positive's: judged ones first (uniformly
  without replacement), and if there are too few, random documents of the same source that are
  not judged for this query (random negatives). Strictly lower *target* rather than grade:
  under ``binary@2`` a grade-2 document beside a grade-3 positive is another positive.
* ``docs_per_query: m`` (graded batches, e.g. TREC-DL): the query brings m of its *judged*
  documents, drawn across the raw grades it has. With G = its distinct grades, ordered as
  [highest, lowest, then the others from high to low], one document is drawn uniformly from
  each of the first min(m, |G|) grades (so every grade is represented when m ≥ |G|, and the
  highest grade — the positive — always is); the remaining m − |G| are drawn uniformly without
  replacement from its other judged documents, so beyond one per grade the grades appear in
  proportion to how often the query has them. A query with at most m judged documents brings
  all of them. No random unjudged documents are added (``n_negatives`` is not used): the
  other queries' documents are the in-batch negatives.

**Labels.** ``grades[i, j]`` is the grade of document j for query i in the source's full
judgments, −1 if unjudged, so a document relevant to another query of the batch keeps its label
for that query — never a silent negative. ``targets`` y_ij = the label granularity applied to
``grades`` (−1 → 0). What each loss then sees (pairrel.losses):

* softmax: for each query i with Σ_j y_ij > 0, cross-entropy of softmax_j(s_ij / τ) against
  p_ij = y_ij / Σ_k y_ik over all D documents of the batch (graded: a soft target distribution
  that weights a grade-3 passage 3/2 of a grade-2 one under ``graded-linear``; grade 0 and
  unjudged documents get p = 0 and act only as negatives through the normaliser);
* BCE: every (i, j) cell is one binary cross-entropy term with target y_ij ∈ [0, 1] (graded
  under ``graded-*``, 0/1 under ``binary@k``), summed over j and averaged over queries.

**Symmetric sources** (``symmetric: true`` in the source's config, kept in its meta JSON): the
source's instruction is applied to the documents too (``Batch.doc_instruction``), as LLM2Vec
does for its symmetric tasks (NLI split 2, Quora duplicates); the encoder leaves those
instruction tokens out of the pooling on both sides.

**Pooled sources** (``parts:``, pairrel.data.parts): one source whose rows carry their part's
instructions; it is batched like any source (one pass cuts the pool's usable queries into
⌊N / B⌋ batches, so a batch mixes the parts), and ``Batch.instruction`` /
``Batch.doc_instruction`` are then lists with one instruction per query / per document.

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

from pairrel.layout import META
from pairrel.labels import LabelMap, grades_to_targets, parse_label_granularity

COLUMNS = ("query_id", "query", "doc_id", "doc", "grade")
INSTRUCTION_COLUMNS = ("query_instruction", "doc_instruction")  # pooled sources only
META_KEYS = ("instruction", "weight", "max_grade")

# Stream ids keep the Generators of different draws independent for the same (seed, step).
_SOURCE_STREAM, _PERMUTATION_STREAM, _DOCS_STREAM, _PASS_STREAM = 0, 1, 2, 3

SAMPLING_RULES = ("weighted", "proportional")


@dataclass
class Batch:
    """One training step's texts and labels (docs/internals.md, "Batches").

    ``queries`` and ``docs`` are raw texts: the encoder adds ``instruction`` to the queries and
    ``doc_instruction`` to the documents as ``"{instruction}; {text}"`` ("" = none;
    ``doc_instruction`` is the source's instruction for symmetric sources, else ""). A string
    applies to every text; a pooled source gives lists, one instruction per query / document.
    """

    queries: list[str]
    instruction: str | list[str]
    docs: list[str]
    grades: torch.Tensor  # LongTensor [Q, D]; −1 = unjudged
    targets: torch.Tensor  # FloatTensor [Q, D] in [0, 1]
    source: str
    query_ids: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    step: int = -1
    doc_instruction: str | list[str] = ""


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
    symmetric: bool = False  # the instruction goes on the documents too
    # Pooled sources: the instruction of each query code and of each doc code (else None).
    query_instructions: np.ndarray | None = None
    doc_instructions: np.ndarray | None = None

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
    meta_path = Path(meta_json_path) if meta_json_path is not None else parquet_path.with_suffix(META)
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
        pooled = [c for c in INSTRUCTION_COLUMNS if c in schema_names]
        if pooled and len(pooled) != len(INSTRUCTION_COLUMNS):
            raise ValueError(f"{parquet_path}: a pooled source needs both columns {' and '.join(INSTRUCTION_COLUMNS)}")
        frame = pq.read_table(parquet_path, columns=list(COLUMNS) + pooled).to_pandas()
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
    query_instructions = doc_instructions = None
    if pooled:
        query_instructions = _first_text_per_code(query_codes, frame["query_instruction"], query_ids,
                                                  "query_id (instruction)", parquet_path)
        doc_instructions = _first_text_per_code(doc_codes, frame["doc_instruction"], doc_ids,
                                                "doc_id (instruction)", parquet_path)

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
        symmetric=bool(meta.get("symmetric", False)),
        query_instructions=query_instructions,
        doc_instructions=doc_instructions,
    )


class SourceBatcher:
    """Deterministic, resumable batches over several prepared sources (see the module docstring).

    Args:
        sources: source name → SourceData (``load_prepared_source``).
        batch_size: queries per batch (over all devices).
        n_negatives: hard negatives per query (when ``docs_per_query`` is None).
        label_granularity: e.g. ``binary@2``, ``graded-linear`` (pairrel.labels).
        seed: non-negative int; batch k is a pure function of (seed, k).
        drop_last: drop each epoch's (pass's) incomplete last slice of a source's queries.
        sampling: ``weighted`` or ``proportional`` (the module docstring).
        docs_per_query: None (positive + ``n_negatives``) or m ≥ 1 judged documents per query
            drawn across its grades (graded batches).
    """

    def __init__(
        self,
        sources: dict[str, SourceData],
        batch_size: int,
        n_negatives: int,
        label_granularity: str,
        seed: int,
        drop_last: bool = True,
        sampling: str = "weighted",
        docs_per_query: int | None = None,
    ) -> None:
        if not sources:
            raise ValueError("SourceBatcher needs at least one source")
        if batch_size < 1 or n_negatives < 0 or seed < 0:
            raise ValueError(f"need batch_size >= 1, n_negatives >= 0, seed >= 0; got {batch_size}, {n_negatives}, {seed}")
        if sampling not in SAMPLING_RULES:
            raise ValueError(f"unknown sampling rule {sampling!r}: expected one of {', '.join(SAMPLING_RULES)}")
        if docs_per_query is not None and docs_per_query < 1:
            raise ValueError(f"docs_per_query must be >= 1 or None, got {docs_per_query}")
        self.label_map: LabelMap = parse_label_granularity(label_granularity)
        self.batch_size, self.n_negatives, self.seed, self.drop_last = batch_size, n_negatives, seed, drop_last
        self.sampling, self.docs_per_query = sampling, docs_per_query
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
        # proportional: batch slots of one pass; source s owns slots [_slot_offsets[s], _slot_offsets[s + 1]).
        self._slot_offsets = np.concatenate([[0], np.cumsum(self._slices_per_epoch)])
        self._pass_order: tuple[int, np.ndarray] | None = None
        self._choices: list[int] = []  # source index of steps 0, 1, … (memo of a pure function)
        self._uses: list[int] = []  # how many earlier steps drew the same source
        self._draws = [0] * len(self.sources)  # steps so far in self._choices that drew each source
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    @property
    def steps_per_pass(self) -> int:
        """T = Σ_s E_s: batches in one proportional pass (one epoch of every source)."""
        return int(self._slot_offsets[-1])

    def batches_per_source(self) -> dict[str, int]:
        """E_s per source: full batches of its usable queries in one epoch (pass)."""
        return dict(zip(self.names, (int(n) for n in self._slices_per_epoch)))

    # -- pure functions of (seed, step) ------------------------------------------------------

    def _source_of(self, step: int) -> tuple[int, int]:
        """weighted: (source index, how many earlier steps drew that source) for ``step``."""
        while len(self._choices) <= step:
            u = np.random.default_rng([self.seed, len(self._choices), _SOURCE_STREAM]).random()
            choice = min(int(np.searchsorted(self._cumulative, u, side="right")), len(self.sources) - 1)
            self._choices.append(choice)
            self._uses.append(self._draws[choice])
            self._draws[choice] += 1
        return self._choices[step], self._uses[step]

    def _slot_of(self, step: int) -> tuple[int, int, int]:
        """proportional: (source index, batch index within the source's pass, pass) of ``step``."""
        pass_index, position = divmod(step, self.steps_per_pass)
        if self._pass_order is None or self._pass_order[0] != pass_index:
            rng = np.random.default_rng([self.seed, pass_index, _PASS_STREAM])
            self._pass_order = (pass_index, rng.permutation(self.steps_per_pass))
        slot = int(self._pass_order[1][position])
        source = int(np.searchsorted(self._slot_offsets, slot, side="right")) - 1
        return source, slot - int(self._slot_offsets[source]), pass_index

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

    def _query_codes(self, source: int, epoch: int, index: int) -> np.ndarray:
        order = self._permutation(source, epoch)
        return self._usable[source][order[index * self.batch_size : (index + 1) * self.batch_size]]

    def _documents_for(self, source: int, query: int, rng: np.random.Generator) -> list[int]:
        """Doc codes: the positive, then the hard negatives (``docs_per_query`` unset)."""
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

    def _graded_documents_for(self, source: int, query: int, rng: np.random.Generator) -> list[int]:
        """Doc codes: ``docs_per_query`` judged documents across the query's grades."""
        docs, grades = self.sources[source].judgments(query)
        m = self.docs_per_query
        if len(docs) <= m:
            return [int(d) for d in rng.permutation(docs)]
        levels = sorted(set(grades.tolist()), reverse=True)
        ordered = levels[:1] + levels[-1:] + levels[1:-1] if len(levels) > 1 else levels
        picked = [int(rng.choice(docs[grades == grade])) for grade in ordered[:m]]
        rest = np.setdiff1d(docs, picked)  # sorted, so the draw below is deterministic
        extra = rng.choice(rest, size=m - len(picked), replace=False) if m > len(picked) else []
        return picked + [int(d) for d in extra]

    def batch_at(self, step: int) -> Batch:
        """The batch of training step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.sampling == "proportional":
            source, index, epoch = self._slot_of(step)
        else:
            source, use = self._source_of(step)
            epoch, index = divmod(use, self._slices_per_epoch[source])
        data = self.sources[source]
        queries = self._query_codes(source, epoch, index)
        rng = np.random.default_rng([self.seed, step, _DOCS_STREAM])
        pick = self._documents_for if self.docs_per_query is None else self._graded_documents_for
        column: dict[int, int] = {}
        for query in queries:
            for doc in pick(source, int(query), rng):
                column.setdefault(doc, len(column))
        grades = torch.full((len(queries), len(column)), -1, dtype=torch.long)
        for row, query in enumerate(queries):
            docs, doc_grades = data.judgments(int(query))
            for doc, grade in zip(docs.tolist(), doc_grades.tolist()):
                if doc in column:
                    grades[row, column[doc]] = grade
        doc_codes = list(column)
        if data.query_instructions is not None:  # a pooled source: each text its part's instruction
            instruction = [str(t) for t in data.query_instructions[queries]]
            doc_instruction = [str(t) for t in data.doc_instructions[doc_codes]]
        else:
            instruction, doc_instruction = data.instruction, data.instruction if data.symmetric else ""
        return Batch(
            queries=[str(t) for t in data.query_texts[queries]],
            instruction=instruction,
            docs=[str(t) for t in data.doc_texts[doc_codes]],
            grades=grades,
            targets=grades_to_targets(grades, self.label_map, data.max_grade),
            source=self.names[source],
            query_ids=[str(q) for q in data.query_ids[queries]],
            doc_ids=[str(d) for d in data.doc_ids[doc_codes]],
            step=step,
            doc_instruction=doc_instruction,
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


def batcher_from_run(run_cfg: dict, sources: dict[str, SourceData]) -> SourceBatcher:
    """The SourceBatcher of a resolved run config (:attr:`pairrel.study.Run.config`).

    Reads ``training.batch_size``, ``training.n_negatives``, ``training.docs_per_query``,
    ``data.sampling``, ``labels`` and ``seed``; the trainer and ``pairrel batches`` both build
    batches here. A setting the prepared data cannot serve (``binary@5`` on grades 0–3, a batch
    larger than a source) is an error naming the config keys.
    """
    from pairrel.settings import TrainingSettings

    training = TrainingSettings.from_dict(run_cfg["training"], "training")
    try:
        return SourceBatcher(
            sources,
            batch_size=training.batch_size,
            n_negatives=training.n_negatives,
            label_granularity=run_cfg["labels"],
            seed=int(run_cfg["seed"]),
            sampling=run_cfg["data"]["sampling"],
            docs_per_query=training.docs_per_query,
        )
    except ValueError as err:
        raise ValueError(f"run {run_cfg['run_id']}: {err} (config keys 'grid.labels', "
                         f"'training.batch_size' or 'data.{run_cfg['grid']['data']}.training.batch_size', "
                         "'training.docs_per_query')") from None
