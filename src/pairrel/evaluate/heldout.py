"""Per-query scores of held-out queries (K-fold test splits), TREC-DL style, with ir_measures.

A held-out task reranks the judged passages of its fold's test queries (``LocalHeldOutReranking``
in :mod:`pairrel.evaluate.local_tasks`). Besides mteb's aggregate metrics, each query gets the
TREC-DL passage measures, computed by ir_measures (pytrec_eval) on the judged passages:

* ``nDCG@10``: graded gains (gain = the grade, trec_eval's ``ndcg_cut_10``), the primary
  TREC-DL measure;
* ``RR(rel=2)@10``: reciprocal rank of the first passage with grade >= 2 in the top 10;
* ``P(rel=2)@10``: fraction of the top 10 with grade >= 2 (TREC's binary convention for
  passages: 2 = highly relevant, 3 = perfectly relevant).

They are stored in the mteb result file itself, in the subset's scores as
``per_query: {measure: {query_id: value}}`` (0-1), so they travel with the result and need no
second file. Over all folds of a K-fold split every judged query is held out exactly once, so
the **pooled** score of a measure is the mean of its per-query values over the union of the
folds' queries: each query scored by the run that did not train on it
(:func:`pooled_scores`). That equals ir_measures on the concatenation of the folds' runs.
"""

from __future__ import annotations

import re

import ir_measures
from ir_measures import P, RR, nDCG

from pairrel.evaluate.task_specs import HELDOUT_PREFIX

MEASURES = (nDCG @ 10, RR(rel=2) @ 10, P(rel=2) @ 10)
MEASURE_NAMES = tuple(str(m) for m in MEASURES)  # "nDCG@10", "RR(rel=2)@10", "P(rel=2)@10"
PER_QUERY_KEY = "per_query"
_TASK_NAME = re.compile(rf"^{re.escape(HELDOUT_PREFIX)}-(?P<source>.+)-fold(?P<fold>\d+)$")


def parse_heldout_task_name(name: str) -> tuple[str, int] | None:
    """``PairrelHeldOut-trec-dl-fold3`` -> ``("trec-dl", 3)``; None for any other task."""
    match = _TASK_NAME.match(name)
    return (match["source"], int(match["fold"])) if match else None


def per_query_scores(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]
                     ) -> dict[str, dict[str, float]]:
    """``{measure name: {query_id: value}}`` for every query of ``qrels``.

    ``qrels``: query -> judged passage -> grade; ``run``: query -> passage -> score. A judged
    query absent from the run scores 0 on every measure (it retrieved nothing), so no query
    silently leaves the mean.
    """
    qrel_list = [ir_measures.Qrel(q, d, int(g)) for q, docs in qrels.items()
                 for d, g in docs.items()]
    run_list = [ir_measures.ScoredDoc(q, d, float(s)) for q, docs in run.items()
                for d, s in docs.items() if q in qrels]
    scores: dict[str, dict[str, float]] = {name: dict.fromkeys(qrels, 0.0)
                                           for name in MEASURE_NAMES}
    for metric in ir_measures.iter_calc(MEASURES, qrel_list, run_list):
        scores[str(metric.measure)][metric.query_id] = float(metric.value)
    return scores


def pooled_scores(folds: dict[object, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean per-query value of each measure over the union of the folds' queries.

    ``folds``: fold -> ``{measure: {query_id: value}}``. A query held out by two folds is an
    error (the folds would not be a partition, and a query would count twice).
    """
    seen: dict[str, object] = {}
    pooled: dict[str, list[float]] = {}
    for fold, scores in folds.items():
        for measure, values in scores.items():
            pooled.setdefault(measure, []).extend(values.values())
        queries = next(iter(scores.values()), {})
        for query in queries:
            if query in seen:
                raise ValueError(f"query {query!r} is held out by fold {seen[query]} and fold "
                                 f"{fold}: folds must not share test queries")
            seen[query] = fold
    return {measure: sum(values) / len(values) for measure, values in pooled.items() if values}
