"""The Snakemake DAG for real: the quickstart end to end, rerun, report-only, planning, lint.

The workflow runs in a copy of the repository's workflow files, so the test leaves the
checkout's results/ and paper_figures/ alone.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, copy_workflow, save_tiny_llama

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
QUICKSTART = ["--configfile", "presets/quickstart.yaml", "tiny.yaml"]


def snakemake(cwd, *args, check=True):
    proc = subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    copy_workflow(root)
    shutil.copy(REPO_ROOT / "tests" / "data" / "quickstart-tiny.yaml", root / "tiny.yaml")
    snakemake(root, "--cores", "2", *QUICKSTART)
    return root


def tree(root):
    """Every file under root except Snakemake's own bookkeeping, with its mtime."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and ".snakemake" not in p.parts}


def jobs_run(output: str) -> list[str]:
    return [line.split()[-1].rstrip(":") for line in output.splitlines() if line.startswith(("rule ", "localrule "))]


def test_quickstart_writes_tables_and_figures(study):
    figures = study / "paper_figures" / "quickstart"
    for name in ["main_table.md", "main_table.tex", "main_table.csv", "per_task.csv", "type_scores.png",
                 "type_scores.pdf", "training_curves.png"]:
        assert (figures / name).stat().st_size > 0, name
    rows = list(csv.DictReader((figures / "main_table.csv").open()))
    trained = [r for r in rows if r.get("loss")]
    assert sorted((r["loss"], r["labels"]) for r in trained) == [
        ("bce", "binary@2"), ("bce", "graded-linear"), ("softmax", "binary@2"), ("softmax", "graded-linear")]
    assert len(rows) == 5  # the four variants and the base model
    for row in rows:
        assert row["n_tasks"] == "3"
        assert 0.0 < float(row["Average"]) <= 100.0
        scores = [float(row[t]) for t in ("PairClassification", "Retrieval", "STS")]
        assert float(row["Average"]) == pytest.approx(sum(scores) / 3, abs=0.011)
    runs = study / "results" / "quickstart" / "runs"
    assert len(list(runs.glob("**/metrics.jsonl"))) == 4
    assert len(list(runs.glob("**/checkpoint-4/adapter_model.safetensors"))) == 4


def test_rerun_has_nothing_to_do(study):
    proc = snakemake(study, "-n", *QUICKSTART)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_each_checkpoint_is_its_own_model_in_mtebs_loader(study):
    import mteb

    loaded = mteb.ResultCache(str(study / "results" / "quickstart" / "mteb")).load_results(include_remote=False)
    names = sorted(m.model_name for m in loaded.model_results)
    # 4 runs x 1 checkpoint (step 4) and the base model
    assert len(names) == 5 and "pairrel/minilm" in names
    assert all(n.endswith(".step-4") for n in names if n != "pairrel/minilm")


