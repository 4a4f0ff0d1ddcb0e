"""The evaluation plan of a study: which task groups and tasks each checkpoint and base model runs.

``evaluation.task_groups`` names the jobs of one checkpoint: a task type, several joined by
``+`` (one job, one model load for all of them), ``all``/``local`` (every task) or ``heldout``
(a K-fold run's held-out fold). Full-benchmark checkpoints (:meth:`EvaluationPlan.gets_full_benchmark`)
and base models run ``evaluation.tasks``, the others ``evaluation.intermediate_tasks``. Task
types come from the generated table of :mod:`pairrel.evaluate.benchmark_table`: planning never
imports mteb. A :class:`~pairrel.study.Study` builds its plan once (``Study.eval_plan``), which
checks the ``evaluation`` keys.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Protocol

from pairrel.config import ConfigError
from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK


# What the plan reads of a study and its runs. pairrel.study builds its plan (Study.eval_plan),
# so the plan asks for these attributes instead of importing the study (no import circle).
class Run(Protocol):
    data: str
    fold: int | None


class Study(Protocol):
    cfg: dict[str, Any]
    evaluation: dict[str, Any]
    runs: list[Run]

    def fold_values(self, data: str) -> list[int | None]: ...


# Evaluation groups besides MTEB task types.
ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP = "all", "local", "heldout"
GROUP_JOIN = "+"  # task types evaluated by one job: "Classification+Clustering+STS"


class EvaluationPlan:
    """Groups and tasks of every evaluation job of ``study``; raises :class:`ConfigError` for a
    group or task the benchmark does not have."""

    def __init__(self, study: "Study") -> None:
        self.study = study
        self.evaluation = study.evaluation
        self._check()

    @property
    def is_local_benchmark(self) -> bool:
        return self.evaluation["benchmark"] == QUICKSTART_BENCHMARK

    @cached_property
    def _benchmark_types(self) -> dict[str, str]:
        """Task name -> type of every task of the benchmark and of the user's own tasks
        (``evaluation.local_tasks``)."""
        own = {entry["name"]: entry["type"] for entry in self.evaluation["local_tasks"]}
        if self.is_local_benchmark:
            from pairrel.evaluate.task_specs import QUICKSTART_TASK_SPECS

            return {name: spec["type"] for name, spec in QUICKSTART_TASK_SPECS.items()} | own
        from pairrel.evaluate.benchmark_table import UnknownBenchmarkError, benchmark_task_types

        try:
            return benchmark_task_types(self.evaluation["benchmark"]) | own
        except UnknownBenchmarkError as err:
            raise ConfigError(f"config key 'evaluation.benchmark': {err}") from None

    def _task_list(self, key: str) -> list[str]:
        names = self.evaluation[key]
        if names is None:
            return list(self._benchmark_types)
        unknown = sorted(set(names) - set(self._benchmark_types))
        if unknown:
            raise ConfigError(f"config key 'evaluation.{key}': not in {self.evaluation['benchmark']}: {', '.join(unknown)}")
        if not names:
            raise ConfigError(f"config key 'evaluation.{key}': selects no task")
        return list(names)

    def eval_tasks(self, final: bool) -> list[str]:
        """Benchmark tasks of full-benchmark checkpoints (``final``: :meth:`Run.full_benchmark`)
        and base models, or of the others (intermediate checkpoints, folds past the first)."""
        if final or self.evaluation["intermediate_tasks"] is None:
            return self._task_list("tasks")
        return self._task_list("intermediate_tasks")

    def _group_tasks(self, group: str, tasks: list[str]) -> list[str]:
        if group in (ALL_GROUP, LOCAL_GROUP):
            return tasks
        types = set(group.split(GROUP_JOIN))
        return [t for t in tasks if self._benchmark_types[t] in types]

    def _check(self) -> None:
        known = sorted(set(self._benchmark_types.values()) | {ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP})
        final = self.eval_tasks(final=True)
        self.eval_tasks(final=False)
        for i, group in enumerate(self.evaluation["task_groups"]):
            parts = group.split(GROUP_JOIN)
            for part in parts:
                if part not in known or (len(parts) > 1 and part in (ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP)):
                    raise ConfigError(f"config key 'evaluation.task_groups.{i}': unknown group '{part}' "
                                      f"(known: {', '.join(known)}; task types join with '{GROUP_JOIN}')")
            if group == HELDOUT_GROUP:
                if not any(run.fold is not None for run in self.study.runs):
                    raise ConfigError(f"config key 'evaluation.task_groups.{i}': 'heldout' needs a data mix "
                                      "with a K-fold source on the grid")
            elif not self._group_tasks(group, final):
                raise ConfigError(f"config key 'evaluation.task_groups.{i}': group '{group}' selects no task "
                                  f"of {self.evaluation['benchmark']}")

    def gets_full_benchmark(self, run: "Run | None") -> bool:
        """Whether the final checkpoint of ``run`` (None: a base model) runs the full benchmark.

        ``evaluation.full_benchmark``: ``all`` -- every run; ``first-fold`` -- runs without folds,
        and of a K-fold mix's runs the first fold on the grid per (model, data, loss, labels,
        seed). The other folds are near-copies of it (each trains on four fifths of the same queries):
        their final checkpoints run ``intermediate_tasks`` and their held-out fold, so the
        K-fold experiment gets every fold's held-out score and a generalisation score on the
        subset, and the main table one full-benchmark run per variant.
        """
        if run is None or run.fold is None or self.evaluation["full_benchmark"] == "all":
            return True
        return run.fold == self.study.fold_values(run.data)[0]

    def groups_for(self, run: "Run | None", final: bool = True) -> list[str]:
        """Evaluation groups of a checkpoint (``run``; ``final``: its last step) or a base model."""
        tasks = self.eval_tasks(final)
        groups = []
        for group in self.evaluation["task_groups"]:
            if group == HELDOUT_GROUP:
                if run is None or run.fold is not None:
                    groups.append(group)
            elif self._group_tasks(group, tasks):
                groups.append(group)
        return groups

    def tasks_for(self, group: str, final: bool = True) -> list[str]:
        """Benchmark task names one evaluation job runs (``heldout``: none, they are derived)."""
        return [] if group == HELDOUT_GROUP else self._group_tasks(group, self.eval_tasks(final))

    def heldout_parts(self, run: "Run | None") -> list[tuple[str, str, int]]:
        """(data, source, fold) of the held-out tasks: the run's own fold, or (base models)
        every fold of every K-fold mix on the grid."""
        runs = [run] if run is not None else self.study.runs
        parts = set()
        for r in runs:
            if r.fold is None:
                continue
            for source, spec in self.study.cfg["data"][r.data]["sources"].items():
                if spec.get("folds"):
                    parts.add((r.data, source, r.fold))
        return sorted(parts)
