"""pairrel.data.sources.prepare_source: qrels, docpairs and JSONL sources into Parquet."""

import hashlib
import json
import uuid

import pyarrow.parquet as pq
import pytest

from pairrel.config import deep_merge
from pairrel import cli
from pairrel.data.prefetch import DataUnavailableError, missing_files
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import SourceError, prepare_source

META = {"qrels_defs": {"0": "no", "1": "partly", "2": "yes"}, "max_grade": 2, "instruction": "Find passages"}
DOCS = {"d1": "alpha text", "d2": "beta text", "d3": "gamma text", "d4": "delta text"}
QUERIES = {"q1": "alpha?", "q2": "beta?", "q3": "gamma?"}


def make_dataset(tmp_path, qrels=None, docpairs=None, docs=DOCS, queries=QUERIES, meta=META):
    directory = tmp_path / f"ds-{uuid.uuid4().hex[:6]}"
    directory.mkdir()
    (directory / "docs.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in docs.items()))
    (directory / "queries.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in queries.items()))
    if qrels is not None:
        (directory / "qrels.txt").write_text("".join(line + "\n" for line in qrels))
    if docpairs is not None:
        (directory / "docpairs.tsv").write_text("".join("\t".join(p) + "\n" for p in docpairs))
    (directory / "meta.json").write_text(json.dumps(meta))
    dataset_id = f"pairrel-test/{directory.name}"
    register_local_dir(dataset_id, directory)
    return dataset_id


def rows(path):
    table = pq.read_table(path)
    return list(zip(*(table[c].to_pylist() for c in ("query_id", "query", "doc_id", "doc", "grade"))))


def no_leftovers(directory):
    return not [p.name for p in directory.iterdir() if ".tmp-" in p.name]


def test_qrels_source_keeps_raw_grades_in_row_groups(tmp_path):
    dataset_id = make_dataset(tmp_path, qrels=["q1 0 d1 2", "q1 0 d2 0", "q2 0 d2 1", "q2 0 d3 0", "q3 0 d4 2"])
    out = tmp_path / "out" / "src.parquet"
    meta = prepare_source("src", {"instruction": "", "dataset": dataset_id, "weight": 0.5}, out, chunk_size=2)
    assert rows(out) == [("q1", "alpha?", "d1", "alpha text", 2), ("q1", "alpha?", "d2", "beta text", 0),
                         ("q2", "beta?", "d2", "beta text", 1), ("q2", "beta?", "d3", "gamma text", 0),
                         ("q3", "gamma?", "d4", "delta text", 2)]
    assert pq.ParquetFile(out).metadata.num_row_groups == 3  # streamed in chunks of 2
    assert str(pq.read_schema(out).field("grade").type) == "int16"
    on_disk = json.loads(out.with_suffix(".meta.json").read_text())
    assert on_disk == meta
    assert meta == {"source": "src", "dataset_id": dataset_id, "instruction": "Find passages", "weight": 0.5,
                    "pairs_from": "qrels", "max_grade": 2, "n_queries": 3, "n_pairs": 5,
                    "grade_counts": {"0": 2, "1": 1, "2": 2}, "warnings": {}}
    assert no_leftovers(out.parent)


def test_counted_warnings_and_max_examples(tmp_path):
    dataset_id = make_dataset(tmp_path, qrels=["q2 0 d2 1", "q1 0 d1 2", "q1 0 d9 1", "q1 0 d1 2", "q7 0 d1 1",
                                               "q3 0 d4 0"])
    out = tmp_path / "src.parquet"
    meta = prepare_source("src", {"instruction": "", "dataset": dataset_id}, out)
    assert meta["warnings"] == {"duplicate_pairs": 1, "missing_docs": 1, "missing_queries": 1}
    assert [(r[0], r[2], r[4]) for r in rows(out)] == [("q2", "d2", 1), ("q1", "d1", 2), ("q3", "d4", 0)]
    # the first two distinct queries in file order: q2, q1
    meta = prepare_source("src", {"instruction": "", "dataset": dataset_id, "max_examples": 2}, out)
    assert meta["n_queries"] == 2 and [(r[0], r[2]) for r in rows(out)] == [("q2", "d2"), ("q1", "d1")]


@pytest.mark.parametrize("qrels, message", [
    (["q1 0 d1 2", "q1 0 d2", "q2 0 d2 1"], r"qrels\.txt line 2: 'q1 0 d2'"),
    (["q1 0 d1 2", "q2 0 d2 x"], r"qrels\.txt line 2: 'q2 0 d2 x'"),
    (["q1 0 d1 2", "q1 0 d1 1"], "judged twice with different grades"),
    (["q1 0 d8 2", "q2 0 d9 1"], "yielded no pairs.*missing_docs"),
])
def test_bad_qrels_are_errors_and_leave_no_output(tmp_path, qrels, message):
    dataset_id = make_dataset(tmp_path, qrels=qrels)
    out = tmp_path / "out" / "src.parquet"
    out.parent.mkdir()
    with pytest.raises(SourceError, match=message):
        prepare_source("src", {"instruction": "", "dataset": dataset_id}, out, chunk_size=1)
    assert list(out.parent.iterdir()) == []


def test_docpairs_source_positive_one_negative_zero(tmp_path):
    dataset_id = make_dataset(tmp_path, qrels=["q1 0 d1 1"], docpairs=[
        ("q1", "d1", "d2"), ("q1", "d1", "d3"), ("q2", "d2", "d4"), ("q1", "d1", "d3"), ("q3", "d4", "d1")])
    out = tmp_path / "pairs.parquet"
    meta = prepare_source("pairs", {"instruction": "", "dataset": dataset_id}, out, chunk_size=100)
    assert [(r[0], r[2], r[4]) for r in rows(out)] == [
        ("q1", "d1", 1), ("q1", "d2", 0), ("q1", "d3", 0), ("q2", "d2", 1), ("q2", "d4", 0),
        ("q3", "d4", 1), ("q3", "d1", 0)]
    assert meta["pairs_from"] == "docpairs" and meta["max_grade"] == 1
    assert meta["warnings"] == {"duplicate_pairs": 3}  # d1 twice more as q1's positive, (q1, d3) once
    meta = prepare_source("pairs", {"instruction": "", "dataset": dataset_id, "max_examples": 2}, out)
    assert {r[0] for r in rows(out)} == {"q1", "q2"}
    # forcing qrels on the same dataset reads its qrels instead
    meta = prepare_source("pairs", {"instruction": "", "dataset": dataset_id, "pairs": "qrels"}, out)
    assert meta["pairs_from"] == "qrels" and meta["n_pairs"] == 1
    with pytest.raises(SourceError, match="'folds' needs graded qrels"):
        prepare_source("pairs", {"instruction": "", "dataset": dataset_id, "folds": 2}, out)


def sha(prefix, text):
    return prefix + hashlib.sha1(text.encode()).hexdigest()[:16]


def test_jsonl_source(tmp_path):
    path = tmp_path / "echo.jsonl"
    lines = [{"query": "who wrote it", "positive": "the author", "negative": "a reader"},
             {"query": "what is it", "positive": ["a thing", "an object"], "negative": []},
             {"query": "no answer", "positive": []},
             {"query": "who wrote it", "positive": "the author", "negative": ["a critic"]}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = tmp_path / "echo.parquet"
    meta = prepare_source("echo", {"jsonl": str(path), "instruction": "Retrieve", "weight": 0.1}, out)
    q1, q2 = sha("q", "who wrote it"), sha("q", "what is it")
    assert rows(out) == [
        (q1, "who wrote it", sha("d", "the author"), "the author", 1),
        (q1, "who wrote it", sha("d", "a reader"), "a reader", 0),
        (q2, "what is it", sha("d", "a thing"), "a thing", 1),
        (q2, "what is it", sha("d", "an object"), "an object", 1),
        (q1, "who wrote it", sha("d", "a critic"), "a critic", 0)]
    assert meta["warnings"] == {"blank_lines": 1, "duplicate_pairs": 1, "no_positive": 1}
    assert meta["n_queries"] == 2 and meta["dataset_id"] is None and meta["max_grade"] == 1


@pytest.mark.parametrize("line, message", [
    ('{"query": "x", "positive": "y"', "line 2: not valid JSON"),
    ('["x", "y"]', "line 2: expected a JSON object"),
    ('{"query": "", "positive": "y"}', "line 2: key 'query' must be a non-empty string"),
    ('{"query": "x", "positive": 3}', "line 2: key 'positive' must be a string or a list"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "a", "positive": "b"}\n' + line + "\n")
    out = tmp_path / "out" / "bad.parquet"
    with pytest.raises(SourceError, match=f"bad.jsonl: {message}"):
        prepare_source("bad", {"instruction": "", "jsonl": str(path)}, out)
    assert not out.exists() and no_leftovers(out.parent)


def test_source_config_errors(tmp_path):
    with pytest.raises(SourceError, match="exactly one of"):
        prepare_source("x", {"instruction": "", "dataset": "a", "jsonl": "b"}, tmp_path / "x.parquet")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SourceError, match="yielded no pairs"):
        prepare_source("x", {"instruction": "", "jsonl": str(empty)}, tmp_path / "x.parquet")


def test_missing_local_file_is_reported_before_any_work(tmp_path):
    dataset_id = make_dataset(tmp_path, qrels=["q1 0 d1 2"])
    directory = tmp_path / dataset_id.split("/")[1]
    (directory / "docs.tsv").unlink()
    [missing] = missing_files(dataset_id, ("queries", "qrels", "docs"))
    assert (missing.dataset_id, missing.component, missing.expected_path) == (
        dataset_id, "docs", str(directory / "docs.tsv"))
    with pytest.raises(DataUnavailableError, match=f"dataset {dataset_id} \\(docs\\): missing .*docs.tsv"):
        prepare_source("src", {"instruction": "", "dataset": dataset_id}, tmp_path / "src.parquet")


def test_cli_prepare_with_merged_configs(tmp_path, capsys):
    dataset_id = make_dataset(tmp_path, qrels=["q1 0 d1 2", "q2 0 d3 0"])
    base, override = tmp_path / "a.yaml", tmp_path / "b.yaml"
    base.write_text(f"data:\n  mix:\n    sources:\n      s: {{dataset: {dataset_id}, weight: 0.3, instruction: A}}\n")
    override.write_text("data:\n  mix:\n    sources:\n      s: {instruction: B}\n")
    out = tmp_path / "s.parquet"
    assert cli.main(["data", "prepare", "--config", str(base), "--config", str(override), "--data", "mix", "--source", "s",
                 "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["instruction"], meta["weight"], meta["n_pairs"]) == ("B", 0.3, 2)
    assert cli.main(["data", "prepare", "--config", str(base), "--data", "mix", "--source", "nope", "--out", str(out)]) == 1
    assert "config has no key 'data.mix.sources.nope'" in capsys.readouterr().err
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}
