"""MTEB tasks built from a graded test collection served by ir_datasets.

The quickstart has no hub data, so its evaluation tasks are derived from the held-out split of
the quickstart corpus (any ir_datasets id with graded qrels works the same way):

- **Retrieval**: every test query against the whole corpus, graded qrels as MTEB relevance
  scores (mteb's nDCG uses the grades as gains).
- **STS**: each judged (query, passage) pair with its grade as the similarity score on a
  0..max_grade scale; Spearman correlation of cosine similarity with the grade.
- **PairClassification**: each judged pair labelled relevant when grade >= ``relevant_grade``
  (TREC's passage convention: 2), scored by average precision of the cosine similarity.

Task names and main scores match :mod:`pairrel.evaluate.task_specs`, which the report reads.
The names stay ``PairrelQuickstart*``: these are the quickstart benchmark's own tasks, and its
cached results and report fixtures are filed under them. A user's own test sets (STS and pair
files, BEIR folders) are tasks of :mod:`pairrel.evaluate.user_tasks`, named as the user names them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from datasets import Dataset
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.types import PromptType

from pairrel.data.registry import built_docs_store, load_dataset
from pairrel.evaluate.task_specs import QUICKSTART_TASK_SPECS, heldout_task_name, local_task_spec

# TaskMetadata fields that describe provenance rather than scoring; shared by every local task.
LOCAL_TASK_METADATA: dict[str, Any] = dict(
    reference=None,
    category="t2t",
    modalities=["text"],
    eval_langs=["eng-Latn"],
    date=("2026-01-01", "2026-12-31"),
    domains=["Written"],
    task_subtypes=[],
    license="cc-by-4.0",
    annotations_creators="derived",
    dialect=[],
    sample_creation="created",
    bibtex_citation="",
)


def _metadata(name: str, description: str, dataset_id: str, instruction: str) -> TaskMetadata:
    spec = QUICKSTART_TASK_SPECS.get(name) or local_task_spec(name)
    return TaskMetadata(
        name=name,
        prompt={"query": instruction} if instruction else None,
        description=description,
        # Not a hub repository: the path names the ir_datasets id the task reads.
        dataset={"path": f"ir_datasets:{dataset_id}", "revision": "local"},
        type=spec["type"],
        eval_splits=[spec["split"]],
        main_score=spec["main_score"],
        **LOCAL_TASK_METADATA,
    )


def judged_pairs(dataset_id: str) -> tuple[list[str], list[str], list[int], int]:
    """Texts and grades of every judged (query, document) pair of ``dataset_id``.

    Returns ``(query_texts, doc_texts, grades, max_grade)``, ordered as the qrels file.
    """
    dataset = load_dataset(dataset_id)
    queries = {q.query_id: q.text for q in dataset.queries_iter()}
    qrels = list(dataset.qrels_iter())
    docs = built_docs_store(dataset).get_many([qrel.doc_id for qrel in qrels])
    missing = sorted({q.doc_id for q in qrels} - docs.keys())
    if missing:
        raise ValueError(f"{dataset_id}: {len(missing)} judged documents missing from the corpus, e.g. {missing[:3]}")
    grades = [int(q.relevance) for q in qrels]
    return [queries[q.query_id] for q in qrels], [docs[q.doc_id].text for q in qrels], grades, max(grades)


class OneSplitTask:
    """Mixin: a task whose data is one split, held as mteb's loaders hold it (the local
    ir_datasets tasks here, the user's file tasks in pairrel.evaluate.user_tasks)."""

    def _store(self, split_data: Any) -> None:
        split = self.metadata.eval_splits[0]
        self.dataset = {"default": {split: split_data}}
        self.data_loaded = True


class _IrDatasetsTask(OneSplitTask):
    """Mixin: the task reads ``dataset_id`` through ir_datasets instead of the hub.

    mteb keeps ``metadata`` on the class (``unload_data`` drops instance copies), so each
    (task kind, dataset) pair gets its own subclass from :func:`local_tasks`.
    """

    dataset_id: str


class LocalRetrieval(_IrDatasetsTask, AbsTaskRetrieval):
    """Retrieval over the whole corpus of an ir_datasets test collection, graded qrels."""

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        dataset = load_dataset(self.dataset_id)
        corpus = [{"id": d.doc_id, "title": "", "text": d.text} for d in dataset.docs_iter()]
        relevant: dict[str, dict[str, int]] = defaultdict(dict)
        for qrel in dataset.qrels_iter():
            relevant[qrel.query_id][qrel.doc_id] = int(qrel.relevance)
        queries = [{"id": q.query_id, "text": q.text} for q in dataset.queries_iter() if q.query_id in relevant]
        self._store(
            {
                "corpus": Dataset.from_list(corpus),
                "queries": Dataset.from_list(queries),
                "relevant_docs": dict(relevant),
                "top_ranked": None,
            }
        )


