"""Held-out K-fold scores: per query (ir_measures), per fold, pooled over folds, BCE − softmax.

The pooled score of a K-fold evaluation is the mean over every held-out query, each scored by
the run that did not train on it; it must equal ir_measures on the concatenated run file.
"""

import json
import math

import ir_measures
import pandas as pd
import pytest
from tests.test_report_tables import QS, RUNS, compile_latex, write_run

from pairrel.evaluate.heldout import (
    MEASURE_NAMES,
    MEASURES,
    parse_heldout_task_name,
    per_query_scores,
    pooled_scores,
)
from pairrel import cli
from pairrel.report.collect import read_sources
from pairrel.report.heldout import heldout_comparison, heldout_summary, per_query_frame

# Six judged queries in two folds (grades 0-3, TREC-DL's scale).
QRELS = {
    "q1": {"d1": 3, "d2": 0, "d3": 2, "d4": 1},
    "q2": {"d1": 0, "d5": 1, "d6": 2},
    "q3": {"d2": 3, "d7": 0},
    "q4": {"d3": 1, "d8": 0, "d9": 2},
    "q5": {"d1": 2, "d4": 3, "d6": 0, "d7": 1},
    "q6": {"d5": 0, "d9": 1},
}
FOLDS = {0: ["q1", "q2", "q3"], 1: ["q4", "q5", "q6"]}
# A hand-made TREC run file: "qid Q0 docid rank score tag"; rank is ignored, score orders.
RUN_FILE = """\
q1 Q0 d2 1 0.9 bce
q1 Q0 d3 2 0.8 bce
q1 Q0 d1 3 0.7 bce
q1 Q0 d4 4 0.1 bce
q2 Q0 d6 1 0.6 bce
q2 Q0 d1 2 0.5 bce
q2 Q0 d5 3 0.4 bce
q3 Q0 d7 1 0.3 bce
q3 Q0 d2 2 0.2 bce
q4 Q0 d9 1 0.9 bce
q4 Q0 d3 2 0.7 bce
q4 Q0 d8 3 0.6 bce
q5 Q0 d6 1 0.8 bce
q5 Q0 d4 2 0.7 bce
q5 Q0 d7 3 0.6 bce
q5 Q0 d1 4 0.5 bce
q6 Q0 d5 1 0.5 bce
q6 Q0 d9 2 0.4 bce
"""


def _run(text: str) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    return run


def _fold(mapping: dict, fold: int) -> dict:
    return {q: mapping[q] for q in FOLDS[fold]}


def test_per_query_hand_values():
    scores = per_query_scores({"q1": QRELS["q1"]}, {"q1": _run(RUN_FILE)["q1"]})
    # ranking d2 (0), d3 (2), d1 (3), d4 (1). DCG = 2/log2(3) + 3/log2(4) + 1/log2(5);
    # ideal 3, 2, 1: 3 + 2/log2(3) + 1/log2(4)
    dcg = 2 / math.log2(3) + 3 / 2 + 1 / math.log2(5)
    ideal = 3 + 2 / math.log2(3) + 1 / 2
    assert scores["nDCG@10"]["q1"] == pytest.approx(dcg / ideal)
    assert scores["RR(rel=2)@10"]["q1"] == pytest.approx(1 / 2)  # first grade >= 2 at rank 2
    assert scores["P(rel=2)@10"]["q1"] == pytest.approx(2 / 10)  # P@10 divides by 10
    assert MEASURE_NAMES == ("nDCG@10", "RR(rel=2)@10", "P(rel=2)@10")


def test_pooled_score_equals_ir_measures_on_the_hand_made_run_file(tmp_path):
    path = tmp_path / "all-folds.run"
    path.write_text(RUN_FILE)
    run = _run(RUN_FILE)
    # each fold's run scores only its own held-out queries, as each fold's model does
    per_fold = {k: per_query_scores(_fold(QRELS, k), _fold(run, k)) for k in FOLDS}
    pooled = pooled_scores(per_fold)
    qrels = [ir_measures.Qrel(q, d, g) for q, docs in QRELS.items() for d, g in docs.items()]
    direct = ir_measures.calc_aggregate(MEASURES, qrels, ir_measures.read_trec_run(str(path)))
    assert pooled == pytest.approx({str(m): v for m, v in direct.items()}, abs=1e-12)
    # with 3 + 3 queries the pooled mean is also the mean of the two fold means; RR by hand:
    # q1 1/2, q2 1 (d6), q3 1/2 (d2), q4 1 (d9), q5 1/2 (d4), q6 0 -> 3.5 / 6
    assert pooled["RR(rel=2)@10"] == pytest.approx(3.5 / 6)


def test_folds_sharing_a_query_are_an_error():
    scores = per_query_scores(_fold(QRELS, 0), _fold(_run(RUN_FILE), 0))
    with pytest.raises(ValueError, match="query 'q1' is held out by fold 0 and fold 1"):
        pooled_scores({0: scores, 1: scores})


def test_task_names_give_source_and_fold():
    assert parse_heldout_task_name("PairrelHeldOut-trec-dl-2023-fold3") == ("trec-dl-2023", 3)
    assert parse_heldout_task_name("PairrelQuickstartSTS") is None


# ------------------------------------------------------------------ the report's table


def _heldout_json(task: str, per_query: dict) -> dict:
    ndcg = sum(per_query["nDCG@10"].values()) / len(per_query["nDCG@10"])
    return {"dataset_revision": "local", "task_name": task, "mteb_version": "2.26.24",
            "scores": {"test": [{"ndcg_at_10": ndcg, "main_score": ndcg,
                                 "hf_subset": "default", "languages": ["eng-Latn"],
                                 "per_query": per_query}]},
            "evaluation_time": 1.0}


