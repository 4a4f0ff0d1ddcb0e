"""TREC-DL 2023: K-fold query splits, and the real ir_datasets msmarco-passage-v2 code path on
files laid out exactly as ir_datasets expects them (queries, qrels.withDupes.txt, extracted
passage bundles), in a private IR_DATASETS_HOME (a subprocess: ir_datasets fixes its cache
paths at import)."""

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from pairrel.data.trecdl import extract_passages_sparse, kfold_queries, passage_location


def test_kfold_is_deterministic_disjoint_and_covering():
    ids = [f"q{i}" for i in range(11)]
    splits = kfold_queries(ids, 3, seed=0)
    assert splits == kfold_queries(list(reversed(ids)) + ids[:2], 3, seed=0)  # order and repeats do not matter
    tests = [set(test) for _, test in splits]
    assert sorted(len(t) for t in tests) == [3, 4, 4]
    assert set().union(*tests) == set(ids) and sum(map(len, tests)) == 11
    for train, test in splits:
        assert sorted(set(train) | set(test)) == sorted(ids) and not set(train) & set(test)
        assert train == sorted(train) and test == sorted(test)
    # pinned: default_rng(0).permutation(11) = [4, 6, 7, 2 | 0, 3, 5, 10 | 9, 8, 1] over the sorted ids
    # q0 q1 q10 q2 q3 q4 q5 q6 q7 q8 q9 (index 2 is 'q10'), cut 4/4/3
    assert [test for _, test in splits] == [["q10", "q3", "q5", "q6"], ["q0", "q2", "q4", "q9"], ["q1", "q7", "q8"]]
    assert kfold_queries(ids, 3, seed=1) != splits
    with pytest.raises(ValueError, match="2 <= k"):
        kfold_queries(ids[:2], 3)


def test_passage_location():
    assert passage_location("msmarco_passage_05_1234") == ("05", 1234)
    assert passage_location("8841823") is None and passage_location("msmarco_doc_00_1") is None


