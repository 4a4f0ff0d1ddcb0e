# The study: runs, paths and identities all come from pairrel.study (unit-tested), which reads
# the config validated against the package's schema (defaults filled in). Nothing is written
# while the DAG is parsed.
from pairrel.config import ConfigError, config_from_snakemake, put_interpreter_on_path, validate_config, write_yaml
from pairrel.evaluate.baseline import REFERENCE_FILE, baseline_models, load_reference
from pairrel.evaluate.records import damaged_markers
from pairrel.io import write_json
from pairrel.launch import launch_command, n_processes
from pairrel.resources import job_resources
from pairrel import layout
from pairrel.study import Study
from pairrel.task_sets import task_set_files

# Jobs call `pairrel`: found beside the Python running Snakemake even in a venv that is not
# activated; with --use-conda the job's activated env comes first on PATH and wins.
put_interpreter_on_path()

# Fails before any job runs, naming the offending key. The config files are read again with
# pairrel's loader (as `pairrel config` reads them): a key given twice is refused, 1.0e6 is a number.
STUDY = Study(validate_config(config_from_snakemake(workflow, config)))
# Every output, log and benchmark pattern of the rules is pairrel.layout's (LAYOUT.pattern,
# .log_pattern, .benchmark_pattern): no rule writes a path of its own.
LAYOUT = STUDY.layout
CONFIG_FILE = str(STUDY.config_file)


wildcard_constraints:
    **layout.WILDCARD_CONSTRAINTS,


def run_of(wildcards):
    return STUDY.run(wildcards.run)


def paths(items):
    return [str(p) for p in items]


# The longest job asked of SLURM (many clusters cap jobs at 48 h). A longer evaluation resumes on
# its retry from its shards and finished tasks, a longer training run from its last checkpoint.
MAX_JOB_MINUTES = 48 * 60


def sized(kind, key):
    """A resource of a training or evaluation job (mem_mb, runtime, gpu), from its model and task
    group (pairrel.resources); each retry asks for proportionally more time."""

    def size(wildcards, attempt):
        run = run_of(wildcards) if "run" in wildcards.keys() else None
        model = run.model if run else wildcards.model
        training = run.training if run and kind == "train" else None
        group = wildcards.get("group")
        return job_resources(kind, STUDY.cfg["models"][model], group=group, training_cfg=training,
                             attempt=attempt, model_name=model, max_minutes=MAX_JOB_MINUTES)[key]

    return size


def launcher(wildcards):
    """`pairrel`, or torchrun over training.gpus processes for a multi-GPU run."""
    return launch_command(n_processes(run_of(wildcards).training), [])


PREPARED = paths(STUDY.prepared(d, s, f) for d in STUDY.data_used for s, f in STUDY.source_parts(d))
TRAIN_DONE = paths(run.done_file for run in STUDY.runs)
EVAL_MARKERS = paths(STUDY.checkpoint_markers() + STUDY.base_markers())
# Each evaluation job reads its task set as a file (pairrel.task_sets): new tasks re-run it.
TASK_SETS = task_set_files(STUDY)
TASK_SET_CONTENT = dict(TASK_SETS.values())
# Inputs of the config job as well: when the config changes, Snakemake re-runs that job and does not
# look at the jobs downstream of it (their config input is ancient); from there it looks upstream,
# finds a new task set missing, and re-runs the evaluations that read it (pairrel.task_sets).
TASK_SET_FILES = sorted(TASK_SET_CONTENT)


def task_set_input(final):
    """The task-set file of an evaluation job; ``final(wildcards)``: whether it is a final one."""
    return lambda wc: TASK_SETS[(wc.group, final(wc))][0]


def _refuse_damaged_results():
    """A result file cut short, altered or deleted after its job wrote it would otherwise be
    trusted as long as the job's marker stands (pairrel.evaluate.records): refused here, naming
    the files and what to delete so that the job runs again."""
    if not workflow.is_main_process:
        return  # a job's own Snakemake process (results may be half-rewritten by a running job)
    damaged = damaged_markers(EVAL_MARKERS)
    if damaged:
        lines = [f"{', '.join(map(str, files))}: differs from what {marker} recorded (truncated, altered or "
                 f"deleted since it was evaluated); delete it and {marker} to evaluate it again"
                 for marker, files in sorted(damaged.items())]
        raise ConfigError("damaged evaluation results:\n  " + "\n  ".join(lines))


_refuse_damaged_results()


def report_markers(wildcards):
    """Asked for alone (`snakemake report`), the report reads what is cached; as part of `all`
    it waits for every evaluation. Once the study is complete both are the same input set, so
    the two never make each other rerun. (An input function: the targets are known only after
    the Snakefile is parsed.)"""
    if set(workflow.dag_settings.targets) == {"report"}:
        return [m for m in EVAL_MARKERS if os.path.exists(m)]
    return EVAL_MARKERS


def shown(output, category, subcategory):
    """The files of one table or figure of the report (pairrel.layout.REPORT_FILES): the first is
    shown, with its caption (workflow/report/<output>.rst), by `snakemake --report report.html`."""
    first, *rest = LAYOUT.report_files(output)
    caption = os.path.join("..", "report", f"{output}.rst")  # relative to workflow/rules/
    return [report(first, caption=caption, category=category, subcategory=subcategory), *rest]


# LLM2Vec's published checkpoints (baseline.smk)
BASELINE_REFERENCE = str(REFERENCE_FILE)


def baseline_tables(wildcards):
    """One table per grid model with a published checkpoint (read only when the target is asked for)."""
    return [str(LAYOUT.path(layout.BASELINE_TABLE, model=m)) for m in baseline_models(STUDY, load_reference(BASELINE_REFERENCE))]
