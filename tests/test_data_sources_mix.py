"""prepare_source options of the open-mix sources: max_queries, symmetric, dpr-w100's −1 grades."""

import json

import pytest

from pairrel.data.batching import load_prepared_source
from pairrel.data.sources import SourceError, prepare_source

from .test_data_prepare import META, make_dataset, rows


def test_negative_grades_are_skipped_and_counted(tmp_path):
    # dpr-w100 style: 2/1 positives, 0 = BM25 hard negative (kept), -1 = random negative (skipped)
    meta = {**META, "qrels_defs": {"-1": "random negative", **META["qrels_defs"]}}
    dataset_id = make_dataset(tmp_path, qrels=["q1 0 d1 2", "q1 0 d2 0", "q1 0 d3 -1", "q2 0 d4 1", "q2 0 d1 -1"],
                              meta=meta)
    out = tmp_path / "nq.parquet"
    meta = prepare_source("nq", {"instruction": "", "dataset": dataset_id}, out)
    assert [(r[0], r[2], r[4]) for r in rows(out)] == [("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d4", 1)]
    assert meta["warnings"] == {"negative_grades": 2}
    load_prepared_source(out)  # every grade is within 0..max_grade


def test_max_queries_and_symmetric(tmp_path):
    dataset_id = make_dataset(tmp_path, qrels=["q2 0 d2 1", "q1 0 d1 2", "q3 0 d4 1"])
    out = tmp_path / "s.parquet"
    meta = prepare_source("s", {"instruction": "", "dataset": dataset_id, "max_queries": 2, "symmetric": True}, out)
    assert meta["n_queries"] == 2 and {r[0] for r in rows(out)} == {"q1", "q2"}
    assert json.loads(out.with_suffix(".meta.json").read_text())["symmetric"] is True
    assert load_prepared_source(out).symmetric
    with pytest.raises(SourceError, match="'max_queries' or its older name 'max_examples', not both"):
        prepare_source("s", {"instruction": "", "dataset": dataset_id, "max_queries": 2, "max_examples": 2}, out)
    with pytest.raises(SourceError, match="'max_queries' must be a positive integer, got 0"):
        prepare_source("s", {"instruction": "", "dataset": dataset_id, "max_queries": 0}, out)
