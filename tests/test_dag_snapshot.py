"""The planned DAG of config.yaml and of the quickstart preset is the one stored in tests/data/dag/:
every job's rule, inputs, outputs, log, benchmark, wildcards, threads, resources and shell command.

A refactor of paths or rules must leave it as it is; a deliberate change to the plan rewrites the
snapshot with `python tools/dag_snapshot.py` (and the diff shows what changed).
"""

import importlib.util

import pytest

from tests.conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("dag_snapshot", REPO_ROOT / "tools" / "dag_snapshot.py")
dag_snapshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dag_snapshot)


def test_blocks_keep_the_plan_and_drop_what_differs_between_two_dry_runs():
    output = "\n".join([
        "[Thu Dec  3 11:57:12 2026]",
        "rule train_run:",
        "    input: a.yaml, b.parquet",
        "    output: runs/x/done",
        "    jobid: 3",
        "    reason: Missing output files: runs/x/done",
        "    resources: tmpdir=/tmp, gpu=1, runtime=16",
        "Shell command: pairrel train --run-config a.yaml",
        "",
        "localrule all:",
        "    input: runs/x/done",
        "    jobid: 0",
        "    resources: tmpdir=/var/tmp",
        "",
    ])
    assert dag_snapshot.jobs(output) == [
        "all:\n    input: runs/x/done",
        "train_run:\n    input: a.yaml, b.parquet\n    output: runs/x/done\n    resources: gpu=1, runtime=16\n"
        "    Shell command: pairrel train --run-config a.yaml",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(dag_snapshot.CONFIGS))
def test_planned_dag_is_the_stored_one(name):
    stored = (dag_snapshot.SNAPSHOT_DIR / f"{name}.txt").read_text()
    planned = dag_snapshot.snapshot(dag_snapshot.CONFIGS[name])
    assert planned == stored, f"the DAG of {name} changed; `python tools/dag_snapshot.py` rewrites the snapshot"
