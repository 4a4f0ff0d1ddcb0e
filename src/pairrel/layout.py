"""Where every artifact of a study lives and what it is called: each pattern written once.

Patterns are relative to ``results/{experiment}/`` and use ``str.format`` fields, which are also
Snakemake wildcards of the same names (``{run}``, ``{step}``, ``{group}``, ...). The rules read
their output, log and benchmark patterns from :meth:`Layout.pattern`; :class:`pairrel.study.Study`
and its runs fill the same patterns with values through :meth:`Layout.path`, so a rule's output
and the file a job is asked for can never drift apart.

The layout (under ``results/{experiment}/``)::

    config.yaml                                   the merged config every job reads
    data/{data}/{source}[.fold~{fold}].parquet    one prepared source (+ .meta.json, .folds.json)
    tasks/{group}/{hash}.json                     an evaluation job's task set (pairrel.task_sets)
    runs/{run}/resolved/{hash}.yaml               a run's resolved config, named by its content
    runs/{run}/run.yaml, metrics.jsonl, done      its last training job's settings, metrics, end
    runs/{run}/checkpoint-{step}/                 one checkpoint (files: CHECKPOINT_FILES)
    models/{model}/{hash}.yaml                    a base model's resolved config
    eval/{run}/step~{step}/{group}.done           one evaluation job's marker
    eval/base/model~{model}/{group}.done
    mteb/results/{org}__{name}/{revision}/...     mteb's own result cache (see cache_folder_name)
    logs/..., benchmarks/...                      one log and one Snakemake benchmark per job

Tables and figures go to ``paper_figures/{experiment}/`` (:data:`REPORT_FILES`).
"""

from __future__ import annotations

from pathlib import Path

# -- the results tree --------------------------------------------------------------------------
RESULTS_ROOT, FIGURES_ROOT = "results", "paper_figures"  # each holds one folder per experiment
CONFIG = "config.yaml"
MTEB_CACHE = "mteb"
EMBEDDINGS = "embeddings"
PREFETCH_DONE = "prefetch.done"
TASK_SET = "tasks/{group}/{hash}.json"

# Prepared data: a source's stem, a K-fold source's stem per fold, and the files of a stem.
SOURCE_STEM = "data/{data}/{source}"
FOLD_STEM = SOURCE_STEM + ".fold~{fold}"
PARQUET, META, FOLDS = ".parquet", ".meta.json", ".folds.json"

# A run id, ``model~M/data~D/loss~L/labels~G[/fold~K]/seed~S`` (pairrel.study builds them).
RUN_ID_PATTERN = r"model~[^/~]+/data~[^/~]+/loss~[^/~]+/labels~[^/~]+(?:/fold~\d+)?/seed~\d+"
# What each wildcard of the patterns here may match (the rules' wildcard_constraints).
WILDCARD_CONSTRAINTS = {
    "run": RUN_ID_PATTERN,
    "model": r"[^/~]+",
    "data": r"[^/~]+",
    "source": r"[^/.~]+",
    "fold": r"\d+",
    "step": r"\d+",
    "group": r"[^/]+",
    "hash": r"[0-9a-f]{12}",
}

RUN_DIR = "runs/{run}"
RESOLVED_RUN = RUN_DIR + "/resolved/{hash}.yaml"
RUN_CONFIG = "run.yaml"  # in a run's folder: the settings of its last training job
METRICS = "metrics.jsonl"  # in a run's folder
DONE = "done"  # in a run's folder: written when training ends
RUN_DONE = RUN_DIR + "/" + DONE
RUN_YAML = RUN_DIR + "/" + RUN_CONFIG
CHECKPOINT_PREFIX = "checkpoint-"
RESOLVED_MODEL = "models/{model}/{hash}.yaml"
CHECKPOINT_JOB = "{run}/step~{step}/{group}"  # one evaluation job of a checkpoint: its marker, log and label
EVAL_MARKER = "eval/" + CHECKPOINT_JOB + ".done"
BASE_MARKER = "eval/base/model~{model}/{group}.done"
BASELINE_TABLE = "baseline_check/{model}.md"

# -- a checkpoint folder's files (written by pairrel.trainer_state, read by study and export) -----
ADAPTER_TENSORS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"  # peft's older format, accepted by export
ADAPTER_CONFIG = "adapter_config.json"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
LEGACY_STATE_PICKLE = "trainer_state.pt"

# -- logs and Snakemake benchmarks, one per job ------------------------------------------------
LOGS, BENCHMARKS = "logs", "benchmarks"
JOB_FILES = {  # job -> its path under logs/ (.log) and benchmarks/ (.tsv), without suffix
    "study_config": "study_config",
    "quickstart_corpus": "data/quickstart_corpus",
    "prepare_source": SOURCE_STEM,
    "prepare_fold": FOLD_STEM,
    "prefetch": "data/prefetch",
    "resolve_run": "resolve/{run}/{hash}",
    "train_run": "train/{run}",
    "task_set": "tasks/{group}/{hash}",
    "evaluate_checkpoint": "evaluate/" + CHECKPOINT_JOB,
    "resolve_model": "resolve/model~{model}/{hash}",
    "evaluate_base": "evaluate/base/model~{model}/{group}",
    "report": "report",
    "baseline_check_model": "baseline_check/model~{model}",
}

# -- the report's outputs, under paper_figures/{experiment}/ -----------------------------------
TABLE_FORMATS = (".csv", ".md", ".tex")
FIGURE_FORMATS = (".png", ".pdf")


def ablation_figure(axis: str) -> str:
    """The stem of the report's figure of score vs one numeric grid axis (and vs step)."""
    return f"ablation_{axis}"


