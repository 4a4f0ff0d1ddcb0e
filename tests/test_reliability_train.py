"""Trainer faults: divergence, crafted checkpoints, two writers, kills, corrupt files.

Each test is a few steps of LoRA MiniLM on a tiny generated corpus (the path of test_train.py),
and checks that nothing wrong is ever left for a later stage to trust: no ``done`` after a
non-finite step, no checkpoint with NaN weights, no pickle ever unpickled, one writer per run,
and metrics without duplicated steps.
"""

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
import torch
from safetensors.torch import load as load_bytes

from pairrel.config import load_config
from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.study import Study
from pairrel.runlock import LOCK_NAME, RunLock, RunLockedError, process_alive
from pairrel.train import NonFiniteError, Trainer, checkpoints
from pairrel.trainer_state import CheckpointError, LegacyCheckpointError, read_checkpoint
from tests.conftest import REPO_ROOT, sigterm_during_step

RUN = "model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    paths = quickstart.generate(root / "corpus", seed=5, n_topics=4, n_passages=40, n_queries=24)
    dataset_id = f"pairrel-test/reliability-{uuid.uuid4().hex[:8]}"
    register_local_dir(dataset_id, paths["train"])
    study = Study(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml"))
    out = root / "prepared" / "quickstart.parquet"
    prepare_source("quickstart", {"instruction": "", "dataset": dataset_id}, out)
    return study, {"quickstart": {"parquet": str(out), "meta": str(out.with_name("quickstart.meta.json"))}}


def run_config(cfg, steps=3, every=1, **training):
    study, prepared = cfg
    run_cfg = study.run(RUN).config | {"prepared": prepared}
    run_cfg["training"].update(steps=steps, batch_size=4, checkpoint_every=every, warmup_steps=1, num_threads=1, **training)
    return run_cfg


def load(path):
    """Tensors of a safetensors file, read into memory (a memory map would break when the test
    truncates the file)."""
    return load_bytes(path.read_bytes())


def metric_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def all_finite(checkpoint):
    tensors = {**load(checkpoint / "adapter_model.safetensors"), **load(checkpoint / "trainer_state.safetensors")}
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


# ----------------------------------------------------------------------------- divergence

@pytest.mark.parametrize("setting", [
    {"training": {"learning_rate": 1e6}},
    {"loss": {"temperature_init": 1e39}},  # t = exp(log 1e39) overflows float32: logits inf
])
def test_diverging_run_stops_naming_the_step_without_done_or_nan_checkpoint(prepared, tmp_path, setting):
    cfg = prepared
    run_cfg = run_config(cfg)
    for section, values in setting.items():
        run_cfg[section].update(values)
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"step \d+ .*non-finite") as err:  # the CLI exits 2 on ValueError
        Trainer(run_cfg, run_dir, progress=False).run()
    assert isinstance(err.value, NonFiniteError)
    assert not (run_dir / "done").exists()
    bad_step = int(str(err.value).split("step ")[1].split()[0])
    # every checkpoint on disk is of an earlier, finite step; none of the failing step
    assert all(step < bad_step and all_finite(path) for step, path in checkpoints(run_dir))
    assert all(step < bad_step for step in metric_steps(run_dir))
    assert not (run_dir / LOCK_NAME).exists()  # released on the error


def test_skip_nonfinite_batches_gives_up_on_a_streak(prepared, tmp_path):
    cfg = prepared
    run_cfg = run_config(cfg, steps=14, every=20)
    run_cfg["loss"]["temperature_init"] = 1e39  # every batch is non-finite: skipping cannot help
    run_cfg["training"]["skip_nonfinite_batches"] = True
    with pytest.raises(NonFiniteError, match="11 batches in a row"):
        Trainer(run_cfg, tmp_path / "run", progress=False).run()
    assert not (tmp_path / "run" / "done").exists()
    assert checkpoints(tmp_path / "run") == []


# ----------------------------------------------------------------------------- checkpoints

class _Payload:
    """Unpickling this creates a file: the test's witness of code execution."""

    def __init__(self, witness):
        self.witness = str(witness)

    def __reduce__(self):
        return (open, (self.witness, "w"))


def test_crafted_pickle_in_trainer_state_is_never_executed(prepared, tmp_path):
    cfg = prepared
    run_dir = tmp_path / "run"
    assert Trainer(run_config(cfg, steps=2, every=2), run_dir, progress=False).run() == 0
    checkpoint = run_dir / "checkpoint-2"
    (run_dir / "done").unlink()
    # The old layout: a pickled trainer_state.pt and a JSON without "format".
    witness = tmp_path / "pwned"
    (checkpoint / "trainer_state.pt").write_bytes(pickle.dumps({"optimizer": _Payload(witness)}))
    # the fingerprint of this very run: the checkpoint looks like its own, only the format is old
    fingerprint = json.loads((checkpoint / "trainer_state.json").read_text())["fingerprint"]
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 2, "elapsed_s": 1.0, "run_id": RUN, "fingerprint": fingerprint}))
    (checkpoint / "trainer_state.safetensors").unlink()
    with pytest.raises(LegacyCheckpointError, match=r"checkpoint-2.*old pickle format"):
        Trainer(run_config(cfg, steps=2, every=2), run_dir, progress=False).run()
    assert not witness.exists()
    assert checkpoint.is_dir()  # refused, not silently set aside


