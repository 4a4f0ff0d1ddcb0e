"""Multi-process training through the launcher: 2 CPU processes (torchrun, gloo) train the same
weights as 1 process, running the real ``pairrel.cli train`` on the quickstart corpus.

The model is a tiny random Llama (bidirectional, as for decoder encoders) with LoRA dropout 0:
with dropout the two layouts would draw different masks (each rank embeds other texts), so
only a dropout-free model can be compared weight for weight. GradCache is on (2 texts per
chunk), so the chunked, gathered, weighted path is the one checked.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from pairrel.config import load_config
from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.launch import launch_argv, launch_command, n_processes
from pairrel.study import Study
from tests.conftest import REPO_ROOT, save_tiny_llama, train_through_launcher

RUN = "model~tiny-llama/data~quickstart/loss~bce/labels~binary@2/seed~42"


def test_launch_argv():
    args = ["train", "--run-config", "runs/model~a/b c/run.yaml"]
    assert launch_argv(1, args) == ["pairrel", *args]
    assert launch_argv(2, args) == ["torchrun", "--standalone", "--nproc-per-node=2", "-m", "--", "pairrel.cli.worker", *args]
    assert launch_argv(1, args, python="/py") == ["/py", "-m", "pairrel.cli", *args]
    assert launch_argv(8, args, python="/py")[:5] == ["/py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=8"]
    assert launch_command(2, args).endswith("--run-config 'runs/model~a/b c/run.yaml'")
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        launch_argv(0, args)


def test_n_processes():
    assert n_processes({"gpus": 1}) == 1 and n_processes({"gpus": 4}) == 4
    with pytest.raises(ValueError, match="training.gpus' is missing"):
        n_processes({})
    for bad in (0, 1.5, "2", True):
        with pytest.raises(ValueError, match="'training.gpus' must be an integer >= 1"):
            n_processes({"gpus": bad})


@pytest.fixture(scope="module")
def run_cfg(tmp_path_factory):
    """The resolved config of a 3-step BCE run of the tiny Llama on the quickstart corpus."""
    root = tmp_path_factory.mktemp("launch")
    paths = quickstart.generate(root / "corpus", seed=3, n_topics=6, n_passages=60, n_queries=40)
    register_local_dir("pairrel-quickstart/train", paths["train"])
    model_dir = save_tiny_llama(root / "tiny-llama")
    overrides = {
        "models": {"tiny-llama": {"name_or_path": str(model_dir), "kind": "decoder", "max_length": 64, "dtype": "float32",
                                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "up_proj"]}}},
        "grid": {"models": ["tiny-llama"]},
        "training": {"steps": 3, "batch_size": 6, "gradcache_tokens": None, "gradcache_chunk": 2, "checkpoint_every": 3, "warmup_steps": 1,
                     "learning_rate": 1e-2, "num_threads": 1},
    }
    study = Study(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml", overrides=overrides))
    prepared = root / "prepared" / "quickstart.parquet"
    prepare_source("quickstart", study.cfg["data"]["quickstart"]["sources"]["quickstart"], prepared)
    files = {"quickstart": {"parquet": str(prepared), "meta": str(prepared.with_name("quickstart.meta.json"))}}
    return root, study.run(RUN).config | {"prepared": files}


def train(run_cfg, processes):
    run_dir = train_through_launcher(*run_cfg, processes)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return load_file(run_dir / "checkpoint-3" / "adapter_model.safetensors"), metrics


def test_two_processes_train_the_weights_of_one(run_cfg):
    one, one_metrics = train(run_cfg, 1)
    two, two_metrics = train(run_cfg, 2)
    # one writer (rank 0): two independent single-process trainings would both append lines
    assert [m["step"] for m in two_metrics] == [1, 2, 3]
    assert one.keys() == two.keys() and len(one) == 2 * 2 * 3  # A, B of 3 modules in 2 layers
    moved = max((one[k] - two[k]).abs().max().item() for k in one)
    assert any(one[k].abs().max() > 0 for k in one if "lora_B" in k)  # B starts at 0: it trained
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4)
    for a, b in zip(one_metrics, two_metrics):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["bias"] == pytest.approx(a["bias"], rel=1e-5)  # BCE's b, averaged by hand over ranks
    assert moved < 2e-5
