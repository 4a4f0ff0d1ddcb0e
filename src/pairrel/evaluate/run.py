"""Evaluate a checkpoint, a base model or any encoder folder on MTEB tasks with ``mteb.evaluate``.

Results go to MTEB's own result cache (``results/{experiment}/mteb/`` in a study). Each checkpoint
is its own mteb model (name and revision from :mod:`pairrel.study`: the revision fingerprints the
weights), so mteb's ``ResultCache`` loads every checkpoint as a model of its own, a retrained run
is evaluated afresh, and ``overwrite_strategy="only-missing"`` never recomputes a result of the
same weights. A task built from the user's own files carries a fingerprint of those files as its
dataset revision; a cached result of other data is deleted before evaluation, never reused.

Instructions, their format and word truncation follow the evaluation protocol of the model's kind
(``evaluation.protocol``; :mod:`pairrel.evaluate.protocol`): the task's instruction goes on the
query side of asymmetric tasks (retrieval, reranking) and on both sides of symmetric ones;
documents never get one. The protocol is part of each result's revision.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from pairrel import layout
from pairrel.config import ConfigError, atomic_write_text
from pairrel.encoder import Encoder
from pairrel.evaluate.model import mteb_model
from pairrel.evaluate.protocol import Protocol, protocol_for
from pairrel.evaluate.records import RECORD_KEY, damaged_results, result_stamps
from pairrel.jobs.evaluation import HELDOUT_GROUP
from pairrel.study import (
    Run,
    Study,
    base_revision,
    canonical_json,
    checkpoint_revision,
    file_sha256,
    sha256_text,
)
from pairrel.trainer_state import verify_checkpoint

def benchmark_tasks(benchmark: str, names: list[str], local_dataset: str | None = None, local_instruction: str = "",
                    local_tasks: list[dict] | None = None, base_dir: Path | None = None) -> list:
    """Task objects of ``benchmark`` (or the local quickstart tasks) and of the user's own tasks
    (``evaluation.local_tasks``) with these names, in order."""
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK

    own = [entry for entry in local_tasks or [] if entry["name"] in names]
    if own:
        from pairrel.evaluate.user_tasks import user_tasks

        found = {task.metadata.name: task for task in user_tasks(own, base_dir)}
        rest = benchmark_tasks(benchmark, [n for n in names if n not in found], local_dataset, local_instruction) \
            if len(found) < len(names) else []
        by_name = found | {task.metadata.name: task for task in rest}
        return [by_name[n] for n in names]
    if benchmark == QUICKSTART_BENCHMARK:
        if not local_dataset:
            raise ConfigError(f"benchmark '{benchmark}' needs config key 'evaluation.local_dataset'")
        from pairrel.evaluate.local_tasks import local_tasks

        available = local_tasks(local_dataset, instruction=local_instruction)
    else:
        import mteb

        available = list(mteb.get_benchmark(benchmark).tasks)
    by_name = {task.metadata.name: task for task in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"--tasks: not in {benchmark}: {', '.join(unknown)}")
    return [by_name[n] for n in names]


def heldout_tasks(study: Study, run: Run | None) -> list:
    """One reranking task per held-out fold: the run's own, or (base models) every fold.

    The fold's test queries come from the ``.folds.json`` written when the source was prepared,
    so evaluation sees exactly the queries training left out.
    """
    from pairrel.evaluate.local_tasks import heldout_task

    tasks = []
    for data, source, fold in study.eval_plan.heldout_parts(run):
        spec = study.cfg["data"][data]["sources"][source]
        split = read_json(study.folds_file(data, source, fold))
        test_ids = next(f["test"] for f in split["folds"] if int(f["fold"]) == fold)
        tasks.append(heldout_task(spec["dataset"], test_ids, source, fold, spec["instruction"]))
    return tasks


def read_json(path: Path) -> Any:
    """A JSON file; a missing or corrupt file is an error naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (prepare the data first: snakemake data)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def data_fingerprint(task) -> str | None:
    """Fingerprint of the user's files a task reads (None for hub tasks): local ir_datasets
    folders are hashed file by file."""
    own = getattr(task, "data_fingerprint", None)
    if own:
        return own() if callable(own) else str(own)
    dataset_id = getattr(task, "dataset_id", None)
    if dataset_id is None:
        return None
    from pairrel.data.registry import local_dataset_files, local_dir

    root = local_dir(dataset_id)
    if root is None:
        return None
    parts = [f"{path.name}:{file_sha256(path)}" for path in local_dataset_files(root)]
    return sha256_text("\n".join(parts))[:16]


