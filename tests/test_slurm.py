"""The SLURM profile on a real one-node cluster (tests/slurm/start_cluster.sh starts one).

The quickstart (tiny) DAG is submitted with `--profile profiles/slurm`, every job but the local
report goes through sbatch, and the tables come out as with a local run. Resource requests are
shrunk to fit a 2-core node; everything else is the shipped profile.
"""

import shutil
import subprocess

import pytest

from tests.test_workflow import QUICKSTART, WORKFLOW_FILES, snakemake
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed"))


@pytest.mark.skipif(not cluster_is_up(), reason="no local SLURM cluster (tests/slurm/start_cluster.sh)")
def test_quickstart_runs_through_the_slurm_profile(tmp_path):
    for name in WORKFLOW_FILES:
        src = REPO_ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copy(REPO_ROOT / "tests" / "data" / "quickstart-tiny.yaml", tmp_path / "tiny.yaml")
    small = ["cpus_per_task=1", "mem_mb=2000"]
    proc = snakemake(
        tmp_path, "--profile", "profiles/slurm", *QUICKSTART, "--jobs", "2",
        "--default-resources", "slurm_partition=gpu", "runtime=30", *small,
        "--set-resources", *(f"{rule}:{r}" for rule in ("train_run", "evaluate_checkpoint", "evaluate_base", "prepare_source") for r in small),
    )
    log = proc.stdout + proc.stderr
    # corpus, prepare, 4 trainings, 4 checkpoint evaluations, base evaluation
    assert log.count("has been submitted with SLURM jobid") == 11
    table = (tmp_path / "paper_figures" / "quickstart" / "main_table.csv").read_text().splitlines()
    assert len(table) == 1 + 5
