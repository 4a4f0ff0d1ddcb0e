"""The jobs of a study: the one list the workflow's rules, ``pairrel plan`` and SLURM's requests read.

- :mod:`pairrel.jobs.job`: :class:`Job`, one job as data (rule, wildcards, model, tasks,
  inputs, outputs, shell arguments, the report table it feeds, training tokens);
- :mod:`pairrel.jobs.evaluation`: the evaluation plan (groups and tasks of each checkpoint);
- :mod:`pairrel.jobs.arguments`: what job command lines and inputs are made of;
- :mod:`pairrel.jobs.catalogue`: :class:`JobCatalogue`, every job of a study and the lookups
  the rules use.
"""

from pairrel.jobs.arguments import source_job
from pairrel.jobs.catalogue import JobCatalogue, plan_config, study_jobs
from pairrel.jobs.evaluation import ALL_GROUP, GROUP_JOIN, HELDOUT_GROUP, LOCAL_GROUP, EvaluationPlan
from pairrel.jobs.job import (
    BASELINE_RULE,
    CURVES,
    EVAL_RULES,
    HELDOUT_TABLE,
    MAIN_TABLE,
    REPORT_TABLES,
    TRAIN_RULE,
    TRAINING,
    Job,
)

__all__ = ["ALL_GROUP", "BASELINE_RULE", "CURVES", "EVAL_RULES", "GROUP_JOIN", "HELDOUT_GROUP", "HELDOUT_TABLE",
           "LOCAL_GROUP", "MAIN_TABLE", "REPORT_TABLES", "TRAINING", "TRAIN_RULE", "EvaluationPlan", "Job",
           "JobCatalogue", "plan_config", "source_job", "study_jobs"]
