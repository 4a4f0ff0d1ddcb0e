"""Every job of a study, once: the workflow's rules look their job up here, ``pairrel plan``
prices the list.

:meth:`JobCatalogue.jobs` lists the jobs of the study's default target (``all``) in the order
the plan shows them: the frozen config, the task sets, the quickstart corpus, one preparation
job per prepared source or fold, per run its resolved config and training, per run × evaluated
checkpoint × task group its evaluation (earlier checkpoints run
``evaluation.intermediate_tasks``), per base model its resolved config and one evaluation per
group, then the report. :meth:`JobCatalogue.get` answers one rule's job from its wildcards, also
for a job outside that list (a checkpoint asked for by name, ``baseline_check_model``), and
:meth:`JobCatalogue.resources` its SLURM request (:mod:`pairrel.resources`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable

from pairrel import layout
from pairrel.jobs import arguments
from pairrel.jobs.evaluation import HELDOUT_GROUP
from pairrel.jobs.job import (
    BASELINE_RULE,
    CURVES,
    HELDOUT_TABLE,
    MAIN_TABLE,
    TRAIN_RULE,
    TRAINING,
    Job,
)
from pairrel.study import Run, Study, canonical_json

# The wildcards of each rule that name its job, and how each is read from Snakemake's strings.
RULE_WILDCARDS: dict[str, tuple[str, ...]] = {
    "study_config": (), "quickstart_corpus": (), "report": (), "all": (),
    "task_set": ("group", "hash"),
    "prepare_source": ("data", "source"), "prepare_fold": ("data", "source", "fold"),
    "resolve_run": ("run",), TRAIN_RULE: ("run",),
    "evaluate_checkpoint": ("run", "step", "group"),
    "resolve_model": ("model",), "evaluate_base": ("model", "group"),
    BASELINE_RULE: ("model",),
}
INT_WILDCARDS = ("step", "fold")


class JobCatalogue:
    """The jobs of ``study``. ``assumptions``: the per-text token counts a training job's
    tokens are computed with (a throughput file's; default :data:`pairrel.plan.DEFAULT_THROUGHPUT`)."""

    def __init__(self, study: Study, assumptions: dict | None = None) -> None:
        from pairrel.plan import DEFAULT_THROUGHPUT

        self.study = study
        self.cfg = study.cfg
        self.assumptions = assumptions or DEFAULT_THROUGHPUT
        self._cache: dict[tuple, Job] = {}
        self._hours: dict[tuple, float] = {}

    # -- lookups -----------------------------------------------------------------------------
    def get(self, rule: str, wildcards=None, **values) -> Job:
        """The job of ``rule`` with these wildcards (Snakemake's object, or keywords)."""
        if rule not in RULE_WILDCARDS:
            raise KeyError(f"no job of rule '{rule}' in the catalogue (rules: {', '.join(RULE_WILDCARDS)})")
        given = {**({k: wildcards[k] for k in wildcards.keys()} if wildcards is not None else {}), **values}
        args = tuple(int(given[k]) if k in INT_WILDCARDS else str(given[k]) for k in RULE_WILDCARDS[rule])
        key = (rule, *args)
        if key not in self._cache:
            self._cache[key] = getattr(self, "_" + rule)(*args)
        return self._cache[key]

    def getter(self, rule: str, pick: Callable[[Job], Any]) -> Callable:
        """An input or params function for a rule: ``pick`` of the wildcards' job."""
        return lambda wildcards: pick(self.get(rule, wildcards))

    # -- the list ----------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job of the study's ``all`` target, in plan order."""
        study = self.study
        jobs = [self.get("study_config")]
        # one task-set file per distinct (group, task list): evaluation jobs with equal sets share it
        jobs += [self._task_set_job(path) for path in sorted(self.task_set_content)]
        if self.cfg["quickstart_corpus"]:
            jobs.append(self.get("quickstart_corpus"))
        for data in study.data_used:
            for source, fold in study.source_parts(data):
                jobs.append(self.get("prepare_source", data=data, source=source) if fold is None
                            else self.get("prepare_fold", data=data, source=source, fold=fold))
        for run in study.runs:
            jobs += [self.get("resolve_run", run=run.id), self.get(TRAIN_RULE, run=run.id)]
        jobs += self.checkpoint_jobs()
        jobs += self.base_jobs()
        jobs += [self.get("report"), self.get("all")]
        return jobs

    def checkpoint_jobs(self) -> list[Job]:
        plan = self.study.eval_plan
        return [self.get("evaluate_checkpoint", run=run.id, step=step, group=group)
                for run in self.study.runs for step in run.eval_steps
                for group in plan.groups_for(run, final=run.full_benchmark(step))]

    def base_jobs(self) -> list[Job]:
        """Per base model its resolved config and evaluations (``evaluation.include_base``)."""
        if not self.study.evaluation["include_base"]:
            return []
        jobs = []
        for model in self.study.models_used:
            jobs.append(self.get("resolve_model", model=model))
            jobs += [self.get("evaluate_base", model=model, group=g) for g in self.study.eval_plan.groups_for(None)]
        return jobs

    def eval_markers(self) -> list[str]:
        """The marker of every evaluation job of the study (checkpoints, then base models)."""
        return [job.outputs[0] for job in self.checkpoint_jobs() + self.base_jobs() if job.rule != "resolve_model"]

    def prepared(self) -> list[str]:
        """Every prepared Parquet file of the study."""
        study = self.study
        return [str(study.prepared(d, s, f)) for d in study.data_used for s, f in study.source_parts(d)]

    def train_done(self) -> list[str]:
        return [str(run.done_file) for run in self.study.runs]

    # -- task sets ---------------------------------------------------------------------------
    @cached_property
    def task_sets(self) -> dict[tuple[str, bool], tuple[str, dict]]:
        """``{(group, final): (path, content)}`` of every task set (pairrel.task_sets)."""
        from pairrel.task_sets import task_set_files

        return task_set_files(self.study)

    @cached_property
    def task_set_content(self) -> dict[str, dict]:
        return dict(self.task_sets.values())

    def _task_set_job(self, path: str) -> Job:
        return Job("task_set", path, outputs=(path,), args={"content": self.task_set_content[path]})

    def _task_set(self, group: str, hash: str) -> Job:
        return self._task_set_job(str(self.study.layout.path(layout.TASK_SET, group=group, hash=hash)))

    # -- one job per rule (called through get) ----------------------------------------------
    def _study_config(self) -> Job:
        return Job("study_config", inputs={"task_sets": sorted(self.task_set_content)},
                   outputs=(str(self.study.config_file),), args={"config": self.cfg})

    def _quickstart_corpus(self) -> Job:
        outputs = tuple(str(p) for p in arguments.corpus_outputs(self.study))
        root = str(arguments.corpus_outputs(self.study)[0].parent.parent) if outputs else ""
        return Job("quickstart_corpus", outputs=outputs,
                   args={"root": root, "options": arguments.corpus_options(self.study)})

    def _prepare(self, rule: str, data: str, source: str, fold: int | None) -> Job:
        study = self.study
        suffixes = (layout.PARQUET, layout.META) + ((layout.FOLDS,) if fold is not None else ())
        return Job(rule, f"{data}/{source}" + ("" if fold is None else f".fold~{fold}"),
                   {"data": data, "source": source, **({"fold": str(fold)} if fold is not None else {})},
                   inputs={"files": [str(p) for p in arguments.source_inputs(study, data, source)]},
                   outputs=tuple(str(study.prepared(data, source, fold, s)) for s in suffixes),
                   args={"job": canonical_json(arguments.source_job(self.cfg, data, source, fold))})

    def _prepare_source(self, data: str, source: str) -> Job:
        return self._prepare("prepare_source", data, source, None)

    def _prepare_fold(self, data: str, source: str, fold: int) -> Job:
        return self._prepare("prepare_fold", data, source, fold)

    def _resolve_run(self, run_id: str) -> Job:
        run = self.study.run(run_id)
        return Job("resolve_run", run.id, {"run": run.id}, outputs=(str(run.resolved_file),), args={"run": run.config})

    def _train_run(self, run_id: str) -> Job:
        from pairrel.launch import launch_command, n_processes
        from pairrel.plan import training_tokens

        run = self.study.run(run_id)
        model = self.cfg["models"][run.model]
        return Job(TRAIN_RULE, run.id, {"run": run.id}, run.model, model["name_or_path"], model["max_length"],
                   model["params_b"], train_tokens=training_tokens(run.training, model, self.assumptions), table=TRAINING,
                   inputs={"run": str(run.resolved_file), "prepared": [f["parquet"] for f in run.prepared.values()]},
                   outputs=(str(run.done_file), str(run.config_file)), training=run.training,
                   args={"launcher": launch_command(n_processes(run.training), []),
                         "threads": run.training["num_threads"] or 1})

    def _evaluation(self, rule: str, label: str, wildcards: dict, model_key: str, run: Run | None,
                    group: str, final: bool, table: str, marker, inputs: dict) -> Job:
        from pairrel.evaluate.task_specs import heldout_task_name

        plan = self.study.eval_plan
        model = self.cfg["models"][model_key]
        shell_tasks = plan.tasks_for(group, final=final)
        if group == HELDOUT_GROUP:
            tasks = [heldout_task_name(source, fold) for _, source, fold in plan.heldout_parts(run)]
            table = HELDOUT_TABLE
        else:
            tasks = shell_tasks
        inputs = {**inputs, "data": [str(p) for p in arguments.eval_inputs(self.study, run, group)],
                  "tasks": self.task_sets[(group, final)][0]}
        return Job(rule, label, wildcards, model_key, model["name_or_path"], model["max_length"], model["params_b"], tuple(tasks),
                   self.study.evaluation["benchmark"], group, table=table, inputs=inputs, outputs=(str(marker),),
                   args={"tasks": ",".join(shell_tasks), "threads": self.cfg["training"]["num_threads"] or 1})

    def _evaluate_checkpoint(self, run_id: str, step: int, group: str) -> Job:
        run = self.study.run(run_id)
        final = run.full_benchmark(step)
        # a final checkpoint on the subset: a fold's generalisation score in the held-out table
        table = MAIN_TABLE if final else HELDOUT_TABLE if step == run.final_step else CURVES
        return self._evaluation("evaluate_checkpoint", layout.CHECKPOINT_JOB.format(run=run.id, step=step, group=group),
                                {"run": run.id, "step": str(step), "group": group}, run.model, run, group, final,
                                table, run.eval_marker(step, group),
                                {"run": str(run.resolved_file), "done": str(run.done_file)})

    def _resolve_model(self, model: str) -> Job:
        return Job("resolve_model", model, {"model": model}, model, outputs=(str(self.study.model_file(model)),),
                   args={"model": self.cfg["models"][model]})

    def _evaluate_base(self, model: str, group: str) -> Job:
        return self._evaluation("evaluate_base", f"base/model~{model}/{group}", {"model": model, "group": group},
                                model, None, group, True, MAIN_TABLE, self.study.base_marker(model, group),
                                {"model": str(self.study.model_file(model))})

    def _baseline_check_model(self, model: str) -> Job:
        """LLM2Vec's published checkpoint of ``model`` on the reference file's tasks (baseline.smk)."""
        from pairrel.evaluate.baseline import REFERENCE_FILE, load_reference

        reference = load_reference(REFERENCE_FILE)
        model_cfg = self.cfg["models"][model]
        return Job(BASELINE_RULE, model, {"model": model}, model, model_cfg["name_or_path"], model_cfg["max_length"], model_cfg["params_b"],
                   tuple(reference["tasks"]), reference["benchmark"],
                   outputs=(str(self.study.layout.path(layout.BASELINE_TABLE, model=model)),),
                   args={"threads": self.cfg["training"]["num_threads"] or 1})

    def _report(self) -> Job:
        # the score-vs-step figure: when at least two checkpoints of a run are evaluated
        ablation_step = any(len(run.eval_steps) >= 2 for run in self.study.runs)
        return Job("report", args={"args": arguments.report_args(self.study), "ablation_step": ablation_step,
                                   "schedules": arguments.training_schedules(self.study)})

    def _all(self) -> Job:
        return Job("all")

    # -- resources ---------------------------------------------------------------------------
    def gpu_hours(self, job: Job) -> float:
        """GPU-hours of a training or evaluation job: its price in the cost plan
        (:func:`pairrel.plan.price_job`, default throughput) plus a floor per task the plan
        cannot price (:func:`pairrel.resources.job_gpu_hours`)."""
        from pairrel.plan import price_job
        from pairrel.resources import job_gpu_hours

        key = (job.rule, job.label)
        if key not in self._hours:
            price = price_job(job)
            self._hours[key] = job_gpu_hours(price.gpu_hours, len(price.unpriced))
        return self._hours[key]

    def resources(self, job: Job, attempt: int = 1) -> dict:
        """``{"mem_mb", "runtime", "gpu", "slurm_extra"}`` of a training or evaluation job
        (:func:`pairrel.resources.job_resources`; each attempt asks for proportionally more time)."""
        from pairrel.resources import job_resources

        if job.kind is None:
            raise KeyError(f"rule '{job.rule}' asks for no GPU resources")
        return job_resources(job.kind, self.cfg["models"][job.model], self.gpu_hours(job), group=job.group,
                             training_cfg=job.training if job.kind == "train" else None,
                             attempt=attempt, model_name=job.model)


def study_jobs(cfg: dict, assumptions: dict | None = None) -> list[Job]:
    """Every job of the study of ``cfg`` (validated, defaults filled): :meth:`JobCatalogue.jobs`."""
    return JobCatalogue(Study(cfg), assumptions).jobs()


def plan_config(cfg: dict, throughput: dict | None = None, input_order: bool = False,
                source: str = "default throughput"):
    """The cost plan of a validated config (:class:`pairrel.plan.Plan`): its study's jobs (their
    training tokens from ``throughput``'s per-text assumptions), priced by :func:`pairrel.plan.plan_jobs`."""
    from pairrel.plan import DEFAULT_THROUGHPUT, plan_jobs

    throughput = throughput or DEFAULT_THROUGHPUT
    return plan_jobs(study_jobs(cfg, throughput), throughput, input_order, source)
