"""Every job the SLURM profile would submit fits its signal and its partition.

A dry run (`snakemake -n --profile profiles/slurm`, no cluster needed) of the paper's DAG
(config.yaml) and of the quickstart prints each job's resources as sbatch would get them. Two
rules of the profile:

- a job's time limit leaves at least MARGIN_S of work before SLURM's SIGTERM, which comes
  ``--signal=TERM@<lead>`` seconds before the limit (training) or at it (everything else);
  a training job told to stop as it starts would burn its retries;
- jobs that use a GPU go to the profile's GPU partition and every other one elsewhere.
"""

import re

import pytest
import yaml

from tests.conftest import copy_workflow
from tests.test_workflow import snakemake

pytestmark = pytest.mark.slow
MARGIN_S = 5 * 60


def planned_jobs(log: str) -> list[dict]:
    """``{"rule", "resources": {key: value}}`` of each job block of a dry run's output."""
    jobs = []
    for line in log.splitlines():
        if m := re.match(r"(?:local)?rule (\S+):$", line):
            jobs.append({"rule": m.group(1), "resources": {}})
        elif jobs and (m := re.match(r"\s+resources: (.*)$", line)):
            jobs[-1]["resources"] = dict(item.split("=", 1) for item in m.group(1).split(", "))
    return jobs


def sigterm_lead_s(resources: dict) -> int:
    m = re.search(r"--signal=(?:B:)?TERM@(\d+)", resources.get("slurm_extra", ""))
    return int(m.group(1)) if m else 0


def test_planned_jobs_reads_rule_and_resources():
    log = ("rule train_run:\n    jobid: 3\n    resources: tmpdir=/tmp, runtime=16, gpu=1, slurm_extra=--signal=TERM@600\n"
           "localrule report:\n    jobid: 0\n    resources: tmpdir=/tmp, slurm_partition=cpu\n")
    jobs = planned_jobs(log)
    assert [j["rule"] for j in jobs] == ["train_run", "report"]
    assert sigterm_lead_s(jobs[0]["resources"]) == 600 and sigterm_lead_s(jobs[1]["resources"]) == 0
    assert jobs[1]["resources"]["slurm_partition"] == "cpu"


@pytest.mark.parametrize("configfile", [[], ["--configfile", "presets/quickstart.yaml"]], ids=["paper", "quickstart"])
def test_every_job_fits_the_sigterm_lead_and_its_partition(tmp_path, configfile):
    copy_workflow(tmp_path)
    proc = snakemake(tmp_path, "-n", "--profile", "profiles/slurm", *configfile)
    jobs = planned_jobs(proc.stdout + proc.stderr)
    profile = yaml.safe_load((tmp_path / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_partition = profile["set-resources"]["train_run"]["slurm_partition"]
    assert gpu_partition != profile["default-resources"]["slurm_partition"]

    rules = {j["rule"] for j in jobs}
    assert {"train_run", "evaluate_checkpoint", "evaluate_base", "report"} <= rules
    for job in jobs:
        res, rule = job["resources"], job["rule"]
        if "runtime" in res:
            assert int(res["runtime"]) * 60 - sigterm_lead_s(res) >= MARGIN_S, (rule, res)
        uses_gpu = int(res.get("gpu", 0)) > 0
        assert (res.get("slurm_partition") == gpu_partition) == uses_gpu, (rule, res)
    # training checkpoints on SIGTERM: every training job asks for it ahead of the limit
    assert all(sigterm_lead_s(j["resources"]) > 0 for j in jobs if j["rule"] == "train_run")
    assert sum(j["rule"] == "train_run" for j in jobs) == (44 if not configfile else 4)