def _softmax_run() -> str:
    """The same run with q1's and q5's top two swapped: softmax is worse there."""
    lines = RUN_FILE.replace("q1 Q0 d2 1 0.9", "q1 Q0 d2 1 0.75").replace(
        "q5 Q0 d6 1 0.8", "q5 Q0 d6 1 0.65").splitlines()
    return "\n".join(lines) + "\n"


def write_heldout_study(root):
    """bce and softmax, two folds each (fold as a grid axis), with quickstart results too."""
    runs = {"bce": _run(RUN_FILE), "softmax": _run(_softmax_run())}
    for loss, run in runs.items():
        for fold in FOLDS:
            folder = write_run(root, {"model": "minilm", "loss": loss, "labels": "graded",
                                      "fold": fold, "seed": 1, "step": 20}, RUNS[(loss, 1)])
            task = f"PairrelHeldOut-trec-fold{fold}"
            per_query = per_query_scores(_fold(QRELS, fold), _fold(run, fold))
            (folder / f"{task}.json").write_text(json.dumps(_heldout_json(task, per_query)))
    return runs


def _direct(run: dict) -> dict:
    qrels = [ir_measures.Qrel(q, d, g) for q, docs in QRELS.items() for d, g in docs.items()]
    scored = [ir_measures.ScoredDoc(q, d, s) for q, docs in run.items() for d, s in docs.items()]
    return {str(m): 100 * v for m, v in ir_measures.calc_aggregate(MEASURES, qrels, scored).items()}


def test_heldout_table_per_fold_over_folds_and_pooled(tmp_path):
    runs = write_heldout_study(tmp_path)
    frame = per_query_frame(read_sources([tmp_path]))
    assert len(frame) == 2 * 6 * 3  # losses × queries × measures
    grid = ["grid_model", "loss", "labels", "fold", "seed", "step"]
    table = heldout_summary(frame, grid).csv.set_index(["Variant", "Measure"])
    bce = table.loc[("bce", "nDCG@10")]
    fold0 = per_query_scores(_fold(QRELS, 0), _fold(runs["bce"], 0))["nDCG@10"]
    fold1 = per_query_scores(_fold(QRELS, 1), _fold(runs["bce"], 1))["nDCG@10"]
    mean0, mean1 = 100 * sum(fold0.values()) / 3, 100 * sum(fold1.values()) / 3
    assert bce["fold 0"] == pytest.approx(mean0) and bce["fold 1"] == pytest.approx(mean1)
    assert bce["folds"] == pytest.approx((mean0 + mean1) / 2)
    assert bce["folds_std"] == pytest.approx(abs(mean0 - mean1) / math.sqrt(2))
    for loss in ("bce", "softmax"):
        for measure, value in _direct(runs[loss]).items():
            assert table.loc[(loss, measure), "pooled"] == pytest.approx(value, abs=1e-9)
    assert set(table["queries"]) == {6}


def test_heldout_comparison_pairs_queries(tmp_path):
    runs = write_heldout_study(tmp_path)
    frame = per_query_frame(read_sources([tmp_path]))
    grid = ["grid_model", "loss", "labels", "fold", "seed", "step"]
    comparison = heldout_comparison(frame, grid, "loss=bce", "loss=softmax").csv
    rr = comparison.set_index("Measure").loc["RR(rel=2)@10"]
    # softmax ranks d3 first for q1 (RR 1 instead of 1/2) and d4 first for q5 (1 instead of 1/2)
    assert rr["diff"] == pytest.approx(100 * (-0.5 - 0.5) / 6)
    assert (rr["n"], rr["wins"], rr["losses"], rr["ties"]) == (6, 0, 2, 4)
    # two non-zero differences of equal size, both negative: exact p = 2 / 2^2
    assert rr["wilcoxon_p"] == pytest.approx(0.5) and rr["sign_p"] == pytest.approx(0.5)
    assert math.isnan(rr["ci_low"])  # 6 queries: below the bootstrap threshold
    direct = {loss: _direct(run) for loss, run in runs.items()}
    ndcg = comparison.set_index("Measure").loc["nDCG@10"]
    assert ndcg["diff"] == pytest.approx(direct["bce"]["nDCG@10"] - direct["softmax"]["nDCG@10"])
    assert heldout_comparison(frame, grid, "loss=bce", "loss=infonce") is None


def test_cli_writes_heldout_tables_that_compile(tmp_path):
    write_heldout_study(tmp_path / "cache")
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(tmp_path / "cache"), "--benchmark", QS,
                     "--out", str(out)]) == 0
    summary = pd.read_csv(out / "heldout.csv")
    assert list(summary.columns[:6]) == ["Variant", "Measure", "fold 0", "fold 1", "folds",
                                         "pooled"]
    assert (out / "heldout_comparison.csv").exists()
    # every file the report wrote is named by pairrel.layout (figures vs a grid axis by pattern)
    from pairrel.layout import REPORT_FILES, ablation_figure

    named = {name for files in REPORT_FILES.values() for name in files}
    assert {"heldout.tex", "heldout_comparison.md", "comparison.md", "notes.md"} <= {p.name for p in out.iterdir()}
    assert {p.name for p in out.iterdir() if not p.name.startswith(ablation_figure(""))} <= named
    markdown = (out / "heldout_comparison.md").read_text()
    assert "| bce vs softmax |" not in markdown and "loss=bce" in markdown
    main = pd.read_csv(out / "main_table.csv")
    assert not any("HeldOut" in c for c in main.columns)  # never part of an average
    body = "\n".join(rf"\input{{{out / name}}}" for name in ("heldout.tex",
                                                            "heldout_comparison.tex"))
    assert "Overfull \\hbox" not in compile_latex(body, tmp_path / "tex")
