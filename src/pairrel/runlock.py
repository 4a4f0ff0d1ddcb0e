"""One trainer per run folder: a lock file holding the host and PID of its holder.

``run.lock`` is created whole with ``os.link`` from a temporary file (atomic, and fails when the
name exists, also on NFS), so it is either absent or complete. It holds
``{"host", "pid", "pid_start", "started"}``; ``pid_start`` is the process start time from
``/proc/<pid>/stat`` (field 22, clock ticks since boot), which tells a reused PID apart.

A lock whose holder is on this host and no longer runs (no such PID, a zombie, or a PID with
another start time) is *stale*: it is taken over with a message. A lock held by a running
process, or by any process on another host (whose liveness cannot be checked from here), is
refused with an error naming the PID, host and lock file. The lock is removed when the trainer
ends, however it ends short of SIGKILL; after SIGKILL the next trainer finds it stale.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = "run.lock"


class RunLockedError(ValueError):
    """Another live trainer holds this run folder."""


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 overall; fields[0] is field 3


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def process_alive(pid: int, pid_start: int | None = None) -> bool:
    """Whether ``pid`` runs on this host (and, when given, started at ``pid_start``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if _proc_state(pid) == "Z":  # exited, not yet reaped by its parent
        return False
    if pid_start is not None:
        start = _proc_start(pid)
        if start is not None and start != pid_start:
            return False  # the PID was reused by another process
    return True


class RunLock:
    """``with RunLock(run_dir):`` — hold ``run_dir/run.lock`` for the block."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.content = json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "pid_start": _proc_start(os.getpid()),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }) + "\n"
        self.held = False

    def _holder(self) -> tuple[dict | None, str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None, ""
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
                raise ValueError
        except ValueError:
            raise RunLockedError(
                f"{self.path}: lock file is not a pairrel lock ({text[:80]!r}); if no trainer runs in "
                f"{self.path.parent}, delete it"
            ) from None
        return holder, text

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        tmp.write_text(self.content)
        try:
            for _ in range(5):  # retries only when a stale lock vanished under us
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    pass
                holder, text = self._holder()
                if holder is None:
                    continue
                if holder.get("host") == socket.gethostname() and not process_alive(holder["pid"], holder.get("pid_start")):
                    # Remove the stale lock only if it is still the one we judged stale.
                    if self.path.read_text() == text:
                        self.path.unlink(missing_ok=True)
                        print(f"{self.path}: taking over a stale lock of PID {holder['pid']} "
                              f"(no longer running; started {holder.get('started', '?')})", file=sys.stderr)
                    continue
                raise RunLockedError(
                    f"{self.path.parent}: another trainer is writing this run (PID {holder['pid']} on host "
                    f"{holder.get('host', '?')}, since {holder.get('started', '?')}). Wait for it to end or stop "
                    f"it; if that process no longer exists, delete {self.path}"
                )
            raise RunLockedError(f"{self.path}: could not take the lock (it keeps changing)")
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                if self.path.read_text() == self.content:
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