def drop_stale_results(tasks: list, cache_dir: Path, name: str, revision: str) -> list[str]:
    """Delete cached results of tasks whose data changed since they were computed.

    Each user-data task's metadata revision is set to its data fingerprint (mteb records it in
    the result file as ``dataset_revision``); a cached result with another revision is removed so
    that ``only-missing`` recomputes it, and so is a cached result that cannot be read (mteb
    writes its files in place, so a killed job can leave one truncated). Returns the names of the
    removed results.
    """
    folder = layout.result_folder(cache_dir, name, revision)
    removed = []
    for task in tasks:
        fingerprint = data_fingerprint(task)
        if fingerprint is not None:
            task.metadata.dataset["revision"] = fingerprint
        cached = folder / f"{task.metadata.name}.json"
        if not cached.is_file():
            continue
        try:
            recorded = json.loads(cached.read_text(encoding="utf-8")).get("dataset_revision")
            stale = fingerprint is not None and recorded != fingerprint
        except (ValueError, UnicodeDecodeError, AttributeError):
            stale = True  # a truncated cache file (mteb writes it in place) is never trusted
        if stale:
            print(f"{cached}: computed on other data, or unreadable; evaluating the task again", file=sys.stderr)
            cached.unlink()
            removed.append(task.metadata.name)
    return removed


def _select(study: Study, run: Run | None, group: str, names: list[str] | None, final: bool) -> list:
    if group == HELDOUT_GROUP:
        tasks = heldout_tasks(study, run)
    else:
        wanted = names if names is not None else study.eval_plan.tasks_for(group, final)
        ev = study.evaluation
        tasks = benchmark_tasks(ev["benchmark"], wanted, ev["local_dataset"], ev["local_instruction"],
                                ev["local_tasks"], study.root)
    if not tasks:
        raise ConfigError(f"evaluation group '{group}' selects no task for "
                          f"{run.id if run else 'the base model'} (config key 'evaluation.task_groups')")
    return tasks


def evaluate_study_model(study: Study, group: str, *, run: Run | None = None, step: int | None = None,
                         model: str | None = None, tasks: list[str] | None = None,
                         marker: Path | None = None, out: Path | None = None) -> dict[str, float]:
    """Evaluate a checkpoint (``run`` and ``step``) or a base model (``model``) of a study.

    Writes the mteb results into the study's cache and, with ``marker``, a JSON record of the
    job (mteb name, revision, tasks, scores) that the report reads to know which scores are
    current. Returns ``{task: main score}`` on mteb's 0–1 scale.
    """
    from pairrel.encoder import EncoderConfig, build_encoder

    if run is not None:
        if step not in run.steps:
            raise ConfigError(f"--step {step}: {run.id} writes checkpoints at steps {run.steps}")
        model = run.model
        checkpoint = run.checkpoint(step)
        verify_checkpoint(checkpoint)  # altered or truncated weights are never scored
        name, revision = run.mteb_name(step), checkpoint_revision(checkpoint, study.evaluated_model(model))
        final = run.full_benchmark(step)
    else:
        if model not in study.cfg["models"]:
            raise ConfigError(f"--base '{model}' is not defined under 'models' ({', '.join(study.cfg['models'])})")
        checkpoint, final = None, True
        name, revision = layout.base_model_name(model), base_revision(study.evaluated_model(model))
    task_objects = _select(study, run, group, tasks, final)
    threads = study.cfg["training"]["num_threads"]
    if threads:
        torch.set_num_threads(int(threads))
    encoder = build_encoder(EncoderConfig.from_dict(study.cfg["models"][model]), adapter=checkpoint)
    if torch.cuda.is_available():
        encoder.to("cuda")
    cache = out or study.mteb_cache
    if marker is not None:
        for damaged in damaged_results(marker):  # altered since the last job: computed again
            print(f"{damaged}: differs from what {marker} recorded; evaluating it again", file=sys.stderr)
            damaged.unlink(missing_ok=True)
    drop_stale_results(task_objects, cache, name, revision)
    ev = study.evaluation
    scores = evaluate(encoder, task_objects, cache, name, revision, None, ev["batch_size"], ev["max_batch_tokens"],
                      study.embeddings_dir, ev["keep_shards"], protocol_for(ev, encoder.config.kind))
    if marker is not None:
        record = {"model": name, "revision": revision, "run": run.id if run else None, "step": step,
                  "group": group, "tasks": sorted(scores), "scores": scores,
                  RECORD_KEY: result_stamps(cache, name, revision, sorted(scores))}
        atomic_write_text(marker, json.dumps(record, indent=2) + "\n")
    return scores


