"""The task set of each evaluation job as a file, so that a change of tasks reaches the DAG.

An evaluation job's tasks are a parameter, and its config input is ``ancient`` (the frozen
config changes with any setting); Snakemake then never looks at the job's own parameters when
the config job re-runs, so a task added to a finished study (``evaluation.local_tasks``,
``evaluation.tasks``) would never be evaluated. Each job therefore also reads
``results/{experiment}/tasks/{group}/{hash}.json``: the benchmark, the job's task names and the
fingerprint of each of the user's task files (:func:`pairrel.evaluate.user_tasks.fingerprint`),
named by the SHA-256 of that content and written by a job of its own, never while the DAG is
parsed. Another task set is another input file, so Snakemake re-runs the evaluation; mteb then
computes only the results it lacks (``only-missing``). The task-set files are also inputs of the
``all`` and ``evaluate`` targets: when the config job re-runs, Snakemake skips checking the jobs
downstream of it (their config input is ancient), and only a missing input of the target makes it
look upstream, find the new task set missing and re-run the evaluations that read it.

A user task whose file or folder does not exist is a :class:`~pairrel.config.ConfigError` naming
its config key, raised while the DAG is planned — also for a study that is otherwise finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pairrel import layout
from pairrel.config import ConfigError
from pairrel.study import canonical_json, sha256_text


def _user_fingerprints(study, names: set[str], cache: dict) -> dict[str, str]:
    out = {}
    for index, entry in enumerate(study.evaluation["local_tasks"]):
        if entry["name"] not in names:
            continue
        if entry["name"] not in cache:
            path = Path(entry["path"]).expanduser()
            path = path if path.is_absolute() else Path(study.root) / path
            if not path.exists():
                raise ConfigError(f"config key 'evaluation.local_tasks.{index}.path': {path} does not exist "
                                  f"(task '{entry['name']}')")
            from pairrel.evaluate.user_tasks import fingerprint

            cache[entry["name"]] = fingerprint(entry, study.root)
        out[entry["name"]] = cache[entry["name"]]
    return out


def task_set(study, group: str, final: bool = True, _cache: dict | None = None) -> dict[str, Any]:
    """What one evaluation job evaluates: benchmark, task names, user tasks' fingerprints."""
    tasks = study.eval_plan.tasks_for(group, final=final)
    return {"benchmark": study.evaluation["benchmark"], "group": group, "tasks": list(tasks),
            "user_tasks": _user_fingerprints(study, set(tasks), {} if _cache is None else _cache)}


def task_set_file(study, group: str, final: bool = True, _cache: dict | None = None) -> Path:
    """``results/{experiment}/tasks/{group}/{hash}.json`` of a job's task set."""
    content = task_set(study, group, final, _cache)
    return study.layout.path(layout.TASK_SET, group=group, hash=sha256_text(canonical_json(content))[:12])


def used_task_sets(study) -> list[tuple[str, bool]]:
    """(group, final) of every evaluation job of the study: ``final`` for the checkpoints
    that get the full benchmark (:meth:`Run.full_benchmark`) and the base models, not for the
    others (intermediate checkpoints, subset folds)."""
    used = set()
    for run in study.runs:
        for step in run.eval_steps:
            final = run.full_benchmark(step)  # the task list the job runs (evaluate.smk's params)
            used.update((group, final) for group in study.eval_plan.groups_for(run, final=final))
    if study.evaluation["include_base"]:
        used.update((group, True) for group in study.eval_plan.groups_for(None))
    return sorted(used)


def task_set_files(study) -> dict[tuple[str, bool], tuple[str, dict[str, Any]]]:
    """``{(group, final): (path, content)}`` of every task set the study's evaluation jobs read
    (computed once while the DAG is planned: each user file is hashed once)."""
    cache: dict[str, str] = {}
    return {(group, final): (str(task_set_file(study, group, final, cache)), task_set(study, group, final, cache))
            for group, final in used_task_sets(study)}
