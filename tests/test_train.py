"""The training loop on the real quickstart path: corpus -> ir_datasets -> Parquet -> LoRA MiniLM.

Checks that a run writes what docs/internals.md promises, that a rerun resumes exactly (same
adapter weights and logged losses as an uninterrupted run), and that SIGTERM checkpoints first.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from pairrel.config import load_config
from pairrel.study import Study, training_fingerprint
from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.train import PREEMPTED_EXIT_CODE, Trainer, checkpoints, linear_schedule
from tests.conftest import REPO_ROOT, sigterm_during_step

RUN = "model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    paths = quickstart.generate(root / "corpus", seed=3, n_topics=6, n_passages=60, n_queries=40)
    register_local_dir("pairrel-quickstart/train", paths["train"])
    study = Study(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml"))
    source = study.cfg["data"]["quickstart"]["sources"]["quickstart"]
    out = root / "prepared" / "quickstart.parquet"
    prepare_source("quickstart", source, out)
    return study, {"quickstart": {"parquet": str(out), "meta": str(out.with_name("quickstart.meta.json"))}}


def run_config(study, run=RUN, steps=4, every=2):
    study, prepared = study
    run_cfg = study.run(run).config | {"prepared": prepared}
    run_cfg["training"].update(steps=steps, batch_size=4, checkpoint_every=every, warmup_steps=1, num_threads=1)
    return run_cfg


def adapter(path):
    return load_file(path / "adapter_model.safetensors")


def test_linear_schedule():
    factor = linear_schedule(warmup_steps=2, total_steps=6)
    assert [factor(s) for s in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_run_writes_its_files_and_resumes_exactly(prepared, tmp_path):
    run_dir = tmp_path / "run"
    assert Trainer(run_config(prepared), run_dir, progress=False).run() == 0
    assert [step for step, _ in checkpoints(run_dir)] == [2, 4]
    assert (run_dir / "done").exists()
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["run_id"] == RUN
    assert state["fingerprint"] == training_fingerprint(run_config(prepared))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert {"loss", "lr", "temperature", "bias", "rows_excluded", "elapsed_s"} <= metrics[0].keys()
    # t and b are learned (they move) and logged every step
    assert metrics[-1]["bias"] != pytest.approx(-4.0, abs=1e-6)
    # step 1 of warm-up 1: the full learning rate
    assert metrics[0]["lr"] == pytest.approx(run_config(prepared)["training"]["learning_rate"])
    final = adapter(run_dir / "checkpoint-4")

    # Interrupted after step 2: the last checkpoint and the end marker are gone.
    import shutil

    shutil.rmtree(run_dir / "checkpoint-4")
    (run_dir / "done").unlink()
    assert Trainer(run_config(prepared), run_dir, progress=False).run() == 0
    resumed = adapter(run_dir / "checkpoint-4")
    assert final.keys() == resumed.keys()
    for key in final:
        torch.testing.assert_close(resumed[key], final[key], rtol=0, atol=0)
    again = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [1, 2, 3, 4]  # no duplicated steps
    assert [m["loss"] for m in again] == [m["loss"] for m in metrics]


def test_sigterm_writes_a_checkpoint_and_exits_143(prepared, tmp_path):
    trainer = Trainer(run_config(prepared, steps=6, every=5), tmp_path / "run", progress=False)
    sigterm_during_step(trainer, 1)

    assert trainer.run() == PREEMPTED_EXIT_CODE
    assert [step for step, _ in checkpoints(tmp_path / "run")] == [2]
    assert not (tmp_path / "run" / "done").exists()


def test_softmax_graded_run_trains(prepared, tmp_path, capsys):
    run = "model~minilm/data~quickstart/loss~softmax/labels~graded-linear/seed~42"
    assert Trainer(run_config(prepared, run=run, steps=2, every=2), tmp_path / "run", progress=True).run() == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["temperature"] == pytest.approx(0.02)
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    # stderr is no terminal here (as in a Snakemake job's log): progress lines, no tqdm bar
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"train {run}: ")]
    assert lines[0].startswith(f"train {run}: step 1/2  loss {metrics[0]['loss']:.4f}  ")
    assert lines[1].startswith(f"train {run}: step 2/2  loss {metrics[1]['loss']:.4f}  ")
    assert lines[2].startswith(f"train {run}: finished 2/2 steps: 2 steps in ")
    assert lines[2].endswith(f"last loss {metrics[1]['loss']:.4f}; checkpoints: {tmp_path / 'run'}/checkpoint-{{2}}")
    assert f"{run}:   0%|" not in err and f"{run}: 100%|" not in err  # no tqdm bar of the run


def test_trainable_encoder_is_in_train_mode(prepared, tmp_path):
    trainer = Trainer(run_config(prepared, steps=1, every=1), tmp_path / "run", progress=False)
    # dropout and gradient checkpointing only act in train mode
    assert trainer.encoder.training and trainer.encoder.model.training


def test_changed_config_retrains_instead_of_resuming(prepared, tmp_path):
    run_dir = tmp_path / "run"
    assert Trainer(run_config(prepared, steps=2, every=1), run_dir, progress=False).run() == 0
    first = adapter(run_dir / "checkpoint-2")

    # A neutral setting changed: the finished run is kept as it is.
    neutral = run_config(prepared, steps=2, every=2)
    neutral["training"]["log_every"] = 2
    assert Trainer(neutral, run_dir, progress=False).run() == 0
    torch.testing.assert_close(adapter(run_dir / "checkpoint-2"), first, rtol=0, atol=0)

    # The learning rate changed: the old checkpoints describe other weights, so start over.
    changed = run_config(prepared, steps=2, every=1)
    changed["training"]["learning_rate"] = 1e-3
    assert Trainer(changed, run_dir, progress=False).run() == 0
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[0]["lr"] == pytest.approx(1e-3)
    retrained = adapter(run_dir / "checkpoint-2")
    assert any(not torch.equal(retrained[k], first[k]) for k in first)
    assert json.loads((run_dir / "checkpoint-2" / "trainer_state.json").read_text())["fingerprint"] == \
        training_fingerprint(changed)
