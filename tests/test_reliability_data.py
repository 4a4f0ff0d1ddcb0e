"""Local dataset files and prepared sources with faults: each is a clear error or handled right.

The real path: a local directory registered with ir_datasets, prepared by
``pairrel.data.sources.prepare_source`` into Parquet, read back by
``pairrel.data.batching.load_prepared_source``.
"""

import json
import os
import uuid

import pyarrow.parquet as pq
import pytest

from pairrel.data.batching import load_prepared_source
from pairrel.data.registry import INDEX_CACHE, LocalDataError, check_local_file, local_dataset_files, register_local_dir
from pairrel.data.sources import SourceError, prepare_source

META = {"qrels_defs": {"0": "irrelevant", "1": "relevant", "2": "very relevant"}, "max_grade": 2}
DOCS = "d1\talpha text\nd2\tbeta text\nd3\tgamma text\n"
QUERIES = "q1\talpha?\nq2\tbeta?\n"
QRELS = "q1 0 d1 2\nq1 0 d2 0\nq2 0 d2 1\nq2 0 d3 0\n"


def make_dir(path, docs=DOCS, queries=QUERIES, qrels=QRELS, meta=META):
    path.mkdir(parents=True)
    for name, content in (("docs.tsv", docs), ("queries.tsv", queries), ("qrels.txt", qrels)):
        (path / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def prepare(directory, out):
    dataset_id = f"pairrel-test/{uuid.uuid4().hex[:8]}"
    register_local_dir(dataset_id, directory)
    prepare_source("s", {"instruction": "", "dataset": dataset_id}, out)
    return pq.read_table(out).to_pylist()


def test_local_dataset_files_lists_what_is_read(tmp_path):
    directory = make_dir(tmp_path / "ds")
    assert local_dataset_files(directory) == [directory / n for n in ("docs.tsv", "queries.tsv", "meta.json", "qrels.txt")]


def test_edited_docs_tsv_is_never_served_from_a_stale_index(tmp_path, ir_home):
    directory = make_dir(tmp_path / "ds")
    before = sorted(p.name for p in directory.iterdir())
    rows = prepare(directory, tmp_path / "a.parquet")
    assert {r["doc"] for r in rows if r["doc_id"] == "d1"} == {"alpha text"}
    (directory / "docs.tsv").write_text(DOCS.replace("alpha text", "alpha text, edited"))
    rows = prepare(directory, tmp_path / "b.parquet")  # same directory, a new id: a new registration
    assert {r["doc"] for r in rows if r["doc_id"] == "d1"} == {"alpha text, edited"}
    assert sorted(p.name for p in directory.iterdir()) == before  # nothing written into the user's folder
    assert len(list((ir_home / INDEX_CACHE).iterdir())) == 2  # one index per docs.tsv content


def test_utf8_bom_does_not_hide_the_first_id(tmp_path, ir_home):
    directory = make_dir(tmp_path / "ds", queries="\ufeff" + QUERIES, qrels="\ufeff" + QRELS)
    rows = prepare(directory, tmp_path / "s.parquet")
    assert sorted((r["query_id"], r["doc_id"], r["grade"]) for r in rows) == [
        ("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d2", 1), ("q2", "d3", 0)]


@pytest.mark.parametrize("fault, files, line, message", [
    ("duplicate doc id", {"docs": DOCS + "d2\tanother beta\n"}, ("docs.tsv", 4), "doc id 'd2' already on line 2"),
    ("query id twice, other text", {"queries": QUERIES + "q1\tother?\n"}, ("queries.tsv", 3), "already on line 1"),
    ("grade above max_grade", {"qrels": QRELS + "q2 0 d1 3\n"}, ("qrels.txt", 5), "grade 3 is outside 0..2"),
    ("undeclared negative grade", {"qrels": "q1 0 d3 -1\n" + QRELS}, ("qrels.txt", 1), "grade -1 is outside 0..2"),
    ("docs cut mid-record", {"docs": DOCS + "d4\tdelta te"}, ("docs.tsv", 4), "ends mid-record"),
    ("qrels cut mid-record", {"qrels": QRELS + "q2 0 d"}, ("qrels.txt", 5), "ends mid-record"),
    ("invalid UTF-8", {"docs": DOCS.encode() + b"d4\tcaf\xe9\n"}, ("docs.tsv", 4), "not valid UTF-8"),
    ("NUL padding", {"docs": DOCS.encode() + b"\0\0\0\0"}, ("docs.tsv", 4), "NUL byte at column 1"),
    ("tab in a text", {"docs": DOCS + "d4\tone\ttwo\n"}, ("docs.tsv", 4), "expected 2 tab-separated fields, got 3"),
    ("empty id", {"queries": QUERIES + "\tno id\n"}, ("queries.tsv", 3), "empty id"),
])
def test_bad_local_file_is_an_error_naming_file_and_line(tmp_path, ir_home, fault, files, line, message):
    directory = make_dir(tmp_path / "ds", **files)
    out = tmp_path / "s.parquet"
    with pytest.raises(SourceError, match=f"{directory / line[0]} line {line[1]}: .*{message}"):
        prepare(directory, out)
    assert not out.exists() and not out.with_suffix(".meta.json").exists()
    assert list(tmp_path.glob(".*tmp*")) == []  # no half-written output


def test_declared_negative_grade_is_left_out_of_training_and_counted(tmp_path, ir_home):
    # TREC's -1 ("junk", dpr-w100's random negatives) may be declared, but is no training grade:
    # the pair is left out and counted in the meta's warnings. An undeclared one is an error.
    meta = {"qrels_defs": {"-1": "junk", **META["qrels_defs"]}, "max_grade": 2}
    directory = make_dir(tmp_path / "ds", qrels=QRELS + "q2 0 d1 -1\n", meta=meta)
    rows = prepare(directory, tmp_path / "s.parquet")
    assert ("q2", "d1") not in {(r["query_id"], r["doc_id"]) for r in rows}
    import json as _json

    assert _json.loads((tmp_path / "s.meta.json").read_text())["warnings"]["negative_grades"] == 1


def test_local_file_check_is_its_own_error_type(tmp_path):
    directory = make_dir(tmp_path / "ds", docs=DOCS + "d1\tagain\n")
    with pytest.raises(LocalDataError, match=f"{directory / 'docs.tsv'} line 4"):
        check_local_file(directory / "docs.tsv", "docs")
    assert check_local_file(directory / "queries.tsv", "queries") == __import__("hashlib").sha256(QUERIES.encode()).hexdigest()


def test_same_query_twice_with_the_same_text_is_allowed(tmp_path, ir_home):
    directory = make_dir(tmp_path / "ds", queries=QUERIES + "q1\talpha?\n")
    assert len(prepare(directory, tmp_path / "s.parquet")) == 4


# ----------------------------------------------------------------------------- prepared sources

@pytest.fixture
def prepared(tmp_path, ir_home):
    out = tmp_path / "s.parquet"
    prepare(make_dir(tmp_path / "ds"), out)
    return out, out.with_suffix(".meta.json")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_parquet_names_its_path(prepared, damage):
    parquet, meta = prepared
    data = parquet.read_bytes()
    parquet.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not parquet at all")
    with pytest.raises(ValueError, match=f"{parquet}: cannot read the prepared source"):
        load_prepared_source(parquet, meta)


@pytest.mark.parametrize("content, message", [
    (b'{"max_grade": 2, "weight"', "line 1: not valid JSON"),
    (b'{"max_grade": 2}\xff', "line 1: not valid UTF-8"),
])
def test_corrupt_meta_names_its_path(prepared, content, message):
    parquet, meta = prepared
    meta.write_bytes(content)
    with pytest.raises(ValueError, match=f"{meta}: .*{message}"):
        load_prepared_source(parquet, meta)


# ----------------------------------------------------------------------------- pairrel.io

def test_atomic_writes_respect_the_umask(tmp_path):
    from pairrel.io import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x\n")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("y")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "z\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "folder", "private.txt"]  # no temporaries


def test_atomic_dir_keeps_the_old_folder_when_building_fails(tmp_path):
    from pairrel.io import atomic_dir

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "v").write_text("2")
        raise RuntimeError("killed while writing")
    assert (tmp_path / "out" / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_read_json_and_jsonl_name_file_and_line(tmp_path):
    from pairrel.io import FileFormatError, read_json, read_jsonl

    (tmp_path / "a.json").write_text('{\n  "a": 1,\n  "b": }\n')
    with pytest.raises(FileFormatError, match=f"{tmp_path / 'a.json'}: line 3: not valid JSON"):
        read_json(tmp_path / "a.json")
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"st')
    with pytest.raises(FileFormatError, match=f"{tmp_path / 'm.jsonl'}: line 3"):
        read_jsonl(tmp_path / "m.jsonl")
    assert read_jsonl(tmp_path / "m.jsonl", drop_partial_last_line=True) == [{"step": 1}, {"step": 2}]
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')  # not the last line: an error
    with pytest.raises(FileFormatError, match="line 2"):
        read_jsonl(tmp_path / "m.jsonl", drop_partial_last_line=True)
