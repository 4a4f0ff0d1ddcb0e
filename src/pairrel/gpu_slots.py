"""A GPU slot pool for one machine: each local GPU job gets its own device(s).

Snakemake's ``--resources gpu=N`` bounds how many GPUs the running jobs request in total, but it
does not say *which* device a job gets: without help every job lands on ``cuda:0``. A job started
through ``pairrel gpu-run --gpus K -- CMD ...`` takes K free slots from a pool of lock files,
sets ``CUDA_VISIBLE_DEVICES`` to their device ids and then *becomes* CMD (``exec``), so CMD
receives Snakemake's signals directly and holds the slots for exactly as long as it lives.

Why lock files and not a counter: slot ``i`` is the file ``LOCK_DIR/gpu-<id>.lock`` held with an
exclusive ``flock``. The kernel drops a flock when the last process holding the open file ends,
however it ends (exit, crash, SIGKILL, OOM kill), so a crashed job's slots come back by
themselves; a counter would leak them. The file also records the holder's PID and command (for
``pairrel gpu-run --status``), which is informational only. The lock descriptors survive the
``exec`` (they are made inheritable); children that CMD starts with ``close_fds`` (Python's
default, e.g. torchrun's workers) do not inherit them, so the slots are held by CMD itself.

Where the device ids come from (``device_ids``): the environment variable ``PAIRREL_GPUS`` —
either a count ``N`` (ids ``0..N-1``) or a comma-separated list of ids (``"0,1,5"``; a single id
is written with a comma, ``"5,"``; tests use fake ids) — else the ``GPU <i>:`` lines of ``nvidia-smi -L``, else none. With no GPU at all the
command runs unchanged on the CPU (``CUDA_VISIBLE_DEVICES`` untouched), so the same rule works
in the CPU quickstart.

The pool lives in ``PAIRREL_GPU_LOCK_DIR`` (default ``<tmp>/pairrel-gpu-slots-<uid>``): one
folder per machine and user, on a local file system (flock on NFS is not reliable).

SLURM jobs do not use the pool: SLURM grants the devices (and its gres plugin sets
``CUDA_VISIBLE_DEVICES``), so inside a SLURM job (``SLURM_JOB_ID`` set) ``gpu-run`` runs CMD
unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV_GPUS = "PAIRREL_GPUS"
ENV_LOCK_DIR = "PAIRREL_GPU_LOCK_DIR"


class SlotError(RuntimeError):
    """The pool cannot serve a request (more GPUs asked than the machine has, bad PAIRREL_GPUS)."""


def device_ids(environ=None) -> list[str]:
    """The machine's GPU ids: from ``PAIRREL_GPUS`` (count or id list), else ``nvidia-smi -L``."""
    environ = os.environ if environ is None else environ
    spec = environ.get(ENV_GPUS, "").strip()
    if spec:
        if spec.isdigit():
            return [str(i) for i in range(int(spec))]
        ids = [part.strip() for part in spec.split(",") if part.strip()]
        if len(set(ids)) != len(ids):
            raise SlotError(f"{ENV_GPUS}={spec!r}: expected a count or comma-separated distinct device ids")
        return ids
    if not shutil.which("nvidia-smi"):
        return []
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)"
    return [line.split(":", 1)[0].split()[1] for line in proc.stdout.splitlines() if line.startswith("GPU ")]


def lock_dir(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    default = Path(tempfile.gettempdir()) / f"pairrel-gpu-slots-{os.getuid()}"
    return Path(environ.get(ENV_LOCK_DIR) or default)


@dataclass
class Slots:
    """Held slots: their device ids and the open, flocked lock files (closing them frees the slots)."""

    ids: list[str]
    fds: list[int]

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _record_holder(fd: int, command: list[str]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {' '.join(command)}\n".encode(), 0)


def try_acquire(n: int, ids: list[str], directory: Path, command: list[str] = ()) -> Slots | None:
    """Take ``n`` free slots at once (lowest ids first), or none: all or nothing, never waits."""
    if n > len(ids):
        raise SlotError(f"{n} GPU(s) requested, the machine has {len(ids)} ({', '.join(ids) or 'none'})")
    directory.mkdir(parents=True, exist_ok=True)
    held = Slots([], [])
    for device in ids:
        fd = _try_lock(directory / f"gpu-{device}.lock")
        if fd is None:
            continue
        held.ids.append(device)
        held.fds.append(fd)
        if len(held.ids) == n:
            for fd in held.fds:
                _record_holder(fd, list(command))
            return held
    held.release()  # not enough free: give back what we took so two waiters cannot deadlock
    return None


def acquire(n: int, ids: list[str], directory: Path, command: list[str] = (), poll_seconds: float = 2.0,
            timeout: float | None = None) -> Slots:
    """Wait until ``n`` slots are free together and take them; SlotError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        held = try_acquire(n, ids, directory, command)
        if held is not None:
            return held
        if deadline is not None and time.monotonic() >= deadline:
            raise SlotError(f"no {n} free GPU slot(s) in {directory} after {timeout:g} s")
        time.sleep(poll_seconds)


def holders(ids: list[str], directory: Path) -> dict[str, str | None]:
    """For each device id: the recorded holder (``"PID command"``) when the slot is taken, else None."""
    status = {}
    for device in ids:
        path = directory / f"gpu-{device}.lock"
        if not path.exists():
            status[device] = None
            continue
        fd = _try_lock(path)
        if fd is not None:  # free (a crashed holder's record may remain; the lock is what counts)
            os.close(fd)
            status[device] = None
        else:
            status[device] = path.read_text().strip() or "?"
    return status


def run(n: int, command: list[str], environ=None, poll_seconds: float = 2.0, timeout: float | None = None):
    """Take ``n`` slots, set CUDA_VISIBLE_DEVICES and exec ``command``: does not return, the
    process becomes ``command`` (its exit status is the command's own); SlotError when the slots
    cannot be had or the command does not exist."""
    environ = dict(os.environ if environ is None else environ)
    if n < 0:
        raise SlotError(f"--gpus must be >= 0, got {n}")
    if not command:
        raise SlotError("no command given (pairrel gpu-run --gpus N -- CMD ...)")
    ids = device_ids(environ)
    if n > 0 and not environ.get("SLURM_JOB_ID"):
        if ids:
            held = acquire(n, ids, lock_dir(environ), command, poll_seconds, timeout)
            for fd in held.fds:
                os.set_inheritable(fd, True)
            environ["CUDA_VISIBLE_DEVICES"] = ",".join(held.ids)
            print(f"pairrel gpu-run: GPU slot(s) {environ['CUDA_VISIBLE_DEVICES']} for pid {os.getpid()}",
                  file=sys.stderr, flush=True)
        else:
            print("pairrel gpu-run: no GPU found (nvidia-smi -L, PAIRREL_GPUS); running on the CPU",
                  file=sys.stderr, flush=True)
    try:
        os.execvpe(command[0], command, environ)
    except FileNotFoundError:
        raise SlotError(f"command not found: {command[0]}") from None