def evaluate_any_model(study: Study, path_or_id: str, group: str, tasks: list[str] | None,
                       out: Path | None = None) -> dict[str, float]:
    """Evaluate an encoder that is no run of the study (``pairrel evaluate --model``) on the
    study's tasks of ``group``, or on ``tasks`` by name (MTEB tasks, the study's own tasks).

    A merged pairrel export is evaluated as pairrel evaluates its checkpoints (same pooling and
    per-task instructions), under the mteb name ``pairrel-export/<folder>`` and a revision that
    fingerprints its files; anything else goes to ``mteb.evaluate`` as a SentenceTransformer.
    """
    import mteb

    from pairrel.export import encoder_from_path

    task_objects = _select(study, None, group, tasks, final=True)
    model = encoder_from_path(path_or_id)
    cache = Path(out or study.mteb_cache)
    if isinstance(model, Encoder):
        folder = Path(path_or_id)
        weights = sorted(p for p in folder.glob("*.safetensors")) + [folder / "pairrel_export.json"]
        revision = sha256_text("".join(file_sha256(p) for p in weights if p.is_file()))[:12]
        name = f"pairrel-export/{folder.resolve().name}"
        protocol = protocol_for(study.evaluation, model.config.kind)
        revision = sha256_text(revision + canonical_json(protocol.identity()))[:12]
        drop_stale_results(task_objects, cache, name, revision)
        return evaluate(model, task_objects, cache, name, revision, None, study.evaluation["batch_size"],
                        protocol=protocol)
    results = mteb.evaluate(model, task_objects, cache=mteb.ResultCache(str(cache)), overwrite_strategy="only-missing")
    return {r.task_name: float(r.get_score()) for r in results.task_results}


def evaluate(encoder: Encoder, tasks: list, cache_dir, name: str, revision: str, experiment_kwargs: dict | None,
             batch_size: int | None = 64, max_batch_tokens: int | None = None, shards_root: Path | None = None,
             keep_shards: bool = False, protocol: Protocol | None = None) -> dict[str, float]:
    """Run ``mteb.evaluate`` and return ``{task: main score}`` (on mteb's 0–1 scale).

    With ``shards_root``, embeddings are written to disk in shards as they are computed
    (:class:`pairrel.evaluate.shards.ShardStore`, keyed by the model's name and revision): a job
    killed mid-corpus resumes from them, and a corpus shared by two tasks is encoded once.
    """
    from pairrel.evaluate.model import evaluate_model
    from pairrel.evaluate.shards import ShardStore

    shards = ShardStore(shards_root, f"{name}@{revision}", keep=keep_shards) if shards_root is not None else None
    model = mteb_model(encoder, name, revision, experiment_kwargs, batch_size, max_batch_tokens, shards, protocol)
    return evaluate_model(model, tasks, cache_dir)
