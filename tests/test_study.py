"""pairrel.study: the grid, run ids, folds, per-mix training, paths, evaluation plan, identity."""

import json

import pytest

from pairrel.config import ConfigError, load_config
from pairrel.jobs import JobCatalogue
from pairrel.study import (
    Study,
    base_revision,
    checkpoint_revision,
    checkpoint_steps,
    parse_run_id,
    training_fingerprint,
)
from tests.conftest import REPO_ROOT

PAPER = REPO_ROOT / "config.yaml"
QUICKSTART = REPO_ROOT / "presets" / "quickstart.yaml"


@pytest.fixture(scope="module")
def paper():
    return Study.from_files(PAPER)


@pytest.fixture(scope="module")
def quickstart():
    return Study.from_files(PAPER, QUICKSTART)


def test_paper_grid_has_every_fold_of_trec_dl(paper):
    # open mix: 2 models x 2 losses x binary@1; TREC-DL: 2 models x 2 losses x 2 labels x 5 folds
    assert len(paper.runs) == 4 + 40
    trec = [r for r in paper.runs if r.data == "trec-dl-2023"]
    assert sorted({r.fold for r in trec}) == [0, 1, 2, 3, 4]
    assert {r.labels for r in trec} == {"binary@2", "graded-linear"}
    assert all(r.fold is None for r in paper.runs if r.data == "open-mix")
    assert trec[0].id == "model~llama3-8b/data~trec-dl-2023/loss~softmax/labels~binary@2/fold~0/seed~42"


def test_run_ids_round_trip(paper):
    for run in paper.runs:
        assert paper.run(run.id) is run
        assert {k: v for k, v in parse_run_id(run.id).items()} == run.grid
    with pytest.raises(ConfigError, match="malformed run id"):
        parse_run_id("model~a/data~b")
    with pytest.raises(ConfigError, match="not part of study 'paper'"):
        paper.run("model~x/data~open-mix/loss~bce/labels~binary@1/seed~42")


def test_per_mix_training_is_merged_over_the_global_one(paper):
    trec = paper.run("model~sheared-llama/data~trec-dl-2023/loss~bce/labels~graded-linear/fold~3/seed~42")
    open_mix = paper.run("model~sheared-llama/data~open-mix/loss~bce/labels~binary@1/seed~42")
    assert trec.training["batch_size"] == 16 and open_mix.training["batch_size"] == 512
    assert trec.training["learning_rate"] == open_mix.training["learning_rate"] == 2e-4   # inherited
    assert trec.steps == [25, 50, 75, 100] and open_mix.steps == [200, 400, 600, 800, 1000]
    cfg = trec.config
    assert cfg["training"]["batch_size"] == 16 and cfg["fold"] == 3
    assert cfg["prepared"]["trec-dl-2023"]["parquet"].endswith("results/paper/data/trec-dl-2023/trec-dl-2023.fold~3.parquet")


def test_paths_have_one_owner(paper):
    run = paper.run("model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~1/seed~42")
    assert str(run.dir) == f"results/paper/runs/{run.id}"
    assert str(run.checkpoint(100)) == f"results/paper/runs/{run.id}/checkpoint-100"
    assert str(run.eval_marker(100, "STS")) == f"results/paper/eval/{run.id}/step~100/STS.done"
    assert str(paper.folds_file("trec-dl-2023", "trec-dl-2023", 1)) == \
        "results/paper/data/trec-dl-2023/trec-dl-2023.fold~1.folds.json"
    assert str(paper.prepared("open-mix", "nq")) == "results/paper/data/open-mix/nq.parquet"
    assert paper.source_parts("trec-dl-2023") == [("trec-dl-2023", f) for f in range(5)]
    assert run.mteb_name(100) == ("pairrel/model-llama3-8b.data-trec-dl-2023.loss-bce.labels-binary@2"
                                  ".fold-1.seed-42.step-100")


def test_tiered_evaluation(paper):
    run = paper.run("model~llama3-8b/data~open-mix/loss~bce/labels~binary@1/seed~42")
    assert len(paper.eval_plan.eval_tasks(final=True)) == 56 and len(paper.eval_plan.eval_tasks(final=False)) == 15
    # Intermediate checkpoints: the 15-task subset has no Summarization task and no held-out fold.
    small = "Classification+Clustering+PairClassification+Reranking+STS+Summarization"
    assert paper.eval_plan.groups_for(run, final=False) == ["Retrieval", small]
    assert paper.eval_plan.groups_for(run, final=True) == ["Retrieval", small]
    # the 15-task subset has no Summarization task: 12 of its tasks share one job
    assert len(paper.eval_plan.tasks_for(small, final=False)) == 12 and len(paper.eval_plan.tasks_for(small, final=True)) == 41
    assert paper.eval_plan.tasks_for("Retrieval", final=False) == ["SciFact", "ArguAna", "NFCorpus"]
    assert len(paper.eval_plan.tasks_for("Retrieval", final=True)) == 15
    trec = paper.run("model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~1/seed~42")
    assert paper.eval_plan.groups_for(trec, final=False) == ["Retrieval", small, "heldout"]
    assert paper.eval_plan.heldout_parts(trec) == [("trec-dl-2023", "trec-dl-2023", 1)]
    assert len(paper.eval_plan.heldout_parts(None)) == 5   # base models: every fold


