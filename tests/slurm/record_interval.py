"""A stand-in GPU job: sleeps, then writes when it ran and what SLURM gave it (JSON)."""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
start = time.time()
time.sleep(args.seconds)
record = {"start": start, "end": time.time(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
          "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
with open(args.out + ".tmp", "w") as f:
    json.dump(record, f)
os.replace(args.out + ".tmp", args.out)
