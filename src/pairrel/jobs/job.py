"""One Snakemake job as data: what it runs, reads, writes and costs.

A :class:`Job` is built by :class:`pairrel.jobs.catalogue.JobCatalogue` from a study; the
workflow's rules read their inputs, shell arguments and resources from it, and ``pairrel
plan`` prices it (:func:`pairrel.plan.price_job`), so the list of jobs and what each one
does are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Rules that run on a GPU (``resources: gpu=1``); the others cost no GPU-hours.
EVAL_RULES = ("evaluate_checkpoint", "evaluate_base")
TRAIN_RULE = "train_run"
BASELINE_RULE = "baseline_check_model"  # not part of the study's DAG (`snakemake baseline_check`)

# The report tables a GPU job feeds (pairrel.report.build writes them): the main table (and
# per_task) from full-benchmark checkpoints and base models; the held-out table from every
# K-fold run's held-out fold and its subset score at the final step; the curves (per_step)
# from earlier checkpoints; training feeds every table.
MAIN_TABLE, HELDOUT_TABLE, CURVES, TRAINING = "main_table", "heldout", "per_step", "training"
REPORT_TABLES = {MAIN_TABLE: "main_table + per_task", HELDOUT_TABLE: "heldout (TREC-DL)",
                 CURVES: "per_step (curves)", TRAINING: "training (every table)"}


@dataclass(frozen=True)
class Job:
    """One job of a study's DAG.

    ``model`` is the config's model key, ``model_path`` its ``name_or_path`` (the key of its
    measured throughput); ``tasks`` are the task names it evaluates as the plan prices them
    (a held-out job: its held-out task names), ``args`` the values its shell line needs.
    """

    rule: str
    label: str = ""  # the job's wildcards in one line, e.g. a run id, step and group
    wildcards: dict[str, str] = field(default_factory=dict, compare=False)
    model: str | None = None
    model_path: str | None = None
    max_length: int | None = None
    params_b: float | None = None  # models.<key>.params_b: scales a throughput where none is measured
    tasks: tuple[str, ...] = ()  # MTEB task names (evaluation)
    benchmark: str | None = None  # where the task names come from
    group: str | None = None  # the evaluation task group
    train_tokens: int = 0
    table: str = ""  # the report table it feeds (REPORT_TABLES); "" for jobs without a cost
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)  # named input files
    outputs: tuple[str, ...] = ()  # the files it writes (layout paths)
    args: dict[str, Any] = field(default_factory=dict, compare=False)  # shell line / run: values
    training: dict[str, Any] | None = field(default=None, compare=False)  # a training job's settings

    @property
    def kind(self) -> str | None:
        """``train`` or ``evaluate`` for the jobs that hold a GPU (pairrel.resources), else None."""
        if self.rule == TRAIN_RULE:
            return "train"
        return "evaluate" if self.rule in EVAL_RULES + (BASELINE_RULE,) else None