def test_checkpoint_holds_no_pickle_and_reads_back(prepared, tmp_path):
    cfg = prepared
    run_dir = tmp_path / "run"
    assert Trainer(run_config(cfg, steps=1, every=1), run_dir, progress=False).run() == 0
    checkpoint = run_dir / "checkpoint-1"
    assert sorted(p.name for p in checkpoint.iterdir() if p.suffix != ".md") == [
        "adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "trainer_state.safetensors"]
    loaded = read_checkpoint(checkpoint)
    assert loaded.step == 1
    state = loaded.state
    assert isinstance(state["rng"]["python"], tuple) and len(state["rng"]["python"][1]) == 625
    assert state["rng"]["numpy"][0] == "MT19937" and state["rng"]["numpy"][1].dtype.name == "uint32"
    assert isinstance(state["optimizer"]["param_groups"][0]["betas"], tuple)
    assert set(state["loss"]) == {"log_temperature", "bias"}
    # the mode an ordinary open() gives under the umask, not mkstemp's 0600
    umask = os.umask(0o022)
    os.umask(umask)
    assert (checkpoint / "trainer_state.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (run_dir / "done").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("damage", ["truncate_adapter", "truncate_state_json", "flip_state_tensor"])
def test_corrupt_latest_checkpoint_falls_back_to_previous(prepared, tmp_path, capfd, damage):
    cfg = prepared
    run_dir = tmp_path / "run"
    assert Trainer(run_config(cfg, steps=3, every=1), run_dir, progress=False).run() == 0
    final = load(run_dir / "checkpoint-3" / "adapter_model.safetensors")
    (run_dir / "done").unlink()
    latest = run_dir / "checkpoint-3"
    target = {"truncate_adapter": "adapter_model.safetensors", "truncate_state_json": "trainer_state.json",
              "flip_state_tensor": "trainer_state.safetensors"}[damage]
    data = (latest / target).read_bytes()
    if damage == "flip_state_tensor":
        data = data[:-1] + bytes([data[-1] ^ 0xFF])
    else:
        data = data[: len(data) // 2]
    (latest / target).write_bytes(data)
    with pytest.raises(CheckpointError, match=str(latest / target)):
        read_checkpoint(latest)

    assert Trainer(run_config(cfg, steps=3, every=1), run_dir, progress=False).run() == 0
    err = capfd.readouterr().err
    assert f"{latest / target}" in err and "falling back" in err
    assert f"resuming from {run_dir / 'checkpoint-2'}" in err
    redone = load(run_dir / "checkpoint-3" / "adapter_model.safetensors")
    for key in final:  # step 3 redone from step 2 is bitwise the same
        torch.testing.assert_close(redone[key], final[key], rtol=0, atol=0)
    assert metric_steps(run_dir) == [1, 2, 3]
    assert (run_dir / ".checkpoint-3.corrupt").is_dir()


# ----------------------------------------------------------------------------- one writer

def _other_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _write_lock(run_dir, pid, host=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "started": "then"}))


def test_second_trainer_on_a_locked_run_is_refused(prepared, tmp_path):
    cfg = prepared
    run_dir = tmp_path / "run"
    holder = _other_process()
    try:
        _write_lock(run_dir, holder.pid)
        with pytest.raises(RunLockedError, match=f"PID {holder.pid} on host {socket.gethostname()}"):
            Trainer(run_config(cfg, steps=1), run_dir, progress=False).run()
        assert not (run_dir / "metrics.jsonl").exists() and checkpoints(run_dir) == []
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # left to its owner
    finally:
        holder.kill()
        holder.wait()


def test_lock_on_another_host_is_refused(tmp_path):
    _write_lock(tmp_path, os.getpid(), host="elsewhere.invalid")
    with pytest.raises(RunLockedError, match="on host elsewhere.invalid"):
        RunLock(tmp_path).acquire()


def test_stale_lock_of_a_dead_process_is_taken_over(prepared, tmp_path, capfd):
    cfg = prepared
    run_dir = tmp_path / "run"
    dead = _other_process()
    dead.kill()
    dead.wait()
    assert not process_alive(dead.pid)
    _write_lock(run_dir, dead.pid)
    assert Trainer(run_config(cfg, steps=1), run_dir, progress=False).run() == 0
    assert f"stale lock of PID {dead.pid}" in capfd.readouterr().err
    assert not (run_dir / LOCK_NAME).exists()
    assert (run_dir / "done").exists()


def test_reused_pid_with_another_start_time_is_stale(tmp_path):
    _write_lock(tmp_path, os.getpid())
    lock = json.loads((tmp_path / LOCK_NAME).read_text())
    lock["pid_start"] = 1  # this process did not start at boot
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid_start"] != 1


# ----------------------------------------------------------------------------- kills, metrics

def test_kill_before_first_checkpoint_leaves_no_duplicate_metric_steps(prepared, tmp_path):
    cfg = prepared
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # What a kill -9 at step 2 of 3 leaves: rows of steps 1-2, the last cut mid-write, no checkpoint.
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n" + '{"step": 2, "lo')
    shutil.copy(REPO_ROOT / "config.yaml", run_dir / "unrelated.yaml")  # other files are left alone
    assert Trainer(run_config(cfg, steps=3, every=3), run_dir, progress=False).run() == 0
    assert metric_steps(run_dir) == [1, 2, 3]


def test_resume_truncates_metrics_to_the_checkpoint(prepared, tmp_path, capfd):
    cfg = prepared
    run_dir = tmp_path / "run"
    assert Trainer(run_config(cfg, steps=4, every=2), run_dir, progress=False).run() == 0
    # killed during step 4: its checkpoint and the end marker are absent, its row half-written
    shutil.rmtree(run_dir / "checkpoint-4")
    (run_dir / "done").unlink()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(rows[:3]) + "\n" + rows[3][:10])
    assert Trainer(run_config(cfg, steps=4, every=2), run_dir, progress=False).run() == 0
    assert metric_steps(run_dir) == [1, 2, 3, 4]
    assert f"resuming from {run_dir / 'checkpoint-2'} (step 2 of 4)" in capfd.readouterr().err


