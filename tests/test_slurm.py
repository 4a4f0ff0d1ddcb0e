"""The SLURM profile on a real one-node cluster (tests/slurm/start_cluster.sh starts one: 2 CPUs
here, 4 fake GPUs).

- A tiny workflow (tests/slurm/Snakefile) under the shipped profiles: independent GPU jobs run
  side by side, and a job that exceeds its 1-minute time limit is resubmitted and resumes.
- The quickstart (tiny) DAG: every job but the local report goes through sbatch, training jobs
  are queued together, and the tables come out as with a local run.

Only the sizes are shrunk to fit the node (1 CPU, little memory a job); everything else is the
shipped profile.
"""

import itertools
import json
import re
import shutil
import subprocess

import pytest

from tests.test_workflow import QUICKSTART, snakemake
from tests.conftest import REPO_ROOT, copy_workflow

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed"))


needs_cluster = pytest.mark.skipif(not cluster_is_up(), reason="no local SLURM cluster (tests/slurm/start_cluster.sh)")


def max_in_flight(log: str, rule: str) -> int:
    """Most jobs of ``rule`` submitted to SLURM and not yet finished at one point of the log.

    Snakemake prints each job's block (``rule NAME:`` ... ``jobid: N``) first and the
    submissions (``Job N has been submitted with SLURM jobid ...``) after; a job ends with
    ``Finished jobid: N (Rule: NAME)``.
    """
    rule_of, current_rule, in_flight, most = {}, None, set(), 0
    for line in log.splitlines():
        if m := re.match(r"(?:local)?rule (\S+):", line):
            current_rule = m.group(1)
        elif m := re.match(r"\s+jobid: (\d+)", line):
            rule_of[m.group(1)] = current_rule
        elif (m := re.match(r"Job (\d+) has been submitted with SLURM jobid", line)) and rule_of.get(m.group(1)) == rule:
            in_flight.add(m.group(1))
            most = max(most, len(in_flight))
        elif m := re.match(r"Finished jobid: (\d+) \(Rule: (\S+)\)", line):
            in_flight.discard(m.group(1))
    return most


def test_max_in_flight_reads_the_snakemake_log():
    log = ("rule a:\n    jobid: 1\nrule a:\n    jobid: 2\nrule b:\n    jobid: 3\n"
           "Job 1 has been submitted with SLURM jobid 7 (log: x)\nJob 2 has been submitted with SLURM jobid 8\n"
           "Job 3 has been submitted with SLURM jobid 9\nFinished jobid: 1 (Rule: a)\nFinished jobid: 2 (Rule: a)\n"
           "rule a:\n    jobid: 4\nJob 4 has been submitted with SLURM jobid 10\n")
    assert max_in_flight(log, "a") == 2
    assert max_in_flight(log, "b") == 1
    assert max_in_flight(log, "c") == 0


@needs_cluster
def test_gpu_jobs_overlap_and_a_timed_out_job_resumes(tmp_path):
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    for name in ("Snakefile", "record_interval.py", "resumable.py"):
        shutil.copy(REPO_ROOT / "tests" / "slurm" / name, tmp_path / name)
    proc = snakemake(tmp_path, "--profile", "profiles/slurm",
                     "--default-resources", "slurm_partition=gpu", "cpus_per_task=1", "mem_mb=500", "runtime=10")
    log = proc.stdout + proc.stderr

    # Independent GPU jobs were in the queue together and ran at the same time.
    assert max_in_flight(log, "gpu_job") >= 2
    runs = [json.loads((tmp_path / "gpu" / f"{i}.json").read_text()) for i in range(4)]
    assert len({r["slurm_job_id"] for r in runs}) == 4
    overlap = max(min(a["end"], b["end"]) - max(a["start"], b["start"]) for a, b in itertools.combinations(runs, 2))
    assert overlap > 0, runs

    # The first attempt hit its 1-minute limit (SIGTERM from SLURM), the retry (10 minutes,
    # a new SLURM job) resumed from the saved step and finished.
    state = json.loads((tmp_path / "resumable.state.json").read_text())
    first, *_, last = state["attempts"]
    assert first["ended"] == "SIGTERM" and first["first_step"] == 0
    assert last["ended"] == "finished" and last["first_step"] > 0
    assert first["slurm_job_id"] != last["slurm_job_id"]
    assert "Trying to restart job" in log
    assert (tmp_path / "resumable.done").read_text() == "110\n"


@needs_cluster
def test_quickstart_runs_through_the_slurm_profile(tmp_path):
    copy_workflow(tmp_path)
    shutil.copy(REPO_ROOT / "tests" / "data" / "quickstart-tiny.yaml", tmp_path / "tiny.yaml")
    small = ["cpus_per_task=1", "mem_mb=2000"]
    proc = snakemake(
        tmp_path, "--profile", "profiles/slurm", *QUICKSTART, "--jobs", "4",
        "--default-resources", "slurm_partition=gpu", "runtime=30", *small,
        "--set-resources", *(f"{rule}:{r}" for rule in ("train_run", "evaluate_checkpoint", "evaluate_base", "prepare_source") for r in small),
    )
    log = proc.stdout + proc.stderr
    # corpus, prepare, 4 trainings, 4 checkpoint evaluations, base evaluation
    assert log.count("has been submitted with SLURM jobid") == 11
    assert max_in_flight(log, "train_run") >= 2  # the four runs do not wait for one another
    table = (tmp_path / "paper_figures" / "quickstart" / "main_table.csv").read_text().splitlines()
    assert len(table) == 1 + 5
