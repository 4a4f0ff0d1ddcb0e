"""How each local (non-hub) MTEB task is scored: its type, main score, split and subset.

The report reads these for tasks that no MTEB benchmark lists (the quickstart's tasks), so the
report needs no model, data or mteb task object to place a local result in its column.
"""

QUICKSTART_BENCHMARK = "pairrel-quickstart"

QUICKSTART_TASK_SPECS: dict[str, dict[str, str]] = {
    "PairrelQuickstartRetrieval": {
        "type": "Retrieval",
        "main_score": "ndcg_at_10",
        "split": "test",
        "subset": "default",
    },
    "PairrelQuickstartSTS": {
        "type": "STS",
        "main_score": "cosine_spearman",
        "split": "test",
        "subset": "default",
    },
    "PairrelQuickstartPairClassification": {
        "type": "PairClassification",
        "main_score": "max_ap",
        "split": "test",
        "subset": "default",
    },
}


# Held-out queries of a K-fold graded source (e.g. TREC-DL 2023): reranking of their judged
# passages, scored by nDCG@10 with graded gains (TREC-DL's primary measure). Not part of any
# benchmark average: the report puts them in a table of their own.
HELDOUT_PREFIX = "PairrelHeldOut"


def heldout_task_name(source: str, fold: int) -> str:
    return f"{HELDOUT_PREFIX}-{source}-fold{fold}"


def local_task_spec(name: str) -> dict[str, str] | None:
    """How a local task outside every benchmark is scored, or None if ``name`` is not one."""
    if name.startswith(HELDOUT_PREFIX + "-"):
        return {"type": "Reranking", "main_score": "ndcg_at_10", "split": "test", "subset": "default"}
    return None