def test_full_benchmark_on_the_first_fold_only(paper):
    small = "Classification+Clustering+PairClassification+Reranking+STS+Summarization"
    variant = "model~sheared-llama/data~trec-dl-2023/loss~softmax/labels~graded-linear"
    first, other = paper.run(f"{variant}/fold~0/seed~42"), paper.run(f"{variant}/fold~3/seed~42")
    assert paper.evaluation["full_benchmark"] == "first-fold"
    assert first.full_benchmark(100) and not first.full_benchmark(75)
    assert not other.full_benchmark(100)
    open_mix = paper.run("model~llama3-8b/data~open-mix/loss~bce/labels~binary@1/seed~42")
    assert open_mix.full_benchmark(1000) and paper.eval_plan.gets_full_benchmark(None)
    # fold 3's final checkpoint: the 15-task subset (3 Retrieval + 12 others) and its held-out fold
    markers = {m for m in JobCatalogue(paper).eval_markers() if f"{variant}/fold~3/" in str(m)}
    assert {str(m).split("/step~")[1] for m in markers} == {
        f"{s}/{g}.done" for s in (25, 50, 75, 100) for g in ("Retrieval", small, "heldout")}
    # 8 variants x 1 fold on all 56 tasks; their 32 other folds on the 15-task subset
    finals = [r for r in paper.runs if r.fold is not None and r.full_benchmark(r.final_step)]
    assert len(finals) == 8 and {r.fold for r in finals} == {0}
    # a grid without fold 0: its first fold on the grid is the full one
    later = Study.from_files(PAPER, overrides={"grid": {"folds": [2, 4]}})
    assert {r.fold for r in later.runs if r.fold is not None and r.full_benchmark(r.final_step)} == {2}
    # one line away: everything on everything
    every = Study.from_files(PAPER, overrides={"evaluation": {"full_benchmark": "all"}})
    assert every.run(f"{variant}/fold~3/seed~42").full_benchmark(100)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"evaluation": {"task_groups": ["Retreival"]}}, "evaluation.task_groups.0"),
        ({"evaluation": {"task_groups": ["Retrieval", "STS+Clustring"]}}, "evaluation.task_groups.1"),
        ({"evaluation": {"tasks": ["STS17", "NoSuchTask"]}}, "evaluation.tasks"),
        ({"evaluation": {"tasks": ["STS17"], "task_groups": ["STS", "Retrieval"]}}, "evaluation.task_groups.1"),
        ({"evaluation": {"benchmark": "MTEB(klingon)"}}, "evaluation.benchmark"),
        ({"grid": {"folds": [7]}}, "grid.folds"),
    ],
    ids=["typo-group", "typo-in-joined-group", "unknown-task", "empty-group", "unknown-benchmark", "missing-fold"],
)
def test_evaluation_typos_are_errors(override, key):
    with pytest.raises(ConfigError) as err:
        Study(load_config(PAPER, overrides=override))
    assert f"'{key}" in str(err.value)


def test_checkpoint_steps():
    assert checkpoint_steps({"steps": 1000, "checkpoint_every": 200}) == [200, 400, 600, 800, 1000]
    assert checkpoint_steps({"steps": 30, "checkpoint_every": 20}) == [20, 30]
    assert checkpoint_steps({"steps": 5, "checkpoint_every": None}) == [5]


def test_identity_maps_every_checkpoint_back_to_its_run(quickstart):
    for run in quickstart.runs:
        for step in run.steps:
            assert quickstart.identify(run.mteb_name(step)) == (run, "minilm", step)
    assert quickstart.identify("pairrel/minilm") == (None, "minilm", None)
    assert quickstart.identify("McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised") == (None, None, None)


def test_fingerprints_follow_weights_and_data(tmp_path, quickstart):
    run = quickstart.runs[0]
    parquet = tmp_path / "q.parquet"
    parquet.write_bytes(b"rows")
    cfg = run.config | {"prepared": {"quickstart": {"parquet": str(parquet), "meta": "m"}}}
    fp = training_fingerprint(cfg)
    neutral = json.loads(json.dumps(cfg))
    neutral["training"].update(num_threads=7, log_every=5, gpus=2)
    neutral["model"]["display"] = "MiniLM"
    assert training_fingerprint(neutral) == fp
    changed = json.loads(json.dumps(cfg))
    changed["training"]["learning_rate"] = 1e-3
    assert training_fingerprint(changed) != fp
    # a resumed run would lack the new intermediate checkpoints: retrain instead
    assert training_fingerprint(cfg | {"training": {**cfg["training"], "checkpoint_every": 1}}) != fp
    parquet.write_bytes(b"other rows")
    assert training_fingerprint(cfg) != fp

    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    (ckpt / "adapter_model.safetensors").write_bytes(b"weights")
    model_cfg = quickstart.cfg["models"]["minilm"]
    rev = checkpoint_revision(ckpt, model_cfg)
    assert len(rev) == 12 and rev == checkpoint_revision(ckpt, model_cfg | {"display": "x"})
    assert rev != checkpoint_revision(ckpt, model_cfg | {"max_length": 128})
    (ckpt / "adapter_model.safetensors").write_bytes(b"new weights")
    assert checkpoint_revision(ckpt, model_cfg) != rev
    assert base_revision(model_cfg).startswith("base-") and base_revision(model_cfg) != base_revision(
        model_cfg | {"max_length": 128})


def test_building_a_study_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Study.from_files(PAPER, QUICKSTART)
    assert list(tmp_path.iterdir()) == []
