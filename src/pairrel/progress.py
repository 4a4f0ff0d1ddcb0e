"""Training progress for a log file: one readable line every ``every_s`` seconds, and a summary.

A job's log is a file, not a terminal, so tqdm's carriage-return bar would be one long line of
redraws there. :class:`StepLog` prints instead, to ``stream``::

    train model~minilm/…/seed~42: step 12/60  loss 5.1234  0.41 steps/s  eta 1m57s

at the first step, then at most once every ``every_s`` seconds, and at the last step; and on
:meth:`StepLog.close` one summary line (steps, wall time, mean rate, the last loss, where the
checkpoints are). steps/s counts the steps of this process only (a resumed run's earlier
steps are not in its rate): steps done here / seconds since the first step began here.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

PROGRESS_EVERY_S = 15.0  # a line every 15 s: a quickstart step takes ~1 s, an 8B step ~10 s


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class StepLog:
    """Progress lines of one training run (see the module docstring)."""

    def __init__(self, name: str, total: int, start: int = 0, every_s: float = PROGRESS_EVERY_S,
                 stream: TextIO | None = None, clock=time.perf_counter) -> None:
        self.name, self.total, self.start, self.every_s = name, total, start, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.began = clock()
        self.last_print: float | None = None
        self.step = start
        self.loss: float | None = None

    def rate(self) -> float:
        """Steps per second of this process since it began (0 before its first step)."""
        seconds = self.clock() - self.began
        return (self.step - self.start) / seconds if seconds > 0 else 0.0

    def update(self, step: int, loss: float) -> None:
        """Step ``step`` (1-based) finished with ``loss``; print when a line is due."""
        self.step, self.loss = step, loss
        now = self.clock()
        due = (self.last_print is None or step == self.total
               or now - self.last_print >= self.every_s)
        if not due:
            return
        self.last_print = now
        rate = self.rate()
        eta = f"  eta {_duration((self.total - step) / rate)}" if rate > 0 and step < self.total else ""
        print(f"train {self.name}: step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} steps/s{eta}",
              file=self.stream, flush=True)

    def close(self, checkpoints: str = "") -> None:
        """The summary line: steps done here, wall time, mean rate, last loss, checkpoints."""
        seconds = self.clock() - self.began
        done = self.step - self.start
        resumed = f" (resumed at step {self.start})" if self.start else ""
        loss = f", last loss {self.loss:.4f}" if self.loss is not None else ""
        where = f"; checkpoints: {checkpoints}" if checkpoints else ""
        print(f"train {self.name}: finished {self.step}/{self.total} steps{resumed}: {done} steps in "
              f"{_duration(seconds)} ({self.rate():.2f} steps/s){loss}{where}", file=self.stream, flush=True)