def test_changed_learning_rate_retrains_and_the_table_shows_new_scores(study, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(study, changed)  # Snakemake's metadata (.snakemake/) included, as in place
    before = {r["row"]: r for r in csv.DictReader(
        (changed / "paper_figures" / "quickstart" / "main_table.csv").open())}
    (changed / "lr.yaml").write_text("training:\n  learning_rate: 0.005\n")
    proc = snakemake(changed, "--cores", "2", *QUICKSTART, "lr.yaml")
    ran = jobs_run(proc.stdout + proc.stderr)
    assert ran.count("train_run") == 4 and ran.count("evaluate_checkpoint") == 4
    assert "evaluate_base" not in ran and "prepare_source" not in ran  # untouched by the change
    after = {r["row"]: r for r in csv.DictReader(
        (changed / "paper_figures" / "quickstart" / "main_table.csv").open())}
    assert before.keys() == after.keys()
    for key, row in after.items():
        if row.get("loss"):
            assert row["Average"] != before[key]["Average"], key
        else:
            assert row["Average"] == before[key]["Average"]  # the base model
    notes = (changed / "paper_figures" / "quickstart" / "notes.md").read_text()
    assert notes.count("stale results left out") == 4  # the old weights' scores are never shown
    again = snakemake(changed, "-n", *QUICKSTART, "lr.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("args", [["-n"], ["--lint"], ["-n", "--configfile", "presets/quickstart.yaml"]],
                         ids=["dry-run", "lint", "dry-run-quickstart"])
def test_planning_writes_nothing(tmp_path, args):
    copy_workflow(tmp_path)
    before = tree(tmp_path)
    snakemake(tmp_path, *args, check=False)
    assert tree(tmp_path) == before


def test_report_target_rebuilds_from_cached_results_only(study, tmp_path):
    # A fresh clone with only results/ copied in: no checkpoints, no corpus, no prepared data.
    clone = tmp_path / "clone"
    clone.mkdir()
    copy_workflow(clone, study, extra=("tiny.yaml",))
    shutil.copytree(study / "results", clone / "results")
    for path in list((clone / "results" / "quickstart").glob("runs/**/checkpoint-*")) + [
        clone / "results" / "quickstart" / "corpus", clone / "results" / "quickstart" / "data"]:
        shutil.rmtree(path)
    proc = snakemake(clone, "--cores", "1", "report", *QUICKSTART)
    assert jobs_run(proc.stdout + proc.stderr) == ["report"]
    rebuilt = (clone / "paper_figures" / "quickstart" / "main_table.csv").read_text()
    assert rebuilt == (study / "paper_figures" / "quickstart" / "main_table.csv").read_text()


def test_paper_grid_plans_offline():
    proc = snakemake(REPO_ROOT, "-n", "--quiet", "rules")
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # 12 runs x 5 checkpoints x 7 MTEB task types, plus the held-out group for the 8 TREC-DL
    # runs; 2 base models x 8 groups; 13 data sources
    # Open mix: 2 models x 2 losses; TREC-DL 2023: 2 models x 2 losses x 2 labels x 5 folds.
    assert counts["train_run"] == 4 + 40
    # Two jobs per checkpoint (Retrieval; every other type in one job, one model load), plus the
    # held-out fold for TREC-DL: the open mix 5 checkpoints x 2, TREC-DL 4 checkpoints x 3.
    assert counts["evaluate_checkpoint"] == 4 * 5 * 2 + 40 * 4 * 3
    assert counts["evaluate_base"] == 2 * 3
    assert counts["prepare_source"] == 12 and counts["prepare_fold"] == 5
    assert counts["report"] == 1


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["training"].__setitem__("learning_rate", -0.001), "training.learning_rate"),
        (lambda c: c["losses"].__setitem__("focal", {"type": "focal"}), "losses.focal.type"),
        (lambda c: c["training"].pop("steps"), "training.steps"),
        (lambda c: c.pop("evaluation"), "evaluation"),
        (lambda c: c["grid"].__setitem__("labels", ["binary@2", "graded-cubic"]), "grid.labels.1"),
    ],
    ids=["negative-lr", "unknown-loss", "missing-steps", "missing-evaluation", "unknown-labels"],
)
def test_bad_config_fails_before_any_job(tmp_path, mutate, key):
    import yaml

    copy_workflow(tmp_path)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    mutate(cfg)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert f"'{key}'" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()  # nothing ran, nothing was written


def test_lint_is_clean():
    for extra in ([], ["--configfile", "presets/quickstart.yaml"]):
        proc = snakemake(REPO_ROOT, "--lint", *extra)
        assert "Congratulations" in proc.stdout + proc.stderr


def test_ablation_preset_plans_offline():
    proc = snakemake(REPO_ROOT, "-n", "--quiet", "rules", "--configfile", "presets/ablation.yaml")
    counts = {p[0]: int(p[1]) for p in (l.split() for l in proc.stdout.splitlines()) if len(p) == 2 and p[1].isdigit()}
    # 9 loss variants x the last checkpoint x 2 jobs (Retrieval; the other types); the base model x 2
    assert counts["train_run"] == 9
    assert counts["evaluate_checkpoint"] == 9 * 2
    assert counts["evaluate_base"] == 2


