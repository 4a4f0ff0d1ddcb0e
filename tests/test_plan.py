"""The cost plan: job counts equal the DAG's, tokens from mteb's statistics, GPU-hours from throughput."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pairrel.config import ConfigError, deep_merge, load_config
from pairrel.jobs import Job, plan_config, study_jobs
from pairrel.plan import (
    DEFAULT_THROUGHPUT,
    estimate_job,
    format_plan,
    load_throughput,
    plan_jobs,
)
from pairrel.cli import main
from tests.conftest import REPO_ROOT, copy_workflow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
LLM2VEC_15 = ["SciFact", "ArguAna", "NFCorpus", "StackOverflowDupQuestions", "SciDocsRR", "BiorxivClusteringS2S",
              "MedrxivClusteringS2S", "TwentyNewsgroupsClustering", "SprintDuplicateQuestions",
              "Banking77Classification", "EmotionClassification", "MassiveIntentClassification", "STS17", "SICK-R",
              "STSBenchmark"]


def _counts(jobs):
    counts = {}
    for job in jobs:
        counts[job.rule] = counts.get(job.rule, 0) + 1
    return counts


def test_quickstart_plan_has_the_dags_job_count(tmp_path):
    copy_workflow(tmp_path)  # a copy: the dry run must not touch the checkout
    proc = subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", "--configfile", "presets/quickstart.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dag = {p[0]: int(p[1]) for p in (line.split() for line in proc.stdout.splitlines()) if len(p) == 2 and p[1].isdigit()}
    jobs = study_jobs(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml"))
    total = dag.pop("total")
    assert _counts(jobs) == dag and len(jobs) == total
    # 4 runs x 3 checkpoints x the local group, the base model, 1 source: by hand
    assert dag["evaluate_checkpoint"] == 12 and dag["evaluate_base"] == 1 and dag["train_run"] == 4


def test_paper_grid_jobs_tiered_and_all_tasks_everywhere():
    cfg = load_config(REPO_ROOT / "config.yaml")
    jobs = study_jobs(cfg)
    counts = _counts(jobs)
    # Open mix: 2 models x 2 losses; TREC-DL 2023: 2 models x 2 losses x 2 labels x 5 folds.
    assert counts["train_run"] == 4 + 40
    # Two jobs per checkpoint (Retrieval; the other types together), plus the held-out fold for
    # TREC-DL: open mix 5 checkpoints x 2, TREC-DL 4 checkpoints x 3.
    assert counts["evaluate_checkpoint"] == 4 * 5 * 2 + 40 * 4 * 3
    assert counts["evaluate_base"] == 2 * 3 and counts["prepare_source"] == 12 and counts["prepare_fold"] == 5
    run = "model~llama3-8b/data~open-mix/loss~bce/labels~binary@1/seed~42"
    intermediate = [j for j in jobs if j.label.startswith(f"{run}/step~200/")]
    assert sorted(t for j in intermediate for t in j.tasks) == sorted(LLM2VEC_15)
    final = [j for j in jobs if j.label.startswith(f"{run}/step~1000/")]
    assert sum(len(j.tasks) for j in final) == 56
    base = [j for j in jobs if j.rule == "evaluate_base" and "llama3-8b" in j.label and not j.label.endswith("heldout")]
    assert sum(len(j.tasks) for j in base) == 56

    everything = study_jobs(deep_merge(cfg, {"evaluation": {"intermediate_tasks": None}}))
    assert _counts(everything)["evaluate_checkpoint"] == 4 * 5 * 2 + 40 * 4 * 3
    assert plan_jobs(jobs).total_gpu_hours < plan_jobs(everything).total_gpu_hours / 3


def _eval_job(tasks, model="meta-llama/Meta-Llama-3-8B-Instruct", max_length=512):
    return Job("evaluate_checkpoint", "x", model_path=model, max_length=max_length, tasks=tuple(tasks),
               benchmark="MTEB(eng, v1)")


def test_tokens_come_from_mtebs_statistics_and_a_shared_corpus_counts_once():
    # mteb's statistics: FEVER test 2,921,107,907 characters (documents 2,920,777,237),
    # ClimateFEVER test 2,921,022,745 (documents 2,920,833,327; the same corpus).
    tokens, hours = estimate_job(_eval_job(["FEVER"]))
    assert tokens == pytest.approx(2_921_107_907 / 4.2)
    assert hours == pytest.approx(2_921_107_907 / 4.2 / 23_800 / 3600)
    both, _ = estimate_job(_eval_job(["FEVER", "ClimateFEVER"]))
    assert both == pytest.approx((2_921_107_907 + 2_921_022_745 - 2_920_833_327) / 4.2)
    _, slow = estimate_job(_eval_job(["FEVER"]), input_order=True)
    assert slow == pytest.approx(hours * 23_800 / 9_000)
    # STS17 in MTEB(eng, v1) is the en-en subset only: 5,346 pairs.
    sts17 = json.loads(Path(__import__("mteb").__file__).with_name("descriptive_stats").joinpath("STS", "STS17.json").read_text())
    en_en = sts17["test"]["hf_subset_descriptive_stats"]["en-en"]["number_of_characters"]
    assert en_en < sts17["test"]["number_of_characters"]
    assert estimate_job(_eval_job(["STS17"]))[0] == pytest.approx(en_en / 4.2)
    # Capped at max_length tokens per text on average: SciFact's 5,183 documents at 8 tokens.
    capped, _ = estimate_job(_eval_job(["SciFact"], max_length=8))
    assert capped < 7_798_555 / 4.2 / 10


def test_training_tokens_and_hours_by_hand():
    cfg = load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml")
    train = [j for j in study_jobs(cfg) if j.rule == "train_run"]
    # 24 steps x 8 queries x (min(32, max_length 40) query tokens + 2 documents x min(128, 40))
    assert {j.train_tokens for j in train} == {24 * 8 * (32 + 2 * 40)}
    tokens, hours = estimate_job(train[0])
    assert hours == pytest.approx(24 * 8 * 112 / 630 / 3600)  # MiniLM's default train tokens/s


def test_throughput_file_overrides_and_errors(tmp_path):
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"device": "test GPU", "models": {"my/model": {"embed_tokens_per_s": 1000, "train_tokens_per_s": 10}}}))
    throughput, source = load_throughput(path)
    assert throughput["models"]["my/model"]["embed_tokens_per_s"] == 1000
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in throughput["models"]  # defaults stay
    job = Job("train_run", "r", model_path="my/model", max_length=512, train_tokens=36_000)
    assert estimate_job(job, throughput)[1] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no throughput for model 'other/model'.*params_b"):
        estimate_job(Job("train_run", "r", model="other", model_path="other/model", train_tokens=1), throughput, source=source)
    path.write_text(json.dumps({"models": {"my/model": {"embed_tokens_per_s": 0, "train_tokens_per_s": 1}}}))
    with pytest.raises(ConfigError, match=r"throughput.json: models.'my/model'.embed_tokens_per_s"):
        load_throughput(path)


def test_plan_json_has_a_numeric_total(capsys):
    assert main(["plan", "--config", str(REPO_ROOT / "config.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["total_gpu_hours"], float) and out["total_gpu_hours"] > 0
    assert out["rules"]["evaluate_checkpoint"]["jobs"] == 520
    assert out["total_gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in out["rules"].values()))


def test_paper_plan_fits_the_budget_and_is_priced_per_table(capsys):
    """config.yaml: at most 50 billion tokens and 500 GPU-hours (the full benchmark on the first
    TREC-DL fold only); 'all' (everything on everything) costs about three times as much."""
    assert main(["plan", "--config", str(REPO_ROOT / "config.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_tokens"] <= 50e9 and out["total_gpu_hours"] <= 500
    tables = out["tables"]
    assert set(tables) == {"main_table", "heldout", "per_step", "training"}
    assert sum(t["gpu_hours"] for t in tables.values()) == pytest.approx(out["total_gpu_hours"])
    # main table: 2 base models x 2 groups, 4 open-mix + 8 first-fold runs x 2 groups
    assert tables["main_table"]["jobs"] == 2 * 2 + (4 + 8) * 2
    # held-out table: 2 base + 40 runs x 4 checkpoints held-out jobs, and 32 other folds' finals x 2
    assert tables["heldout"]["jobs"] == 2 + 40 * 4 + 32 * 2
    assert tables["per_step"]["jobs"] == 4 * 4 * 2 + 40 * 3 * 2  # held-out jobs of earlier steps: heldout
    assert tables["training"]["jobs"] == 44
    cfg = load_config(REPO_ROOT / "config.yaml")
    everything = plan_config(deep_merge(cfg, {"evaluation": {"full_benchmark": "all"}}))
    assert everything.total_gpu_hours > 2.5 * out["total_gpu_hours"]
    assert "main_table + per_task" in format_plan(plan_config(cfg), "H200")
    assert out["total_gpu_hours"] == pytest.approx(432.73, abs=0.01)  # the plan of config.yaml (H200)


def test_a_model_without_measured_throughput_is_scaled_by_parameter_count():
    """8B's 4,160 training tokens/s x 8.03 / 0.803 = 41,600 tokens/s for a 0.803B model: 41,600
    tokens take 1 s; its embedding rate is 23,800 x 10 = 238,000 tokens/s."""
    from pairrel.plan import model_throughput

    job = Job("train_run", "r", model="small", model_path="new/small", params_b=0.803, train_tokens=41_600)
    rates, scaled = model_throughput(DEFAULT_THROUGHPUT, job, "default")
    assert scaled and rates["embed_tokens_per_s"] == pytest.approx(238_000.0)
    assert estimate_job(job)[1] == pytest.approx(1 / 3600)
    plan = plan_jobs([job])
    assert plan.scaled_models == {"new/small"} and "scaled from meta-llama/Meta-Llama-3-8B-Instruct" in format_plan(plan, "d")
    measured = Job("train_run", "r", model_path="meta-llama/Meta-Llama-3-8B-Instruct", params_b=1.0, train_tokens=4160)
    assert model_throughput(DEFAULT_THROUGHPUT, measured, "default")[1] is False
    assert estimate_job(measured)[1] == pytest.approx(1 / 3600)  # measured figures win over params_b
