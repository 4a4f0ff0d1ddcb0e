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