class _QueryPassagePairs:
    """Mixin for pair tasks over judged (query, passage) pairs: the query side gets the
    instruction and the passage side none, as in retrieval."""

    input1_prompt_type = PromptType.query
    input2_prompt_type = PromptType.document


class LocalSTS(_QueryPassagePairs, _IrDatasetsTask, AbsTaskSTS):
    """Judged (query, passage) pairs scored by their relevance grade."""

    min_score = 0

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        queries, docs, grades, max_grade = judged_pairs(self.dataset_id)
        self.max_score = max_grade
        self._store(Dataset.from_dict({"sentence1": queries, "sentence2": docs, "score": [float(g) for g in grades]}))


class LocalPairClassification(_QueryPassagePairs, _IrDatasetsTask, AbsTaskPairClassification):
    """Judged (query, passage) pairs labelled relevant when grade >= ``relevant_grade``."""

    relevant_grade = 2  # TREC's binary convention for passages

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        queries, docs, grades, _ = judged_pairs(self.dataset_id)
        labels = [int(g >= self.relevant_grade) for g in grades]
        self._store(Dataset.from_dict({"sentence1": queries, "sentence2": docs, "labels": labels}))


class LocalHeldOutReranking(_IrDatasetsTask, AbsTaskRetrieval):
    """Reranking of the judged documents of held-out queries (a K-fold test split).

    Only the judged passages are looked up (``docs_store().get_many``), so a 138M-passage corpus
    such as MS MARCO v2 is never iterated. Besides mteb's metrics, the result file holds each
    query's TREC-DL measures (nDCG@10, RR(rel=2)@10, P(rel=2)@10; see
    :mod:`pairrel.evaluate.heldout`) under ``per_query``, for pooled scores over folds and paired
    tests over queries.
    """

    query_ids: frozenset[str]

    def task_specific_scores(self, scores, qrels, results, hf_split, hf_subset) -> dict[str, Any]:
        """mteb's hook after scoring: add ``per_query`` (ir_measures on the reranked run)."""
        from pairrel.evaluate.heldout import PER_QUERY_KEY, per_query_scores

        return {PER_QUERY_KEY: per_query_scores(qrels, results)}

    def load_data(self, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        dataset = load_dataset(self.dataset_id)
        relevant: dict[str, dict[str, int]] = defaultdict(dict)
        for qrel in dataset.qrels_iter():
            if qrel.query_id in self.query_ids:
                relevant[qrel.query_id][qrel.doc_id] = int(qrel.relevance)
        missing = sorted(self.query_ids - relevant.keys())
        if missing:
            raise ValueError(f"{self.dataset_id}: held-out queries without judgments: {missing[:5]}")
        doc_ids = sorted({d for docs in relevant.values() for d in docs})
        docs = built_docs_store(dataset).get_many(doc_ids)
        absent = [d for d in doc_ids if d not in docs]
        if absent:
            raise ValueError(f"{self.dataset_id}: {len(absent)} judged documents missing from the corpus, e.g. {absent[:3]}")
        queries = [{"id": q.query_id, "text": q.text} for q in dataset.queries_iter() if q.query_id in relevant]
        self._store(
            {
                "corpus": Dataset.from_list([{"id": d, "title": "", "text": docs[d].text} for d in doc_ids]),
                "queries": Dataset.from_list(queries),
                "relevant_docs": dict(relevant),
                "top_ranked": {q: sorted(docs_of_q) for q, docs_of_q in relevant.items()},
            }
        )


def heldout_task(dataset_id: str, query_ids, source: str, fold: int, instruction: str = "") -> LocalHeldOutReranking:
    """The reranking task of one fold's held-out queries of ``dataset_id``."""
    name = heldout_task_name(source, fold)
    description = f"Rerank the judged documents of fold {fold}'s held-out queries of {dataset_id}."
    attrs = {
        "metadata": _metadata(name, description, dataset_id, instruction),
        "dataset_id": dataset_id,
        "query_ids": frozenset(map(str, query_ids)),
    }
    return type(name.replace("-", "_"), (LocalHeldOutReranking,), attrs)()


def local_tasks(dataset_id: str, instruction: str = "") -> list:
    """The three local tasks (retrieval, STS, pair classification) on ``dataset_id``.

    ``instruction`` is the query-side instruction (the one the training source used).
    """
    kinds = {
        "PairrelQuickstartRetrieval": (LocalRetrieval, f"Retrieval on {dataset_id} (graded qrels)."),
        "PairrelQuickstartSTS": (LocalSTS, f"Grades of the judged pairs of {dataset_id} as similarity."),
        "PairrelQuickstartPairClassification": (
            LocalPairClassification,
            f"Is a judged pair of {dataset_id} relevant (grade >= {LocalPairClassification.relevant_grade})?",
        ),
    }
    tasks = []
    for name, (base, description) in kinds.items():
        attrs = {"metadata": _metadata(name, description, dataset_id, instruction), "dataset_id": dataset_id}
        tasks.append(type(name, (base,), attrs)())
    return tasks
