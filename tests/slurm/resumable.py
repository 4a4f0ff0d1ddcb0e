"""A stand-in training job: one step a second, resumable like `pairrel train`.

The state file holds the steps done and one record per attempt (SLURM job id, first step, how
it ended). SIGTERM (SLURM's time limit) saves the state and exits 143; a rerun resumes from the
saved step; at --steps the output is written.
"""

import argparse
import json
import os
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--state", required=True)
parser.add_argument("--steps", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

state = {"step": 0, "attempts": []}
if os.path.exists(args.state):
    with open(args.state) as f:
        state = json.load(f)
attempt = {"slurm_job_id": os.environ.get("SLURM_JOB_ID"), "first_step": state["step"], "ended": None}
state["attempts"].append(attempt)


def save():
    with open(args.state + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(args.state + ".tmp", args.state)


def on_sigterm(signum, frame):
    attempt["ended"] = "SIGTERM"
    save()
    sys.exit(143)


signal.signal(signal.SIGTERM, on_sigterm)
save()
while state["step"] < args.steps:
    time.sleep(1.0)
    state["step"] += 1
    save()
attempt["ended"] = "finished"
save()
with open(args.out, "w") as f:
    f.write(f"{state['step']}\n")
