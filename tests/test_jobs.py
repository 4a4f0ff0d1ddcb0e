"""pairrel.jobs: one catalogue of a study's jobs, the lookups the rules use, the caption schedules."""

import pytest

from pairrel.jobs import JobCatalogue
from pairrel.study import Study
from tests.conftest import REPO_ROOT

PAPER = REPO_ROOT / "config.yaml"
QUICKSTART = REPO_ROOT / "presets" / "quickstart.yaml"


@pytest.fixture(scope="module")
def paper():
    return JobCatalogue(Study.from_files(PAPER))


def test_a_rule_looks_up_the_listed_job_by_its_wildcards(paper):
    listed = paper.jobs()
    for job in listed:
        if job.wildcards:
            assert paper.get(job.rule, **job.wildcards) is job
    # Snakemake hands over strings: the step and fold are read back as numbers
    run = "model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~1/seed~42"
    job = paper.get("evaluate_checkpoint", run=run, step="75", group="heldout")
    assert job.outputs == (f"results/paper/eval/{run}/step~75/heldout.done",)
    assert job.tasks == ("PairrelHeldOut-trec-dl-2023-fold1",) and job.args["tasks"] == ""
    assert job.inputs["data"] == ["results/paper/data/trec-dl-2023/trec-dl-2023.fold~1.folds.json"]
    assert job.table == "heldout" and job.kind == "evaluate" and job.model_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    with pytest.raises(KeyError, match="no job of rule 'train'"):
        paper.get("train", run=run)


def test_outputs_of_the_list_are_the_targets(paper):
    jobs = paper.jobs()
    assert [j.rule for j in jobs[:2]] == ["study_config", "task_set"] and [j.rule for j in jobs[-2:]] == ["report", "all"]
    markers = paper.eval_markers()
    assert len(markers) == len(set(markers)) == 520 + 6
    assert markers == [j.outputs[0] for j in jobs if j.rule in ("evaluate_checkpoint", "evaluate_base")]
    train = paper.get("train_run", run="model~llama3-8b/data~open-mix/loss~bce/labels~binary@1/seed~42")
    assert train.training["steps"] == 1000 and train.args["threads"] == 1
    assert train.train_tokens == 1000 * 512 * (32 + 2 * 128)


def test_each_mix_has_its_own_schedule(paper):
    schedules = paper.get("report").args["schedules"]
    assert [(s["data"], s["steps"], s["batch_size"], s["checkpoints"]) for s in schedules] == [
        ("open-mix", 1000, 512, [200, 400, 600, 800, 1000]),
        ("trec-dl-2023", 100, 16, [25, 50, 75, 100]),
    ]
    quickstart = JobCatalogue(Study.from_files(PAPER, QUICKSTART)).get("report").args["schedules"]
    assert [(s["data"], s["steps"]) for s in quickstart] == [("quickstart", 24)]


def test_slurm_run_time_is_the_plans_price(paper):
    """runtime = load + 1.5 x the plan's GPU-hours (pairrel.plan.estimate_job), + the SIGTERM
    lead for training; a task without mteb statistics counts 0.1 GPU-hours."""
    from pairrel.plan import estimate_job

    run = "model~llama3-8b/data~open-mix/loss~bce/labels~binary@1/seed~42"
    train = paper.get("train_run", run=run)
    assert paper.gpu_hours(train) == estimate_job(train)[1] == pytest.approx(147_456_000 / 4160 / 3600)
    assert paper.resources(train)["runtime"] == 910  # ceil(13.03 + 90 * 9.846) + 10
    assert paper.resources(train, attempt=2)["runtime"] == 1809  # ceil(2 * 899.17) + 10
    full = paper.get("evaluate_checkpoint", run=run, step=1000, group="Retrieval")
    assert paper.resources(full)["runtime"] == 2880  # 32 GPU-hours: the 48 h cap
    fold = "model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~1/seed~42"
    heldout = paper.get("evaluate_checkpoint", run=fold, step=100, group="heldout")
    assert estimate_job(heldout)[1] == 0 and paper.gpu_hours(heldout) == pytest.approx(0.1)
    assert paper.resources(heldout)["runtime"] == 23  # ceil(13.03 + 9)
    baseline = paper.get("baseline_check_model", model="llama3-8b")
    # the reference file's nine small tasks (SciFact, NFCorpus, STS ...), priced like any evaluation
    assert baseline.kind == "evaluate" and len(baseline.tasks) == 9 and 0 < paper.gpu_hours(baseline) < 1


@pytest.mark.parametrize("caption", ["training_curves", "ablation_step"])
def test_captions_state_every_mixs_schedule(paper, caption):
    """The report's captions render with the report job's params (as `snakemake --report` does:
    jinja2 over snakemake.config and snakemake.params): TREC-DL's 100 steps beside the open mix's 1000."""
    from types import SimpleNamespace

    import jinja2

    template = (REPO_ROOT / "workflow" / "report" / f"{caption}.rst").read_text()
    snakemake = SimpleNamespace(config=paper.cfg, params=SimpleNamespace(**paper.get("report").args))
    text = " ".join(jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template)
                    .render(snakemake=snakemake).split())
    assert ("open-mix: 1000 steps of 512 queries, learning rate 0.0002, checkpoints at steps "
            "200, 400, 600, 800, 1000; trec-dl-2023: 100 steps of 16 queries") in text
    assert "checkpoints at steps 25, 50, 75, 100" in text
