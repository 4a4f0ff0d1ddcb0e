# The study: runs, paths and identities all come from pairrel.study (unit-tested), which reads
# the config validated against the package's schema (defaults filled in); every job's inputs,
# arguments and resources from its catalogue (pairrel.jobs): a rule looks its job up in JOBS
# and computes nothing itself. Nothing is written while the DAG is parsed.
from pairrel.config import ConfigError, config_from_snakemake, put_interpreter_on_path, validate_config, write_yaml
from pairrel.evaluate.baseline import REFERENCE_FILE, baseline_models, load_reference
from pairrel.evaluate.records import damaged_markers
from pairrel.io import write_json
from pairrel.jobs import JobCatalogue
from pairrel import layout
from pairrel.study import Study

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
JOBS = JobCatalogue(STUDY)


wildcard_constraints:
    **layout.WILDCARD_CONSTRAINTS,


def job_input(rule, name):
    """An input function: the ``name`` input of the wildcards' job of ``rule``."""
    return JOBS.getter(rule, lambda job: job.inputs[name])


def job_arg(rule, name):
    """A params (or threads) function: the ``name`` argument of the wildcards' job of ``rule``."""
    return JOBS.getter(rule, lambda job: job.args[name])


def sized(rule, key):
    """A resource of a training or evaluation job (mem_mb, runtime, gpu, slurm_extra) from the
    catalogue (pairrel.resources); each retry asks for proportionally more time."""
    return lambda wildcards, attempt: JOBS.resources(JOBS.get(rule, wildcards), attempt)[key]


PREPARED = JOBS.prepared()
TRAIN_DONE = JOBS.train_done()
EVAL_MARKERS = JOBS.eval_markers()
# Each evaluation job reads its task set as a file (pairrel.task_sets): new tasks re-run it.
# Inputs of the config job as well: when the config changes, Snakemake re-runs that job and does not
# look at the jobs downstream of it (their config input is ancient); from there it looks upstream,
# finds a new task set missing, and re-runs the evaluations that read it (pairrel.task_sets).
TASK_SET_FILES = JOBS.get("study_config").inputs["task_sets"]


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
    """The files of one table or figure of the report (pairrel.layout.REPORT_RULE_FILES): the first is
    shown, with its caption (workflow/report/<output>.rst), by `snakemake --report report.html`."""
    first, *rest = LAYOUT.report_files(output)
    caption = os.path.join("..", "report", f"{output}.rst")  # relative to workflow/rules/
    return [report(first, caption=caption, category=category, subcategory=subcategory), *rest]


# LLM2Vec's published checkpoints (baseline.smk)
BASELINE_REFERENCE = str(REFERENCE_FILE)


def baseline_tables(wildcards):
    """One table per grid model with a published checkpoint (read only when the target is asked for)."""
    return [str(LAYOUT.path(layout.BASELINE_TABLE, model=m)) for m in baseline_models(STUDY, load_reference(BASELINE_REFERENCE))]
