"""pairrel.data.registry: local directories served by the real ir_datasets machinery."""

import json
import uuid
from pathlib import Path

import ir_datasets
import pytest

from pairrel.data.registry import (
    UnknownDatasetError, load_dataset, local_dir, register_from_config, register_local_dir,
)

META = {"qrels_defs": {"0": "irrelevant", "1": "relevant", "2": "very relevant"}, "max_grade": 2,
        "instruction": "Find it"}


def make_dir(path, docs=(("d1", "alpha text"), ("d2", "beta text"), ("d3", "gamma text")),
             queries=(("q1", "alpha?"), ("q2", "beta?")), qrels=("q1 0 d1 2", "q1 0 d2 0", "q2 0 d2 1"),
             meta=META):
    path.mkdir(parents=True)
    (path / "docs.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in docs))
    (path / "queries.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in queries))
    (path / "qrels.txt").write_text("".join(line + "\n" for line in qrels))
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def new_id():
    return f"pairrel-test/{uuid.uuid4().hex[:8]}"


def test_registered_dir_is_served_by_ir_datasets(tmp_path):
    dataset_id = new_id()
    register_local_dir(dataset_id, make_dir(tmp_path / "ds"))
    dataset = ir_datasets.load(dataset_id)
    assert [(q.query_id, q.text) for q in dataset.queries_iter()] == [("q1", "alpha?"), ("q2", "beta?")]
    assert [(r.query_id, r.doc_id, r.relevance) for r in dataset.qrels_iter()] == [
        ("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d2", 1)]
    assert dataset.qrels_defs() == {0: "irrelevant", 1: "relevant", 2: "very relevant"}
    docs = dataset.docs_store().get_many(["d3", "d1", "nope"])
    assert {k: v.text for k, v in docs.items()} == {"d1": "alpha text", "d3": "gamma text"}
    assert not dataset.has_docpairs()


def test_registration_is_idempotent_and_built_ins_are_refused(tmp_path):
    dataset_id = new_id()
    first = register_local_dir(dataset_id, make_dir(tmp_path / "a"))
    assert register_local_dir(dataset_id, tmp_path / "a") is first
    assert local_dir(dataset_id) == (tmp_path / "a").resolve()
    # Another folder under the same id (a second study in one process) replaces the first.
    second = register_local_dir(dataset_id, make_dir(tmp_path / "b"))
    assert second is not first and local_dir(dataset_id) == (tmp_path / "b").resolve()
    with pytest.raises(ValueError, match="built-in"):
        register_local_dir("msmarco-passage", tmp_path / "a")


def test_docpairs_file_adds_a_docpairs_component(tmp_path):
    directory = make_dir(tmp_path / "ds")
    (directory / "docpairs.tsv").write_text("q1\td1\td3\n")
    dataset = register_local_dir(new_id(), directory)
    assert [tuple(p) for p in dataset.docpairs_iter()] == [("q1", "d1", "d3")]


def test_bad_directories_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        register_local_dir(new_id(), tmp_path / "missing")
    directory = make_dir(tmp_path / "ds")
    (directory / "queries.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="missing queries.tsv"):
        register_local_dir(new_id(), directory)
    bad = make_dir(tmp_path / "bad")
    (bad / "meta.json").write_text('{"qrels_defs": {"0": "x"},\n "max_grade": }')
    with pytest.raises(ValueError, match=r"meta.json: line 2: not valid JSON"):
        register_local_dir(new_id(), bad)
    (bad / "meta.json").write_text('{"qrels_defs": {"high": "x"}}')
    with pytest.raises(ValueError, match="grades must be integers"):
        register_local_dir(new_id(), bad)


def test_register_from_config_and_unknown_ids(tmp_path):
    ids = [new_id(), new_id()]
    cfg = {"local_datasets": {ids[0]: str(make_dir(tmp_path / "x")), ids[1]: "y"}}
    make_dir(tmp_path / "y")
    assert register_from_config(cfg, base_dir=tmp_path) == ids
    assert load_dataset(ids[1]).has_qrels()
    assert register_from_config({}) == []
    with pytest.raises(UnknownDatasetError, match="unknown ir_datasets id 'nope/none'.*local_datasets"):
        load_dataset("nope/none")


def _store(dataset_id):
    return load_dataset(dataset_id).docs_store()


def test_two_builders_at_once_build_the_index_once(tmp_path, ir_home):
    """The second builder waits on the lock and then finds the index complete: the corpus is
    read once and stored once (ir_datasets' own check-then-lock would store it twice)."""
    import threading
    import time

    dataset_id = new_id()
    register_local_dir(dataset_id, make_dir(tmp_path / "ds"))
    first, second = _store(dataset_id), _store(dataset_id)
    started, reads = threading.Event(), []

    def slow_docs(docs_iter):
        def docs():
            started.set()
            for doc in docs_iter():
                reads.append(doc.doc_id)
                time.sleep(0.1)
                yield doc
        return docs

    first.init_iter_fn = slow_docs(first.init_iter_fn)
    second.init_iter_fn = slow_docs(second.init_iter_fn)
    builder = threading.Thread(target=first.build)
    builder.start()
    assert started.wait(10)
    second.build()  # blocks until the first builder has renamed the index into place
    builder.join()
    assert reads == ["d1", "d2", "d3"]
    assert second.count() == 3 and {k: v.text for k, v in second.get_many(["d2"]).items()} == {"d2": "beta text"}


def test_a_truncated_index_is_named_and_rebuilt(tmp_path, ir_home, caplog):
    dataset_id = new_id()
    register_local_dir(dataset_id, make_dir(tmp_path / "ds"))
    store = _store(dataset_id)
    store.build()
    index = Path(store.path)
    assert json.loads((index / "pairrel-complete.json").read_text())["files"]["bin"] == (index / "bin").stat().st_size
    with open(index / "bin", "r+b") as handle:
        handle.truncate(5)
    again = _store(dataset_id)
    with caplog.at_level("WARNING", logger="pairrel.data.registry"):
        docs = again.get_many(["d1", "d3"])
    assert f"document index {index}: its files differ from pairrel-complete.json" in caplog.text
    assert {k: v.text for k, v in docs.items()} == {"d1": "alpha text", "d3": "gamma text"}
    assert again.count() == 3


def test_configured_datasets_are_checked_only_when_read(tmp_path):
    used, unused = new_id(), new_id()
    cfg = {"local_datasets": {used: str(make_dir(tmp_path / "x")), unused: str(tmp_path / "missing")}}
    assert register_from_config(cfg) == [used, unused]  # the missing folder is not looked at yet
    assert [q.query_id for q in ir_datasets.load(used).queries_iter()] == ["q1", "q2"]
    assert local_dir(used) == (tmp_path / "x").resolve()
    with pytest.raises(FileNotFoundError, match=rf"local dataset '{unused}': directory .*missing does not exist"):
        load_dataset(unused)
