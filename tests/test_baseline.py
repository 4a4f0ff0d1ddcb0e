"""The baseline check's path (published checkpoint: base, MNTP merged, supervised LoRA; the study's
protocol; a table against published scores; a loud failure beyond tolerance) on a tiny random
Llama against a score computed here without it."""

import json

import pytest
import torch
import yaml
from scipy.stats import spearmanr

from pairrel import cli
from pairrel.config import load_config
from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.evaluate.baseline import compare, load_reference
from pairrel.evaluate.local_tasks import judged_pairs
from pairrel.evaluate.protocol import load_protocol, sides
from pairrel.evaluate.run import benchmark_tasks
from tests.conftest import REPO_ROOT, save_tiny_llama
from tests.test_export import perturbed_adapter

DATASET = "pairrel-test-baseline/test"
INSTRUCTION = "Given a question about a hobby or subject, retrieve passages that answer it"
TASK = "PairrelQuickstartSTS"
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny 'published' decoder: random base, an MNTP adapter, a supervised adapter; the study
    config naming it; and its STS score computed directly (embeddings, cosine, Spearman)."""
    root = tmp_path_factory.mktemp("baseline")
    paths = quickstart.generate(root / "corpus", seed=5, n_topics=4, n_passages=40, n_queries=24)
    register_local_dir(DATASET, paths["test"])
    base = str(save_tiny_llama(root / "tiny-llama"))
    mntp = perturbed_adapter({"name_or_path": base, "kind": "decoder", "lora": LORA}, root / "mntp", seed=1)
    model = {"name_or_path": base, "kind": "decoder", "mntp_adapter": str(mntp), "max_length": 48,
             "template": "user: {text} :end", "lora": LORA}
    supervised = perturbed_adapter(model, root / "supervised", seed=2)
    cfg = load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml", overrides={
        "models": {"tiny": model}, "grid": {"models": ["tiny"]},
        "evaluation": {"local_dataset": DATASET, "local_instruction": INSTRUCTION}})
    cfg["local_datasets"] = {DATASET: str(paths["test"])}  # the preset's own corpus is not generated here
    cfg["quickstart_corpus"] = None
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))

    # The score without the baseline path: base + MNTP merged + adapter, the llm2vec protocol's
    # instruction and format on each side, cosine, Spearman against the grades.
    encoder = build_encoder(EncoderConfig.from_dict(cfg["models"]["tiny"]), adapter=supervised)
    protocol = load_protocol("llm2vec")
    encoder.config.instruction_format = protocol.format
    (task,) = benchmark_tasks("pairrel-quickstart", [TASK], DATASET, INSTRUCTION)
    query_side, doc_side = (protocol.instruction(task.metadata, side) for side in sides(task))
    assert query_side == INSTRUCTION and doc_side == ""  # the local STS task: instruction on sentence 1
    queries, docs, grades, _ = judged_pairs(DATASET)
    q = torch.nn.functional.normalize(encoder.embed(queries, query_side), dim=-1)
    d = torch.nn.functional.normalize(encoder.embed(docs, doc_side), dim=-1)
    expected = float(100 * spearmanr((q * d).sum(-1).numpy(), grades).statistic)
    return root, config, str(supervised), expected


def _reference(root, adapter, score, tolerance=0.01):
    path = root / f"reference-{score:.4f}.yaml"
    path.write_text(yaml.safe_dump({
        "citation": "computed by the test", "benchmark": "pairrel-quickstart", "tolerance": tolerance,
        "tasks": [TASK], "models": {"tiny": {"adapter": adapter, "scores": {TASK: score}}}}))
    return path


def test_baseline_check_agrees_with_a_direct_computation(published, tmp_path, monkeypatch, capsys):
    root, config, adapter, expected = published
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "check" / "tiny.md"
    assert cli.main(["baseline-check", "--config", str(config), "--model", "tiny",
                     "--reference", str(_reference(root, adapter, expected)), "--out", str(out)]) == 0
    table = out.read_text()
    assert f"| {TASK} | {expected:.2f} | {expected:.2f} | +0.00 | yes |" in table
    assert "All tasks within tolerance." in table and table in capsys.readouterr().out
    assert out.with_suffix(".csv").read_text().splitlines()[0] == "task,pairrel,published,diff,ok"


def test_baseline_check_fails_loudly_beyond_the_tolerance(published, tmp_path, monkeypatch, capsys):
    root, config, adapter, expected = published
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "check" / "tiny.md"
    off = _reference(root, adapter, expected + 2.0, tolerance=1.0)
    assert cli.main(["baseline-check", "--config", str(config), "--model", "tiny",
                     "--reference", str(off), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"1 of 1 tasks beyond 1 points of the published scores: {TASK} {expected:.2f} vs {expected + 2:.2f}" in err
    assert not out.exists()  # no target for Snakemake: the job fails
    assert "| -2.00 | **NO** |" in out.with_suffix(".failed.md").read_text()


def test_compare_and_reference_errors(tmp_path):
    rows = compare({"A": 0.80, "B": 0.50}, {"A": 80.5, "B": 48.0, "C": 10.0}, ["A", "B", "C"], 1.0)
    assert [(r["task"], round(r["diff"], 6), r["ok"]) for r in rows[:2]] == [("A", -0.5, True), ("B", 2.0, False)]
    assert rows[2]["ok"] is False  # a task without a score never passes
    bad = tmp_path / "ref.yaml"
    bad.write_text(json.dumps({"citation": "x", "benchmark": "b", "tolerance": 1, "tasks": ["A", "B"],
                               "models": {"m": {"adapter": "a", "scores": {"A": 1.0}}}}))
    with pytest.raises(ValueError, match=r"ref.yaml: models.m.scores lacks B"):
        load_reference(bad)
    shipped = load_reference(REPO_ROOT / "results" / "reference" / "per-task" / "llm2vec-supervised.yaml")
    assert set(shipped["models"]) == {"llama3-8b", "sheared-llama"} and len(shipped["tasks"]) == 9


def test_snakemake_baseline_check_target_plans_one_job_per_published_model(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    for name in ["Snakefile", "config.yaml", "presets", "workflow", "profiles", "envs", "results/reference"]:
        src, dst = REPO_ROOT / name, tmp_path / name  # a copy: the dry run must not touch the checkout
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "baseline_check", "--quiet", "rules"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {p[0]: int(p[1]) for p in (line.split() for line in proc.stdout.splitlines()) if len(p) == 2 and p[1].isdigit()}
    assert counts["baseline_check_model"] == 2 and counts["baseline_check"] == 1  # llama3-8b, sheared-llama
