"""Graded batches on real TREC-DL qrels: the paper grid's TREC-DL runs, 5 folds, `pairrel batches`.

The qrels and topics are TREC-DL 2019's passage task (43 judged queries, 9,260 judgments,
grades 0-3), committed under tests/data/trec-dl-2019 (public files, see tests/data/README.md). Passage texts are synthetic ("passage
<id>"): batching needs the judgments, not the words. The dataset stands in for TREC-DL 2023
(same grades, same K-fold route, fewer queries).
"""

import json
import uuid
from pathlib import Path

import pytest

from pairrel.config import load_config
from pairrel import cli
from pairrel.data.inspect import batch_summaries
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.data.trecdl import kfold_queries
from pairrel.jobs import source_job
from pairrel.study import Study

from .conftest import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "data" / "trec-dl-2019"
QRELS, TOPICS = "qrels.dl19-passage.txt", "topics.dl19-passage.txt"
FOLDS = 5


def judged(qrels_path):
    return sorted({line.split()[0] for line in qrels_path.read_text().splitlines() if line.strip()})


@pytest.fixture(scope="module")
def trecdl(tmp_path_factory):
    """The 2019 qrels registered as a local dataset and prepared for each of the 5 folds."""
    root = tmp_path_factory.mktemp("dl19")
    directory = root / "dataset"
    directory.mkdir()
    qrels = (FIXTURE / QRELS).read_text()
    (directory / "qrels.txt").write_text(qrels)
    (directory / "queries.tsv").write_text((FIXTURE / TOPICS).read_text())
    doc_ids = sorted({line.split()[2] for line in qrels.splitlines() if line.strip()})
    (directory / "docs.tsv").write_text("".join(f"{d}\tpassage {d}\n" for d in doc_ids))
    meta = {"qrels_defs": {"0": "irrelevant", "1": "related", "2": "highly relevant", "3": "perfectly relevant"},
            "max_grade": 3}
    (directory / "meta.json").write_text(json.dumps(meta))
    dataset_id = f"pairrel-test/dl19-{uuid.uuid4().hex[:6]}"
    register_local_dir(dataset_id, directory)

    # config.yaml's study, its TREC-DL 2023 source read from the 2019 files instead
    (source_name, _), = load_config(REPO_ROOT / "config.yaml")["data"]["trec-dl-2023"]["sources"].items()
    override = {"data": {"trec-dl-2023": {"sources": {source_name: {"dataset": dataset_id}}}}}
    (root / "dl19.yaml").write_text(json.dumps(override))  # JSON is YAML
    study = Study(load_config(REPO_ROOT / "config.yaml", root / "dl19.yaml"), root=root)
    for fold in range(FOLDS):
        job = source_job(study.cfg, "trec-dl-2023", source_name, fold)
        prepare_source(source_name, job["spec"], study.prepared("trec-dl-2023", source_name, fold))
    return study, source_name, root


def test_fixture_is_the_real_2019_qrels():
    assert len(judged(FIXTURE / QRELS)) == 43
    lines = (FIXTURE / QRELS).read_text().splitlines()
    assert len(lines) == 9260
    grades = [int(line.split()[3]) for line in lines]
    assert [grades.count(g) for g in range(4)] == [5158, 1601, 1804, 697]


def test_every_trecdl_run_of_the_paper_grid_builds_graded_batches(trecdl):
    study, source_name, _ = trecdl
    runs = [run for run in study.runs if run.data == "trec-dl-2023"]
    assert {run.labels for run in runs} == {"binary@2", "graded-linear"} and len(runs) == 40
    all_ids = judged(FIXTURE / QRELS)
    tests = []
    for fold in range(FOLDS):
        split = json.loads(study.folds_file("trec-dl-2023", source_name, fold).read_text())
        assert split["folds"][fold]["train"] == kfold_queries(all_ids, FOLDS, 0)[fold][0]
        tests.append(set(split["folds"][fold]["test"]))
        for run in [r for r in runs if r.fold == fold]:
            summaries = batch_summaries(run.config, steps=4)
            for summary in summaries:
                assert summary["n_queries"] == 16
                # 16 judged passages each, plus other queries' passages judged for it too
                assert summary["judged_per_query"] >= 16
                assert summary["n_docs"] <= 16 * 16
                if run.labels == "graded-linear":
                    assert len(summary["target_values"]) >= 3
                    assert set(summary["target_values"]) <= {0.0, round(1 / 3, 6), round(2 / 3, 6), 1.0}
                else:
                    assert summary["target_values"] == [0.0, 1.0]
                assert set(summary["grade_counts"]) >= {"0", "1", "2", "3"}
    # the K test folds are disjoint and cover every judged query once
    assert sum(len(t) for t in tests) == 43 and set().union(*tests) == set(all_ids)


def test_pairrel_batches_cli(trecdl, tmp_path, capsys):
    study, source_name, root = trecdl
    run = "model~llama3-8b/data~trec-dl-2023/loss~bce/labels~graded-linear/fold~2/seed~42"
    folder = study.prepared("trec-dl-2023", source_name, 2).parent
    args = ["--config", str(REPO_ROOT / "config.yaml"), "--config", str(root / "dl19.yaml"), "--run", run]
    assert cli.main(["batches", *args, "--prepared", str(folder), "--steps", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines] == [0, 1]
    assert {"step", "source", "n_queries", "n_docs", "judged_per_query", "target_values", "grade_counts"} <= set(lines[0])
    # missing prepared files: the error names them and the snakemake command that writes them
    assert cli.main(["batches", *args, "--prepared", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere' / source_name}.fold~2.parquet" in err
    assert "snakemake --cores 1 --configfile" in err and "dl19.yaml" in err
