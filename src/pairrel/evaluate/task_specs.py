"""How each local (non-hub) MTEB task is scored: its type, main score, split and subset.

The report reads these for tasks that no MTEB benchmark lists (the quickstart's tasks, the
held-out folds, the user's ``evaluation.local_tasks``), so the report needs no model, data or
mteb task object to place a local result in its column.
"""

# The main score of each task type, as MTEB(eng, v1) scores its own tasks of that type.
MAIN_SCORES: dict[str, str] = {
    "Retrieval": "ndcg_at_10",
    "Reranking": "map_at_1000",
    "STS": "cosine_spearman",
    "PairClassification": "max_ap",
}

# Task types a user can build from files (``evaluation.local_tasks[].type``).
USER_TASK_TYPES: tuple[str, ...] = ("STS", "PairClassification", "Retrieval", "Reranking")


def user_task_spec(task_type: str) -> dict[str, str]:
    """How a task built from the user's files is scored (one split ``test``, subset ``default``)."""
    if task_type not in USER_TASK_TYPES:
        raise ValueError(f"unknown local task type {task_type!r} (expected one of {', '.join(USER_TASK_TYPES)})")
    return {"type": task_type, "main_score": MAIN_SCORES[task_type], "split": "test", "subset": "default"}


# The quickstart's own benchmark: three tasks built from its held-out split (see local_tasks).
QUICKSTART_BENCHMARK = "pairrel-quickstart"

QUICKSTART_TASK_SPECS: dict[str, dict[str, str]] = {
    "PairrelQuickstartRetrieval": user_task_spec("Retrieval"),
    "PairrelQuickstartSTS": user_task_spec("STS"),
    "PairrelQuickstartPairClassification": user_task_spec("PairClassification"),
}


# Held-out queries of a K-fold graded source (e.g. TREC-DL 2023): reranking of their judged
# passages, scored by nDCG@10 with graded gains (TREC-DL's primary measure). Not part of any
# benchmark average: the report puts them in a table of their own.
HELDOUT_PREFIX = "PairrelHeldOut"


def heldout_task_name(source: str, fold: int) -> str:
    return f"{HELDOUT_PREFIX}-{source}-fold{fold}"


def local_task_spec(name: str, local_tasks: list[dict] | None = None) -> dict[str, str] | None:
    """How a local task outside every benchmark is scored, or None if ``name`` is not one.

    ``local_tasks`` is the config's ``evaluation.local_tasks`` list (entries ``{name, type, …}``).
    """
    if name.startswith(HELDOUT_PREFIX + "-"):
        return {"type": "Reranking", "main_score": "ndcg_at_10", "split": "test", "subset": "default"}
    for entry in local_tasks or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return user_task_spec(entry.get("type"))
    return None