def test_corrupt_metrics_line_names_file_and_line(prepared, tmp_path):
    cfg = prepared
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=f"{run_dir / 'metrics.jsonl'}: line 2"):
        Trainer(run_config(cfg, steps=1), run_dir, progress=False).run()


def test_sigterm_on_a_checkpoint_step_writes_it_once(prepared, tmp_path, monkeypatch):
    cfg = prepared
    trainer = Trainer(run_config(cfg, steps=4, every=2), tmp_path / "run", progress=False)
    sigterm_during_step(trainer, 1)

    saved = []
    save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda step, elapsed: saved.append(step) or save(step, elapsed))
    assert trainer.run() == 143
    assert saved == [2]


# ----------------------------------------------------------------------------- trusted results (issue 23)

def test_run_that_applied_no_update_fails_and_is_not_done(prepared, tmp_path):
    # softmax at temperature 1e-45: logits overflow on every batch, every step is skipped
    run_cfg = run_config(prepared, steps=4, every=2, skip_nonfinite_batches=True)
    run_cfg["loss"] = {"type": "softmax", "temperature": 1.0e-45}
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"only 0 of 4 steps applied an update \(4 skipped as non-finite: "
                                             r"steps 1, 2, 3, 4\), fewer than training\.min_applied_fraction = 0\.5"):
        Trainer(run_cfg, run_dir, progress=False).run()
    assert not (run_dir / "done").exists()
    # a rerun resumes from checkpoint-4 and remembers the skipped steps: still not done
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["skipped_nonfinite_steps"] == [1, 2, 3, 4]
    with pytest.raises(NonFiniteError, match="only 0 of 4 steps"):
        Trainer(run_cfg, run_dir, progress=False).run()
    assert not (run_dir / "done").exists()


@pytest.fixture(scope="module")
def trained_checkpoint(prepared, tmp_path_factory):
    """A real checkpoint (2 steps) with the checksums its trainer records."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    Trainer(run_config(prepared, steps=2, every=2), run_dir, progress=False).run()
    return run_dir / "checkpoint-2"


@pytest.mark.parametrize("how", ["flip_signs", "truncate"])
def test_altered_or_truncated_checkpoint_is_never_evaluated_or_exported(prepared, trained_checkpoint, tmp_path, how):
    from safetensors.torch import save_file

    from pairrel.evaluate.run import evaluate_study_model
    from pairrel.export import ExportError, export_checkpoint

    study = Study(prepared[0].cfg, root=tmp_path)
    run = study.run(RUN)
    target = run.checkpoint(run.final_step)
    shutil.copytree(trained_checkpoint, target)
    adapter = target / "adapter_model.safetensors"
    if how == "flip_signs":  # still a valid safetensors file: only the checksum tells
        save_file({k: -v for k, v in load(adapter).items()}, str(adapter))
    else:
        adapter.write_bytes(adapter.read_bytes()[:1000])
    marker = tmp_path / "local.done"
    with pytest.raises(CheckpointError, match=rf"{adapter}: content differs from the checksum in .*trainer_state\.json"):
        evaluate_study_model(study, "local", run=run, step=run.final_step, marker=marker)
    assert not marker.exists() and not study.mteb_cache.exists()  # nothing scored
    with pytest.raises(ExportError, match=rf"{adapter}: content differs from the checksum"):
        export_checkpoint(run.config["model"], target, tmp_path / "export", merge=False)
    assert not (tmp_path / "export").exists()
