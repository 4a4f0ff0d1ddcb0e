"""What a job's command line and inputs are made of: preparation jobs' JSON, the files a job
reads, the quickstart corpus options, `pairrel report`'s flags.

These work on a validated config (:class:`~pairrel.study.Study`), except :func:`source_job`,
which `pairrel data prepare --config` also calls on a partial one.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairrel.config import ConfigError
from pairrel.study import checkpoint_steps

if TYPE_CHECKING:
    from pairrel.study import Study

QUICKSTART_SPLITS = ("train", "test")  # the generated corpus: one folder (and meta.json) per split


def source_job(cfg: dict, data: str, source: str, fold: int | None = None) -> dict[str, Any]:
    """What one preparation job needs: the source spec (with the fold) and local datasets. Works
    on a partial config too (``pairrel data prepare`` needs only ``data`` and ``local_datasets``)."""
    try:
        spec = copy.deepcopy(cfg["data"][data]["sources"][source])
    except (KeyError, TypeError):
        raise ConfigError(f"config has no key 'data.{data}.sources.{source}'") from None
    if spec.get("folds"):
        if fold is None:
            raise ConfigError(f"source '{source}' of '{data}' has {spec['folds']} folds: say which (--fold)")
        spec["fold"] = fold
    return {"data": data, "source": source, "spec": spec, "local_datasets": cfg.get("local_datasets") or {}}


def corpus_outputs(study: "Study") -> list[Path]:
    """The generated quickstart corpus (one meta.json per split), when configured."""
    corpus = study.cfg["quickstart_corpus"]
    return [Path(corpus["root"]) / split / "meta.json" for split in QUICKSTART_SPLITS] if corpus else []


def corpus_options(study: "Study") -> str:
    """`pairrel data quickstart` options of ``quickstart_corpus`` (all its keys but the root)."""
    corpus = study.cfg["quickstart_corpus"]
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in corpus.items() if k != "root")


def local_dataset_files(study: "Study", dataset_id: str) -> list[Path]:
    """Files a local dataset is read from; a corpus this DAG generates is its meta.json."""
    local = study.cfg["local_datasets"].get(dataset_id)  # a dataset id, not a config default
    if local is None:
        return []
    root = Path(local)
    corpus = study.cfg["quickstart_corpus"]
    if corpus and root.resolve().is_relative_to(Path(corpus["root"]).resolve()):
        return [root / "meta.json"]
    from pairrel.data.registry import local_dataset_files as files_of

    return files_of(root)


def source_inputs(study: "Study", data: str, source: str) -> list[Path]:
    """Files a preparation job reads. A JSONL file that is not there yet is left out, so the
    DAG still plans; the job then fails naming it (`pairrel data check` lists it up front)."""
    from pairrel.data.parts import source_parts

    files: list[Path] = []
    for part in source_parts(source, study.cfg["data"][data]["sources"][source]).values():
        if "jsonl" in part:
            files += [Path(part["jsonl"])] if Path(part["jsonl"]).exists() else []
        else:
            files += local_dataset_files(study, part["dataset"])
    return files


def eval_inputs(study: "Study", run, group: str) -> list[Path]:
    """Data files an evaluation job reads: local task data, a held-out fold's split."""
    from pairrel.jobs.evaluation import HELDOUT_GROUP

    plan = study.eval_plan
    if group == HELDOUT_GROUP:
        return [study.folds_file(d, s, f) for d, s, f in plan.heldout_parts(run)]
    files = []
    if plan.is_local_benchmark and study.evaluation["local_dataset"]:
        files += local_dataset_files(study, study.evaluation["local_dataset"])
    tasks = set(plan.tasks_for(group, final=True)) | set(plan.tasks_for(group, final=False))
    for entry in study.evaluation["local_tasks"]:
        if entry["name"] in tasks:
            path = study.root / entry["path"]
            files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def report_args(study: "Study") -> str:
    """`pairrel report` options of this study, shell-quoted."""
    evaluation, report = study.evaluation, study.cfg["report"]
    args = ["--results", str(study.mteb_cache), "--runs", str(study.results / "runs"),
            "--out", str(study.figures), "--benchmark", evaluation["benchmark"]]
    if report["reference"]:
        args += ["--reference", report["reference"]]
    if evaluation["tasks"]:
        args += ["--tasks", *evaluation["tasks"]]
    if report["compare"]:
        args += ["--compare", *report["compare"]]
    return " ".join(shlex.quote(a) for a in args)


def training_schedules(study: "Study") -> list[dict[str, Any]]:
    """Each data mix's training schedule (its own ``training:`` over the global one), in grid
    order: what the report's captions state (one mix's 100 steps are not another's 1000)."""
    schedules = []
    for data in study.cfg["grid"]["data"]:
        if data not in study.data_used:
            continue
        training = study.training_for(data)
        schedules.append({"data": data, "steps": training["steps"], "batch_size": training["batch_size"],
                          "learning_rate": training["learning_rate"],
                          "checkpoint_every": training["checkpoint_every"],
                          "checkpoints": checkpoint_steps(training)})
    return schedules
