"""One JSON-able summary of any ir_datasets id: queries, judged queries, docs, qrels per grade.

Counts of queries and qrels are computed from the files (streamed), so they describe the data
actually on disk; the corpus is never read: its size comes from ir_datasets' metadata when it
has one, from the line count of a local docs.tsv, else it is null. Only the queries and qrels
files are needed (offline: a missing one raises prefetch.DataUnavailableError naming it).
"""

from __future__ import annotations

from collections import Counter

from pairrel.data.prefetch import require_files
from pairrel.data.registry import load_dataset, local_dir


def _metadata_count(dataset, component: str):
    try:
        return (getattr(dataset, f"{component}_metadata")() or {}).get("count")
    except Exception:  # datasets without a metadata entry
        return None


def _count_lines(path) -> int:
    with open(path, "rb") as lines:
        return sum(1 for line in lines if line.strip())


def summarize(dataset_id: str) -> dict:
    """Summary of ``dataset_id`` (built into ir_datasets or registered by pairrel).

    Keys: dataset_id, n_queries, n_judged_queries, n_docs, n_qrels, qrels_per_grade
    ({grade: count}, grades as strings, ascending), qrels_defs ({grade: meaning}),
    n_docpairs (metadata only; null when unknown), provides (the components).
    """
    dataset = load_dataset(dataset_id)
    provides = [c for c in ("docs", "queries", "qrels", "docpairs", "scoreddocs") if getattr(dataset, f"has_{c}")()]
    require_files(dataset_id, [c for c in ("queries", "qrels") if c in provides])

    n_queries = sum(1 for _ in dataset.queries_iter()) if "queries" in provides else None
    grades: Counter = Counter()
    judged: set[str] = set()
    if "qrels" in provides:
        for qrel in dataset.qrels_iter():
            grades[qrel.relevance] += 1
            judged.add(qrel.query_id)

    n_docs = _metadata_count(dataset, "docs") if "docs" in provides else None
    directory = local_dir(dataset_id)
    if n_docs is None and directory is not None and (directory / "docs.tsv").is_file():
        n_docs = _count_lines(directory / "docs.tsv")
    defs = dataset.qrels_defs() if "qrels" in provides else {}
    return {
        "dataset_id": dataset_id,
        "provides": provides,
        "n_queries": n_queries,
        "n_judged_queries": len(judged) if "qrels" in provides else None,
        "n_docs": n_docs,
        "n_qrels": sum(grades.values()) if "qrels" in provides else None,
        "qrels_per_grade": {str(g): grades[g] for g in sorted(grades)},
        "qrels_defs": {str(g): defs[g] for g in sorted(defs or {})},
        "n_docpairs": _metadata_count(dataset, "docpairs") if "docpairs" in provides else None,
    }
