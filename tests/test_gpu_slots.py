"""The local GPU slot pool, on the CPU with fake device ids (PAIRREL_GPUS).

Jobs are real processes started through ``python -m pairrel.cli gpu-run`` (the ``pairrel gpu-run``
command); each child reports the CUDA_VISIBLE_DEVICES it was given.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pairrel import gpu_slots

SRC = str(Path(gpu_slots.__file__).resolve().parents[1])

# Child: write its devices to OUT/<name>, then wait until `expect` files are there (proves the
# jobs held their slots at the same time), or until the file STOP exists.
CHILD = r"""
import os, sys, time
from pathlib import Path
out, name, expect = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(out / (name + ".tmp")).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
os.rename(out / (name + ".tmp"), out / name)
deadline = time.time() + 60
while len([p for p in out.iterdir() if not p.name.endswith(".tmp") and p.name != "STOP"]) < expect \
        and not (out / "STOP").exists() and time.time() < deadline:
    time.sleep(0.05)
"""


def start(tmp_path, gpus, out, name, expect, devices="0,1,2,3", extra_env=None):
    env = {**os.environ, "PYTHONPATH": SRC, gpu_slots.ENV_GPUS: devices,
           gpu_slots.ENV_LOCK_DIR: str(tmp_path / "locks"), **(extra_env or {})}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pairrel.cli", "gpu-run", "--gpus", str(gpus), "--poll", "0.05", "--",
         sys.executable, "-c", CHILD, str(out), name, str(expect)],
        env=env, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, seconds=30):
    deadline = time.time() + seconds
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_four_jobs_at_once_get_four_distinct_slots(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = [start(tmp_path, 1, out, f"job{i}", expect=4, devices="7,8,9,10") for i in range(4)]
    for job in jobs:
        assert job.wait(timeout=60) == 0, job.stderr.read()
    given = sorted((out / f"job{i}").read_text() for i in range(4))
    assert given == ["10", "7", "8", "9"]


def test_multi_gpu_jobs_take_disjoint_slot_sets(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = [start(tmp_path, 2, out, f"job{i}", expect=2) for i in range(2)]
    for job in jobs:
        assert job.wait(timeout=60) == 0, job.stderr.read()
    given = [set((out / f"job{i}").read_text().split(",")) for i in range(2)]
    # which two each gets depends on who locks first; they never share one
    assert [len(g) for g in given] == [2, 2]
    assert given[0] | given[1] == {"0", "1", "2", "3"}


def test_a_killed_jobs_slot_is_reclaimed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = start(tmp_path, 1, out, "first", expect=99, devices="5,")
    assert wait_for(out / "first") == "5"
    second = start(tmp_path, 1, out, "second", expect=2, devices="5,")
    time.sleep(1.0)
    assert not (out / "second").exists(), "the only slot was given out twice"
    assert gpu_slots.holders(["5"], tmp_path / "locks")["5"].startswith(f"{first.pid} ")
    first.send_signal(signal.SIGKILL)  # a crash: no clean-up code runs
    first.wait(timeout=10)
    assert wait_for(out / "second") == "5"
    assert second.wait(timeout=60) == 0, second.stderr.read()
    assert gpu_slots.holders(["5"], tmp_path / "locks") == {"5": None}


def test_all_or_nothing_and_release(tmp_path):
    ids = ["0", "1", "2"]
    locks = tmp_path / "locks"
    a = gpu_slots.try_acquire(2, ids, locks)
    assert a.ids == ["0", "1"]
    assert gpu_slots.try_acquire(2, ids, locks) is None  # only "2" is free
    b = gpu_slots.try_acquire(1, ids, locks)  # the failed try gave "2" back
    assert b.ids == ["2"]
    a.release()
    assert gpu_slots.try_acquire(2, ids, locks).ids == ["0", "1"]
    with pytest.raises(gpu_slots.SlotError, match="4 GPU.*has 3"):
        gpu_slots.try_acquire(4, ids, locks)
    with pytest.raises(gpu_slots.SlotError, match="after 0.1 s"):
        gpu_slots.acquire(1, ids, locks, poll_seconds=0.05, timeout=0.1)


def test_device_ids_from_the_environment():
    assert gpu_slots.device_ids({"PAIRREL_GPUS": "3"}) == ["0", "1", "2"]
    assert gpu_slots.device_ids({"PAIRREL_GPUS": "4, 6"}) == ["4", "6"]
    assert gpu_slots.device_ids({"PAIRREL_GPUS": "5,"}) == ["5"]
    with pytest.raises(gpu_slots.SlotError, match="PAIRREL_GPUS"):
        gpu_slots.device_ids({"PAIRREL_GPUS": "1,1"})


def test_no_gpu_runs_the_command_unchanged(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", gpu_slots.ENV_LOCK_DIR: str(tmp_path)}
    env.pop(gpu_slots.ENV_GPUS, None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "pairrel.cli", "gpu-run", "--gpus", "1", "--", sys.executable, "-c",
                           "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>'))"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "<unset>"
    assert "running on the CPU" in proc.stderr


def test_under_slurm_the_granted_devices_are_kept(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, gpu_slots.ENV_GPUS: "2", gpu_slots.ENV_LOCK_DIR: str(tmp_path),
           "SLURM_JOB_ID": "17", "CUDA_VISIBLE_DEVICES": "3"}
    proc = subprocess.run([sys.executable, "-m", "pairrel.cli", "gpu-run", "--gpus", "1", "--", sys.executable, "-c",
                           "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "3"
    env.pop("CUDA_VISIBLE_DEVICES")
    proc = subprocess.run([sys.executable, "-m", "pairrel.cli", "gpu-run", "--gpus", "1", "--", sys.executable, "-c",
                           "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>'))"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "<unset>"
    assert not list(tmp_path.glob("gpu-*.lock"))
