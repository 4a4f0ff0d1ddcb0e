"""One run's folder over the life of a training job: lock, checkpoints, metrics, ``done``.

The folder (:mod:`pairrel.layout` names its files) holds

- ``run.lock``: host and PID of the trainer writing the folder (:mod:`pairrel.runlock`), while it runs;
- ``metrics.jsonl``: one JSON object per logged step;
- ``checkpoint-{step}/``: built in a temporary folder and renamed, so a checkpoint is whole or
  absent (:mod:`pairrel.trainer_state` writes and checks its files);
- ``done``: written when a run ends with enough applied updates.

A checkpoint records the training fingerprint it was written under
(:func:`pairrel.study.training_fingerprint`); :meth:`RunFolder.start` deletes checkpoints of
another fingerprint (and the metrics and ``done`` that went with them), so the run trains from
scratch. :meth:`RunFolder.latest_checkpoint` sets a corrupt checkpoint aside and falls back to
the previous one; :meth:`RunFolder.truncate_metrics` drops the rows of steps that will be redone.
Only the main process of a multi-process run writes here; the others only read checkpoints.
What is trained, and how, is :mod:`pairrel.train`'s business.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

from pairrel.layout import CHECKPOINT_PREFIX, DONE, METRICS, STATE_JSON, checkpoint_dir, checkpoint_step
from pairrel.trainer_state import CheckpointError, LoadedCheckpoint


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step (temporary folders are ignored)."""
    found = []
    for path in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = checkpoint_step(path)
        if step is not None and (path / STATE_JSON).exists():
            found.append((step, path))
    return sorted(found)


class RunFolder:
    """The files of one run folder as one training job sees them.

    ``fingerprint``: the job's training fingerprint; ``run_id``: recorded in each checkpoint;
    ``main``: whether this process writes (the main process of a multi-process run).
    """

    def __init__(self, path: str | Path, fingerprint: str, run_id: str, main: bool = True) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.run_id = run_id
        self.main = main

    @contextlib.contextmanager
    def locked(self) -> Iterator["RunFolder"]:
        """Hold ``run.lock`` for the block (main process only); RunLockedError when another
        live trainer holds it."""
        from pairrel.runlock import RunLock

        self.path.mkdir(parents=True, exist_ok=True)
        if not self.main:
            yield self
            return
        with RunLock(self.path):
            yield self

    # -- starting -------------------------------------------------------------------------
    def start(self) -> None:
        """Before training: delete checkpoints of another fingerprint (with the metrics and
        ``done`` they belong to) and half-built checkpoint folders of a killed trainer."""
        if not self.main:
            return
        foreign = self._foreign_checkpoints()
        if foreign:
            print(f"{self.path}: {len(foreign)} checkpoint(s) were trained with other settings or data; "
                  "training from scratch", file=sys.stderr)
            for path in foreign:
                shutil.rmtree(path)
            for name in (METRICS, DONE):
                (self.path / name).unlink(missing_ok=True)
        for tmp in self.path.glob(f".{CHECKPOINT_PREFIX}*.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def _foreign_checkpoints(self) -> list[Path]:
        """Checkpoints written under another training fingerprint (other settings or data)."""
        foreign = []
        for _, path in checkpoints(self.path):
            try:
                saved = json.loads((path / STATE_JSON).read_text(encoding="utf-8")).get("fingerprint")
            except (OSError, ValueError, AttributeError):
                continue  # unreadable: not deleted here, set aside by the fallback when loading
            if saved != self.fingerprint:
                foreign.append(path)
        return foreign

    def latest_checkpoint(self) -> LoadedCheckpoint | None:
        """The newest checkpoint whose files all read back, or None.

        A checkpoint that fails its checks (truncated, altered, unparsable) is renamed to
        ``.checkpoint-{step}.corrupt`` (kept for inspection, invisible to :func:`checkpoints`)
        with a warning naming it, and the previous one is tried. An old pickle-format checkpoint
        stops the run instead (LegacyCheckpointError).
        """
        from pairrel.trainer_state import LegacyCheckpointError, read_checkpoint

        for _, path in reversed(checkpoints(self.path)):
            try:
                return read_checkpoint(path)
            except LegacyCheckpointError:
                raise
            except CheckpointError as err:
                aside = path.with_name(f".{path.name}.corrupt")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(path, aside)
                print(f"warning: {err}; moved to {aside}; falling back to the previous checkpoint", file=sys.stderr)
        return None

    # -- metrics --------------------------------------------------------------------------
    def truncate_metrics(self, last_step: int) -> None:
        """Keep only the logged steps up to the checkpoint resumed from (0: none).

        Steps after it will be redone, so their rows go; a last line cut short by a crash (no
        final newline, not parseable) is dropped; any other unreadable line is an error naming
        the file and line. The file is rewritten atomically.
        """
        from pairrel.io import FileFormatError, atomic_write_text, read_jsonl

        metrics = self.path / METRICS
        if not self.main or not metrics.exists():
            return
        records = read_jsonl(metrics, drop_partial_last_line=True)
        for number, record in enumerate(records, 1):
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise FileFormatError(f"{metrics}: record {number} has no integer 'step'")
        kept = [r for r in records if r["step"] <= last_step]
        atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))

    @contextlib.contextmanager
    def metrics_log(self) -> Iterator[Callable[[dict], None]]:
        """``append(record)`` for the block: one JSON line per call, flushed at once (other
        processes than the main one append nowhere)."""
        with open(self.path / METRICS if self.main else os.devnull, "a") as log:
            def append(record: dict) -> None:
                log.write(json.dumps(record) + "\n")
                log.flush()

            yield append

    # -- checkpoints and the end ----------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        """The folder of the checkpoint of ``step``."""
        return checkpoint_dir(self.path, step)

    def write_checkpoint(self, step: int, elapsed_s: float, save_adapter: Callable[[Path], None], state: dict,
                         skipped_nonfinite_steps: list[int]) -> Path:
        """``checkpoint-{step}/``: the adapter (``save_adapter(folder)``) and the trainer
        ``state`` (:func:`pairrel.trainer_state.write_state`), built in a temporary folder and
        renamed (whole or absent). Returns its path (the main process alone writes it)."""
        from pairrel.io import atomic_dir
        from pairrel.trainer_state import write_state

        final = self.checkpoint(step)
        if not self.main:
            return final
        with atomic_dir(final) as tmp:
            save_adapter(tmp)
            write_state(tmp, step, elapsed_s, self.run_id, state, fingerprint=self.fingerprint,
                        skipped_nonfinite_steps=list(skipped_nonfinite_steps))
        return final

    def mark_done(self, steps: int, elapsed_s: float, skipped_nonfinite_steps: list[int]) -> None:
        """Write ``done``: the run's steps, its time and the steps skipped as non-finite."""
        from pairrel.io import atomic_write_text

        if not self.main:
            return
        done = {"steps": steps, "elapsed_s": round(elapsed_s, 3)}
        if skipped_nonfinite_steps:
            done["skipped_nonfinite_steps"] = list(skipped_nonfinite_steps)
        atomic_write_text(self.path / DONE, json.dumps(done) + "\n")