def test_two_processes_in_the_dag_train_the_weights_of_one(study, tmp_path):
    """training.gpus: 2 runs the same DAG job under torchrun (2 CPU processes, gloo) and gives the
    single-process weights. A tiny random Llama (no dropout: MiniLM's dropout masks depend on which
    process encodes which text, so only a dropout-free model can match exactly)."""
    import torch
    import yaml
    from safetensors.torch import load_file

    model_dir = save_tiny_llama(tmp_path / "tiny-llama")
    preset = {"models": {"tiny-llama": {"name_or_path": str(model_dir), "kind": "decoder", "max_length": 64,
                                        "dtype": "float32", "params_b": 0.001,
                                        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}},
              "grid": {"models": ["tiny-llama"]}, "training": {"learning_rate": 0.01}}
    run = "model~tiny-llama/data~quickstart/loss~bce/labels~graded-linear/seed~42"
    weights = {}
    for gpus in (1, 2):
        folder = tmp_path / f"gpus-{gpus}"
        shutil.copytree(study, folder, ignore=shutil.ignore_patterns(".snakemake", "runs", "eval", "mteb"))
        (folder / "tiny-llama.yaml").write_text(yaml.safe_dump({**preset, "training": {**preset["training"], "gpus": gpus}}))
        proc = snakemake(folder, "--cores", "2", *QUICKSTART, "tiny-llama.yaml", "--", f"results/quickstart/runs/{run}/done")
        assert ("torchrun --standalone --nproc-per-node=2" in proc.stdout + proc.stderr) == (gpus == 2)
        weights[gpus] = load_file(folder / "results" / "quickstart" / "runs" / run / "checkpoint-4" / "adapter_model.safetensors")
    assert weights[1].keys() == weights[2].keys()
    assert any(w.abs().max() > 0 for k, w in weights[1].items() if "lora_B" in k)  # it trained
    for key in weights[1]:  # the same global batch: the same weights up to summation order
        torch.testing.assert_close(weights[2][key], weights[1][key], rtol=1e-4, atol=2e-5)


# ----------------------------------------------------------------------------- issue 23

def test_user_task_added_to_a_finished_study_is_evaluated(study, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(study, changed)
    (changed / "mine").mkdir()
    shutil.copy(REPO_ROOT / "tests" / "data" / "sts_pairs.csv", changed / "mine" / "sts.csv")
    (changed / "missing.yaml").write_text("evaluation:\n  local_tasks:\n    - {name: MySTS, type: STS, path: mine/nope.csv}\n")
    proc = snakemake(changed, "-n", *QUICKSTART, "missing.yaml", check=False)
    assert proc.returncode != 0 and "'evaluation.local_tasks.0.path'" in proc.stdout + proc.stderr
    (changed / "tasks.yaml").write_text("evaluation:\n  local_tasks:\n    - {name: MySTS, type: STS, path: mine/sts.csv}\n")
    proc = snakemake(changed, "--cores", "2", *QUICKSTART, "tasks.yaml")
    ran = jobs_run(proc.stdout + proc.stderr)
    assert ran.count("evaluate_checkpoint") == 4 and ran.count("evaluate_base") == 1
    assert "train_run" not in ran
    markers = list((changed / "results" / "quickstart" / "eval").rglob("local.done"))
    assert len(markers) == 5 and all("MySTS" in json.loads(m.read_text())["tasks"] for m in markers)
    assert len(list((changed / "results" / "quickstart" / "mteb").rglob("MySTS.json"))) == 5
    again = snakemake(changed, "-n", *QUICKSTART, "tasks.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_truncated_result_under_its_marker_is_refused_naming_both(study, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(study, changed)
    result = sorted((changed / "results" / "quickstart" / "mteb").rglob("PairrelQuickstartSTS.json"))[0]
    result.write_text(result.read_text()[:40])
    proc = snakemake(changed, "-n", *QUICKSTART, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Nothing to be done" not in output
    marker = next(m for m in (changed / "results" / "quickstart" / "eval").rglob("local.done")
                  if str(result.relative_to(changed)) in m.read_text())
    assert f"{result.relative_to(changed)}: differs from what {marker.relative_to(changed)} recorded" in output
    result.unlink()
    marker.unlink()  # as the message says: the job runs again and computes the result anew
    proc = snakemake(changed, "-n", *QUICKSTART)
    assert sum(j.startswith("evaluate_") for j in jobs_run(proc.stdout + proc.stderr)) == 1


@pytest.mark.parametrize("preset, message", [
    ("training:\n  steps: 4\n  steps: 400\n", r"key 'steps' appears twice \(first on line 2\)"),
    ("training:\n  learning_rate: 1.0e6\n", r"'training.learning_rate': 1000000.0 is greater than the maximum of 1.0"),
], ids=["duplicate-key", "exponent-float"])
def test_configfile_presets_are_read_as_pairrel_config_reads_them(tmp_path, preset, message):
    import re

    copy_workflow(tmp_path)
    (tmp_path / "bad.yaml").write_text(preset)
    proc = snakemake(tmp_path, "-n", "--configfile", "presets/quickstart.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0 and re.search(message, proc.stdout + proc.stderr)
    assert not (tmp_path / "results").exists()