def build_corpus_tar(path, bundles):
    """An msmarco_v2_passage.tar: one gzipped JSONL bundle per entry; returns {pid: text}."""
    texts = {}
    with tarfile.open(path, "w") as tar:
        for bundle, passages in bundles.items():
            raw, offset = io.BytesIO(), 0
            for text in passages:
                pid = f"msmarco_passage_{bundle}_{offset}"
                line = (json.dumps({"pid": pid, "passage": text, "spans": "(0,5)", "docid": "msmarco_doc_00_0"})
                        + "\n").encode()
                raw.write(line)
                offset += len(line)
                texts[pid] = text
            data = gzip.compress(raw.getvalue())
            info = tarfile.TarInfo(f"msmarco_v2_passage/msmarco_passage_{bundle}.gz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return texts


def test_sparse_extraction_serves_get_many(tmp_path):
    texts = build_corpus_tar(tmp_path / "c.tar", {"00": ["one", "two", "three"], "01": ["four", "five"]})
    wanted = [pid for pid, t in texts.items() if t in ("two", "five")]
    with open(tmp_path / "c.tar", "rb") as stream:
        assert extract_passages_sparse(stream, wanted, tmp_path / "x") == {"wanted": 2, "found": 2}
    for pid in wanted:
        bundle, offset = passage_location(pid)
        with open(tmp_path / "x" / f"msmarco_passage_{bundle}", "rb") as f:
            f.seek(offset)
            assert json.loads(f.readline())["passage"] == texts[pid]
    assert (tmp_path / "x" / "_built").exists()


SCRIPT = r"""
import json, sys
from pairrel.data.prefetch import missing_files
from pairrel.data.summary import summarize
from pairrel.data.sources import prepare_source
from pairrel.data.trecdl import extract_passages_sparse
home, tar, out = sys.argv[1:4]
ID = "msmarco-passage-v2/trec-dl-2023/judged"
before = [str(m) for m in missing_files(ID, ("queries", "qrels", "docs"))]
doc_ids = [line.split()[2] for line in open(f"{home}/msmarco-passage-v2/trec-dl-2023/qrels.withDupes.txt")]
with open(tar, "rb") as stream:
    extract_passages_sparse(stream, doc_ids, f"{home}/msmarco-passage-v2/msmarco_v2_passage.tar.extracted")
after = [str(m) for m in missing_files(ID, ("queries", "qrels", "docs"))]
summary = summarize(ID)
meta = prepare_source("dl23", {"instruction": "", "dataset": ID, "folds": 3, "fold": 0, "weight": 1.0}, out, chunk_size=4)
print(json.dumps({"before": before, "after": after, "summary": summary, "meta": meta}))
"""


def test_trec_dl_2023_layout_through_ir_datasets(tmp_path, ir_home):
    import pyarrow.parquet as pq

    texts = build_corpus_tar(tmp_path / "msmarco_v2_passage.tar",
                             {"00": [f"passage {i}" for i in range(6)], "03": [f"other {i}" for i in range(6)]})
    pids = sorted(texts)
    dl23 = ir_home / "msmarco-passage-v2" / "trec-dl-2023"
    dl23.mkdir(parents=True)
    # 8 queries, 6 judged (2000..2005), 4 judgments each with grades (i + j) % 4; one judged
    # passage points into a bundle that is not in the corpus (counted as missing_docs)
    (dl23 / "queries.tsv").write_text("".join(f"{2000 + i}\tquery number {i}\n" for i in range(8)))
    qrels = [(str(2000 + i), pids[(3 * i + j) % len(pids)], (i + j) % 4) for i in range(6) for j in range(4)]
    qrels[5] = (qrels[5][0], "msmarco_passage_09_0", qrels[5][2])
    (dl23 / "qrels.withDupes.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, d, g in qrels))
    out = tmp_path / "dl23.parquet"
    env = {**os.environ, "IR_DATASETS_HOME": str(ir_home)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(ir_home), str(tmp_path / "msmarco_v2_passage.tar"),
                             str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["before"]) == 1 and "msmarco_v2_passage.tar" in report["before"][0]
    assert report["after"] == []
    summary = report["summary"]
    assert (summary["n_queries"], summary["n_judged_queries"], summary["n_qrels"]) == (6, 6, 24)
    assert summary["qrels_per_grade"] == {"0": 6, "1": 6, "2": 6, "3": 6}
    assert summary["n_docs"] == 138_364_198  # the corpus size ir_datasets documents
    assert summary["qrels_defs"]["3"].startswith("Perfectly relevant")

    train, test = kfold_queries([str(2000 + i) for i in range(6)], 3, seed=0)[0]
    expected = [(q, d, g) for q, d, g in qrels if q in train and d in texts]
    table = pq.read_table(out)
    got = list(zip(table["query_id"].to_pylist(), table["doc_id"].to_pylist(), table["grade"].to_pylist()))
    assert got == expected
    assert table["doc"].to_pylist() == [texts[d] for _, d, _ in expected]
    assert set(table["query"].to_pylist()) == {f"query number {int(q) - 2000}" for q in train}
    meta = report["meta"]
    assert meta["n_queries"] == 4 and meta["max_grade"] == 3
    assert meta["warnings"] == ({"missing_docs": 1} if qrels[5][0] in train else {})
    folds = json.loads(out.with_suffix(".folds.json").read_text())
    assert folds["folds"][0] == {"fold": 0, "train": train, "test": test}
    assert sorted(q for f in folds["folds"] for q in f["test"]) == [str(2000 + i) for i in range(6)]


def test_real_trec_dl_2023_files(tmp_path, ir_home):
    """With the real 2023 queries and qrels (set PAIRREL_TREC_DL_2023_DIR to a folder holding
    queries.tsv and qrels.withDupes.txt), the summary matches ir_datasets' published counts."""
    source = os.environ.get("PAIRREL_TREC_DL_2023_DIR")
    if not source:
        pytest.skip("PAIRREL_TREC_DL_2023_DIR is not set (the real TREC-DL 2023 files are not in this checkout)")
    import shutil

    target = ir_home / "msmarco-passage-v2" / "trec-dl-2023"
    target.mkdir(parents=True)
    for name in ("queries.tsv", "qrels.withDupes.txt"):
        shutil.copy(os.path.join(source, name), target / name)
    env = {**os.environ, "IR_DATASETS_HOME": str(ir_home)}
    result = subprocess.run([sys.executable, "-m", "pairrel.cli", "data", "summary", "msmarco-passage-v2/trec-dl-2023/judged"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["n_queries"], summary["n_judged_queries"], summary["n_qrels"]) == (82, 82, 22327)
    assert summary["qrels_per_grade"] == {"0": 13866, "1": 4372, "2": 2259, "3": 1830}
