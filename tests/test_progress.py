"""Training progress lines for a job's log, on a hand-driven clock."""

import io

from pairrel.progress import StepLog, _duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_line_at_the_first_step_then_every_interval_and_at_the_last_and_a_summary():
    clock, out = Clock(), io.StringIO()
    log = StepLog("run-a", total=60, start=0, every_s=15, stream=out, clock=clock)
    for step in range(1, 61):
        clock.now += 2.0  # 0.5 steps/s
        log.update(step, loss=10.0 / step)
    log.close(checkpoints="runs/a/checkpoint-{20,40,60}")
    lines = out.getvalue().splitlines()
    # step 1 at t=2 s; then the first step >= 15 s after the last line: step 9 (t=18), 17, …
    printed = [int(line.split("step ")[1].split("/")[0]) for line in lines[:-1]]
    assert printed == [1, 9, 17, 25, 33, 41, 49, 57, 60]
    # step 9 at 18 s: 9 / 18 = 0.50 steps/s, 51 steps left -> 102 s
    assert lines[1] == "train run-a: step 9/60  loss 1.1111  0.50 steps/s  eta 1m42s"
    assert lines[-2] == "train run-a: step 60/60  loss 0.1667  0.50 steps/s"
    assert lines[-1] == ("train run-a: finished 60/60 steps: 60 steps in 2m00s (0.50 steps/s), "
                         "last loss 0.1667; checkpoints: runs/a/checkpoint-{20,40,60}")


def test_a_resumed_run_rates_only_its_own_steps():
    clock, out = Clock(), io.StringIO()
    log = StepLog("b", total=40, start=30, stream=out, clock=clock)
    for step in range(31, 41):
        clock.now += 4.0
        log.update(step, loss=1.0)
    log.close()
    assert out.getvalue().splitlines()[-1] == ("train b: finished 40/40 steps (resumed at step 30): "
                                               "10 steps in 40s (0.25 steps/s), last loss 1.0000")


def test_duration():
    assert [_duration(s) for s in (0, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]