def _files(stem: str, formats: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(stem + suffix for suffix in formats)


REPORT_FILES = {  # output -> its files: everything `pairrel report` writes (pairrel.report.build)
    "main_table": _files("main_table", TABLE_FORMATS),
    "all_checkpoints": ("all_checkpoints.csv",),
    "per_step": _files("per_step", TABLE_FORMATS),  # when a variant has several evaluated steps
    "per_task": _files("per_task", TABLE_FORMATS),
    "comparison": ("comparison.csv", "comparison.md"),
    "comparison_summary": ("comparison_summary.csv",),
    "heldout": _files("heldout", TABLE_FORMATS),  # held-out K-fold queries
    "heldout_comparison": _files("heldout_comparison", TABLE_FORMATS),
    "type_scores": _files("type_scores", FIGURE_FORMATS),
    "training_curves": _files("training_curves", FIGURE_FORMATS),
    "ablation_step": _files(ablation_figure("step"), FIGURE_FORMATS),
    "notes": ("notes.md",),
}
# The files the workflow's report rule declares (Layout.report_files): the report writes each of
# them on every run; of per_task only the CSV stands for the three.
REPORT_RULE_FILES = {
    "main_table": REPORT_FILES["main_table"],
    "per_task": REPORT_FILES["per_task"][:1],
    "type_scores": REPORT_FILES["type_scores"],
    "training_curves": REPORT_FILES["training_curves"],
    "ablation_step": REPORT_FILES["ablation_step"],  # declared when a run has >= 2 evaluated steps
}


def report_file(output: str, suffix: str) -> str:
    """The name of the file of a report output in one format: ``("main_table", ".md")`` ->
    ``main_table.md``."""
    for name in REPORT_FILES[output]:
        if name.endswith(suffix):
            return name
    raise KeyError(f"the report's {output} has no {suffix} file ({', '.join(REPORT_FILES[output])})")


# -- names in mteb -----------------------------------------------------------------------------
MTEB_ORG = "pairrel"


def checkpoint_model_name(run_slug: str, step: int) -> str:
    """mteb's name of one checkpoint: ``pairrel/<run slug>.step-<N>`` (each its own model)."""
    return f"{MTEB_ORG}/{run_slug}.step-{step}"


def base_model_name(model: str) -> str:
    """mteb's name of an untrained base model: ``pairrel/<model key>``."""
    return f"{MTEB_ORG}/{model}"


CACHE_NAME_SEPARATOR = "__"  # mteb's ResultCache writes a model's "org/name" as "org__name"
CACHE_RESULTS = "results"  # the folder of mteb's ResultCache that holds the models


def cache_folder_name(model_name: str) -> str:
    """The folder mteb's ResultCache keeps a model's results in: ``org/name`` -> ``org__name``."""
    return model_name.replace("/", CACHE_NAME_SEPARATOR)


def model_name_of_cache_folder(folder_name: str) -> str:
    """The inverse of :func:`cache_folder_name`."""
    return folder_name.replace(CACHE_NAME_SEPARATOR, "/")


def result_folder(cache_dir: str | Path, model_name: str, revision: str) -> Path:
    """The folder of one model revision's results in mteb's ResultCache at ``cache_dir``."""
    return Path(cache_dir) / CACHE_RESULTS / cache_folder_name(model_name) / revision


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``{run_dir}/checkpoint-{step}``: one checkpoint of a run."""
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(folder: str | Path) -> int | None:
    """The step of a ``checkpoint-{step}`` folder (the inverse of :func:`checkpoint_dir`), None
    for a folder of another name (a temporary one, ``checkpoint-best``)."""
    name = Path(folder).name
    step = name[len(CHECKPOINT_PREFIX):] if name.startswith(CHECKPOINT_PREFIX) else ""
    return int(step) if step.isdigit() else None


class Layout:
    """The tree of one study: :meth:`path` gives a concrete file, :meth:`pattern` the same file
    with its fields left as Snakemake wildcards."""

    def __init__(self, root: str | Path, experiment: str) -> None:
        self.results = Path(root) / RESULTS_ROOT / experiment
        self.figures = Path(root) / FIGURES_ROOT / experiment

    def path(self, pattern: str, **fields) -> Path:
        return self.results / pattern.format(**fields)

    def pattern(self, pattern: str) -> str:
        return str(self.results / pattern)

    def log(self, job: str, **fields) -> Path:
        return self.results / LOGS / (JOB_FILES[job].format(**fields) + ".log")

    def benchmark(self, job: str, **fields) -> Path:
        return self.results / BENCHMARKS / (JOB_FILES[job].format(**fields) + ".tsv")

    def log_pattern(self, job: str) -> str:
        return str(self.results / LOGS / (JOB_FILES[job] + ".log"))

    def benchmark_pattern(self, job: str) -> str:
        return str(self.results / BENCHMARKS / (JOB_FILES[job] + ".tsv"))

    def report_files(self, output: str) -> list[str]:
        """The files of a report output that the workflow's report rule declares."""
        return [str(self.figures / name) for name in REPORT_RULE_FILES[output]]

    def prepared(self, data: str, source: str, fold: int | None, suffix: str = PARQUET) -> Path:
        """A prepared source file (``fold`` None: a source without folds)."""
        stem = SOURCE_STEM if fold is None else FOLD_STEM
        return self.results / (stem.format(data=data, source=source, fold=fold) + suffix)

    def prepared_pattern(self, folds: bool, suffix: str = PARQUET) -> str:
        return str(self.results / ((FOLD_STEM if folds else SOURCE_STEM) + suffix))
