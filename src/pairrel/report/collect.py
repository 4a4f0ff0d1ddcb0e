"""Read MTEB result folders into one tidy table of main scores.

Layouts read (mteb's ``ResultCache`` and the public ``embeddings-benchmark/results`` repo):

    <DIR>/results/<org>__<model>/<revision>/<Task>.json                     base model
    <DIR>/results/<org>__<model>/<revision>/experiments/<kwargs>/<Task>.json  a grid run
    …/model_meta.json   beside the task files: ``name``, ``revision``, ``experiment_kwargs``

``--results`` may name the folder holding ``results/``, ``results/`` itself, a harness
experiment folder (``results/{experiment}`` holding ``mteb/results``), a model folder, a
revision folder or one experiment folder. Training run folders (``run.yaml``, ``checkpoint-*``)
are skipped. Identity comes from ``model_meta.json`` when present, else from the path.

Given the :class:`pairrel.study.Study` whose cache is read, a result of one of its checkpoints
(mteb model ``pairrel/<run slug>.step-<N>``) is mapped back to its run: model key, grid values
and step; a result whose revision is not the checkpoint's current one (weights retrained since,
or a base model whose config changed) is stale and left out with a warning.

The tidy table has one row per (model, revision, experiment, benchmark task): ``label``,
``model``, ``revision``, ``experiment``, the grid values (``experiment_kwargs``), ``task``,
``type``, ``score`` (0-100).

Which tasks make the table (:func:`collect`): a named benchmark's (``--benchmark``, or the
study's ``evaluation.benchmark``), or, with neither, *the tasks found* (:func:`found_specs`;
named MTEB(eng, v1) when they are exactly its tasks):
every task some result file holds, scored as its benchmark or mteb task says, or as pairrel's
own local tasks are, or by its file's metrics (:func:`pairrel.report.scores.infer_task_spec`).
Tasks outside a named benchmark that can be scored (the study's ``evaluation.local_tasks``; any
scorable task when no study is given) are *own tasks*: kept in ``own_scores``, shown in a
section of their own and never part of the benchmark's averages.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pairrel import layout
from pairrel.evaluate.task_specs import HELDOUT_PREFIX
from pairrel.report.scores import (
    ResultFile,
    ResultFileError,
    TaskSpec,
    benchmark_specs,
    duplicate_conflict,
    infer_task_spec,
    mteb_task_spec,
    parse_result,
)

# The benchmark name of a table built from the tasks found (no --benchmark, no study).
FOUND_BENCHMARK = "tasks found"
# Found tasks are looked up in this benchmark first (main score, split, aggregates).
FOUND_LOOKUP_BENCHMARK = "MTEB(eng, v1)"

# Checkpoints hold large non-result JSON (tokenizers); hidden folders hold caches.
_SKIP_DIR = re.compile(r"^(checkpoint-.*|\..*|__pycache__)$")
_REVISION_LIKE = re.compile(r"^([0-9a-f]{7,40}|no_revision_available|external|main|latest)$")
# Grid keys first in this order, the rest alphabetically, seed and step last.
_GRID_ORDER_FIRST = ("model", "data", "loss", "labels")
_GRID_ORDER_LAST = ("seed", "step")
# Table columns that a grid key must not shadow; such a key becomes ``grid_<key>``.
RESERVED_COLUMNS = {"label", "model", "revision", "experiment", "task", "type", "score",
                    "n_tasks", "missing", "source"}


@dataclass
class RowSource:
    """All result files of one (model, revision, experiment)."""

    model: str
    revision: str
    experiment: str
    grid: dict[str, object]
    files: dict[str, ResultFile] = field(default_factory=dict)


@dataclass
class Collection:
    """What ``collect`` read: tidy scores plus everything a reader must be told about."""

    benchmark: str
    specs: dict[str, TaskSpec]
    scores: pd.DataFrame  # tidy, see module docstring
    rows: pd.DataFrame  # one per label: model, revision, experiment, grid…, n_tasks, missing
    grid_columns: list[str]
    unknown_tasks: dict[str, list[str]]  # label -> task files not in the benchmark
    warnings: list[str]
    # Local tasks outside the benchmark (K-fold held-out queries): same columns as ``scores``,
    # never part of an average.
    extra_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Own tasks outside the benchmark (see the module docstring): same columns as ``scores``.
    own_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    own_specs: dict[str, TaskSpec] = field(default_factory=dict)


def _results_roots(path: Path) -> list[Path]:
    """Where to start walking for ``path`` (forgiving about which level the user named)."""
    if not path.exists():
        raise FileNotFoundError(f"--results {path}: no such file or directory")
    if path.is_file():
        return [path]
    for candidate in (path / layout.CACHE_RESULTS, path / layout.MTEB_CACHE / layout.CACHE_RESULTS):
        if candidate.is_dir():
            return [candidate]
    return [path]


def _walk_json(root: Path) -> list[Path]:
    """Every ``*.json`` under root except in training-run, checkpoint and hidden folders."""
    if root.is_file():
        return [root]
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if layout.RUN_CONFIG in files or layout.METRICS in files:
            dirs[:] = []  # a training run folder, never results
            continue
        dirs[:] = sorted(d for d in dirs if not _SKIP_DIR.match(d))
        found.extend(Path(folder) / f for f in sorted(files) if f.endswith(".json"))
    return found


def _scalar(value: object) -> object:
    """Grid values as table cells: scalars as they are, containers as compact JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _identity(folder: Path, meta_cache: dict[Path, dict | None]) -> tuple[str, str, str, dict]:
    """(model, revision, experiment, grid) of a folder holding task files."""
    if folder not in meta_cache:
        meta_path = folder / "model_meta.json"
        meta = None
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ResultFileError(
                    f"{meta_path}: corrupt JSON at line {err.lineno}: {err.msg}"
                ) from err
            if not isinstance(meta, dict):
                raise ResultFileError(f"{meta_path}: not a JSON object")
        meta_cache[folder] = meta
    meta = meta_cache[folder]
    in_experiments = folder.parent.name == "experiments"
    if in_experiments:
        revision_dir = folder.parent.parent
        path_model = layout.model_name_of_cache_folder(revision_dir.parent.name)
        path_revision = revision_dir.name
        experiment = folder.name
    elif _REVISION_LIKE.match(folder.name) or (meta and "name" in meta) or (
            folder.parent.name != layout.CACHE_RESULTS and layout.CACHE_NAME_SEPARATOR not in folder.name):
        path_model = layout.model_name_of_cache_folder(folder.parent.name)
        path_revision = folder.name
        experiment = ""
    else:  # old layout without revision folders: results/<model>/<Task>.json
        path_model = layout.model_name_of_cache_folder(folder.name)
        path_revision = "no_revision_available"
        experiment = ""
    meta = meta or {}
    kwargs = meta.get("experiment_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ResultFileError(f"{folder / 'model_meta.json'}: experiment_kwargs is not an object")
    grid = {str(k): _scalar(v) for k, v in kwargs.items()}
    if kwargs and not experiment:
        experiment = "__".join(f"{k}_{v}" for k, v in sorted(grid.items()))
    model = str(meta.get("name") or path_model)
    revision = str(meta.get("revision") or path_revision)
    return model, revision, experiment, grid


def _study_identity(study, model: str, revision: str, stale: set[str]) -> tuple | None:
    """(model, revision, experiment, grid) of a result of ``study``'s own models; None when the
    result is stale; the identity unchanged for results of other models."""
    run, model_key, step = study.identify(model)
    if model_key is None:
        return model, revision, None, None
    current = study.current_revision(run, model_key, step)
    if current is not None and revision != current:
        stale.add(f"{model} at revision {revision} (current: {current})")
        return None
    if run is None:
        return layout.base_model_name(model_key), "base", "", {}
    grid = {k: v for k, v in run.grid.items() if k != "model"} | {"step": step}
    return layout.base_model_name(model_key), "lora", f"{run.slug}.step-{step}", grid


def read_sources(
    paths: list[Path], skip_bad: bool = False, warnings: list[str] | None = None, study=None,
) -> list[RowSource]:
    """Read every result file under ``paths``, grouped by (model, revision, experiment).

    A corrupt or truncated file raises ResultFileError naming it; with ``skip_bad`` it is
    skipped and named in ``warnings``. Valid JSON that is no MTEB result is ignored.
    """
    warnings = warnings if warnings is not None else []
    json_files: list[Path] = []
    for path in paths:
        for root in _results_roots(Path(path)):
            json_files.extend(_walk_json(root))
    seen: set[Path] = set()
    stale: set[str] = set()
    sources: dict[tuple[str, str, str], RowSource] = {}
    meta_cache: dict[Path, dict | None] = {}
    for file in tqdm(json_files, desc="reading results", unit="file", file=sys.stderr,
                     disable=len(json_files) < 200):
        if file.name == "model_meta.json":
            continue
        resolved = file.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            text = file.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ResultFileError(
                    f"{file}: corrupt or truncated JSON at line {err.lineno}, "
                    f"column {err.colno}: {err.msg}"
                ) from err
            if not isinstance(data, dict) or not ({"scores", "mteb_dataset_name"} & set(data)):
                continue  # some other JSON (a config, an index): not a result
            result = parse_result(data, file)
            model, revision, experiment, grid = _identity(file.parent, meta_cache)
            if study is not None:
                mapped = _study_identity(study, model, revision, stale)
                if mapped is None:
                    continue
                model, revision = mapped[0], mapped[1]
                if mapped[2] is not None:
                    experiment, grid = mapped[2], mapped[3]
        except (ResultFileError, OSError, UnicodeDecodeError) as err:
            if not skip_bad:
                raise ResultFileError(
                    f"{err}\n(pass --skip-bad to skip unreadable result files with a warning)"
                ) from err
            warnings.append(f"skipped unreadable result file: {err}")
            continue
        key = (model, revision, experiment)
        source = sources.setdefault(key, RowSource(model, revision, experiment, grid))
        if result.task_name in source.files:
            conflict = duplicate_conflict(source.files[result.task_name], result)
            if conflict is None:
                continue  # the same scores twice (e.g. the same cache named twice): fine
            if not skip_bad:
                raise ResultFileError(conflict + "\n(keep one of the files, or pass --skip-bad to keep the first)")
            warnings.append(f"conflicting duplicate, kept the first: {conflict}")
            continue
        source.files[result.task_name] = result
    warnings.extend(f"stale results left out (not the current weights or config): {s}" for s in sorted(stale))
    return list(sources.values())


def order_grid_columns(keys) -> list[str]:
    """Grid columns in reading order: model, data, loss, labels, others A-Z, seed, step."""
    keys = set(keys)
    first = [k for k in _GRID_ORDER_FIRST if k in keys]
    last = [k for k in _GRID_ORDER_LAST if k in keys]
    middle = sorted(keys - set(first) - set(last))
    return first + middle + last


def grid_column(key: str) -> str:
    """Column name of grid key ``key`` (``model`` -> ``grid_model``: ``model`` is the label)."""
    return f"grid_{key}" if key in RESERVED_COLUMNS else key


def row_label(source: RowSource, label_keys: list[str]) -> str:
    """``minilm (loss=bce, labels=binary@2, seed=42, step=60)``; base models by short name."""
    base = str(source.grid.get("model") or source.model.rsplit("/", 1)[-1])
    parts = [f"{k}={source.grid[k]}" for k in label_keys if k != "model" and k in source.grid]
    return f"{base} ({', '.join(parts)})" if parts else base


def _task_score(source: RowSource, spec: TaskSpec, warnings: list[str]) -> tuple[float | None, str]:
    """(score on 0-100 or None, why missing) for one benchmark task."""
    result = source.files.get(spec.name)
    if result is not None:
        try:
            score, note = result.main_score(spec)
        except KeyError as err:
            warnings.append(f"counted as missing: {err.args[0]}")
            return None, spec.name
        if note:
            warnings.append(note)
        return score, ""
    if spec.components:
        have = [c for c in spec.components if c.name in source.files]
        if len(have) == len(spec.components):
            parts = [_task_score(source, c, warnings)[0] for c in spec.components]
            if all(p is not None for p in parts):
                return sum(parts) / len(parts), ""
        if have:
            return None, f"{spec.name} ({len(have)} of {len(spec.components)} sub-tasks)"
    return None, spec.name


def _with_object_grid(frame: pd.DataFrame, records: list[dict], grid_columns: list[str]
                      ) -> pd.DataFrame:
    """Grid columns as given (object dtype, None when absent): a seed stays 42, not 42.0."""
    for column in grid_columns:
        frame[column] = pd.Series([r.get(column) for r in records], index=frame.index,
                                  dtype=object)
    return frame


def _unique_labels(sources: list[RowSource], grid_keys: list[str]) -> list[str]:
    """Readable, unique row labels: short model name plus the grid values that vary.

    A model with several revisions gets ``@<revision[:8]>``; labels still equal then use
    every grid key, and a last resort numbers the duplicates (``#2``).
    """
    runs = [s for s in sources if s.grid]  # base models (no grid) do not make keys "vary"
    varying = [k for k in grid_keys if len({str(s.grid.get(k)) for s in runs}) > 1]
    revisions: dict[str, set[str]] = {}
    for s in sources:
        revisions.setdefault(s.model, set()).add(s.revision)

    def build(keys: list[str]) -> list[str]:
        return [row_label(s, keys) + (f" @{s.revision[:8]}" if len(revisions[s.model]) > 1
                                      else "") for s in sources]

    labels = build(varying or grid_keys)
    if len(set(labels)) < len(labels):
        labels = build(grid_keys)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


def collect(
    paths: list[Path], benchmark: str | None = None, skip_bad: bool = False,
    tasks: list[str] | None = None, study=None,
) -> Collection:
    """Read result folders and score every (model, revision, experiment) on a benchmark:
    ``benchmark``, else the study's, else the tasks found (see the module docstring).

    ``tasks`` restricts the benchmark to a subset (e.g. LLM2Vec's 15-task ablation set): the
    averages are then over that subset, and the benchmark is named ``NAME[subset of N]``; own
    tasks may be named too, and when only own tasks are, they make the table.
    """
    local_tasks = study.evaluation["local_tasks"] if study is not None else []
    if benchmark is None and study is not None:
        benchmark = study.evaluation["benchmark"]
    if benchmark is not None:
        name, specs = benchmark_specs(benchmark)  # an unknown name fails before any file is read
    warnings: list[str] = []
    sources = read_sources(paths, skip_bad=skip_bad, warnings=warnings, study=study)
    if benchmark is None:
        specs = found_specs(sources, local_tasks)
        # every task of MTEB(eng, v1) and nothing else: that benchmark (its published rows fit)
        name = FOUND_LOOKUP_BENCHMARK if specs == benchmark_specs(FOUND_LOOKUP_BENCHMARK)[1] else FOUND_BENCHMARK
    own_specs = _own_specs(sources, specs, local_tasks, infer=study is None)
    if tasks:
        unknown = sorted(set(tasks) - specs.keys() - own_specs.keys())
        if unknown:
            raise ValueError(f"--tasks: not in {name} nor among the results' own tasks: {', '.join(unknown)}")
        n_specs = len(specs)
        specs = {task: spec for task, spec in specs.items() if task in set(tasks)}
        own_specs = {task: spec for task, spec in own_specs.items() if task in set(tasks)}
        if len(specs) < n_specs:
            name = f"{name}[subset of {len(specs)}]"
        if not specs:  # only own tasks asked for: they are the table
            name, specs, own_specs = FOUND_BENCHMARK, own_specs, {}
    grid_keys = order_grid_columns({k for s in sources for k in s.grid})
    grid_columns = [grid_column(k) for k in grid_keys]
    labels = _unique_labels(sources, grid_keys)

    from pairrel.evaluate.task_specs import local_task_spec

    component_names = {c.name for spec in specs.values() for c in spec.components}
    score_rows, row_rows, extra_rows, own_rows, unknown = [], [], [], [], {}
    for label, s in zip(labels, sources):
        grid = {grid_column(k): v for k, v in s.grid.items()}
        present = 0
        missing = []
        for spec in specs.values():
            score, why = _task_score(s, spec, warnings)
            if score is None:
                missing.append(why)
                continue
            present += 1
            score_rows.append({"label": label, "model": s.model, "revision": s.revision,
                               "experiment": s.experiment, **grid,
                               "task": spec.name, "type": spec.type, "score": score})
        extra = sorted(t for t in s.files if t not in specs and t not in component_names)
        for task in [t for t in extra if local_task_spec(t)]:
            spec = TaskSpec(name=task, **local_task_spec(task))
            score, _ = _task_score(s, spec, warnings)
            if score is not None:
                extra_rows.append({"label": label, "model": s.model, "revision": s.revision,
                                   "experiment": s.experiment, **grid,
                                   "task": task, "type": spec.type, "score": score})
        for task in [t for t in extra if t in own_specs]:
            score, _ = _task_score(s, own_specs[task], warnings)
            if score is not None:
                own_rows.append({"label": label, "model": s.model, "revision": s.revision,
                                 "experiment": s.experiment, **grid,
                                 "task": task, "type": own_specs[task].type, "score": score})
        extra = [t for t in extra if not local_task_spec(t) and t not in own_specs
                 and not (tasks and t in set(tasks))]
        if extra:
            unknown[label] = extra
        row_rows.append({"label": label, "model": s.model, "revision": s.revision,
                         "experiment": s.experiment, **grid, "n_tasks": present,
                         "missing": missing})
    base_cols = ["label", "model", "revision", "experiment", *grid_columns]
    score_frame = pd.DataFrame(score_rows, columns=[*base_cols, "task", "type", "score"])
    scores = _with_object_grid(score_frame, score_rows, grid_columns)
    rows = _with_object_grid(pd.DataFrame(row_rows, columns=[*base_cols, "n_tasks", "missing"]),
                             row_rows, grid_columns)
    extras = _with_object_grid(pd.DataFrame(extra_rows, columns=[*base_cols, "task", "type", "score"]),
                               extra_rows, grid_columns)
    own = _with_object_grid(pd.DataFrame(own_rows, columns=[*base_cols, "task", "type", "score"]),
                            own_rows, grid_columns)
    return Collection(name, specs, scores, rows, grid_columns, unknown, warnings, extras, own,
                      own_specs)


def _first_files(sources: list[RowSource]) -> dict[str, ResultFile]:
    """Task name -> the first result file read for it (the tasks present, in reading order)."""
    files: dict[str, ResultFile] = {}
    for source in sources:
        for task, result in source.files.items():
            files.setdefault(task, result)
    return files


def found_specs(sources: list[RowSource], local_tasks: list[dict] | None = None) -> dict[str, TaskSpec]:
    """How to score every task present (held-out folds aside: they have a table of their own).

    Looked up, in order: pairrel's local tasks (the quickstart's, ``local_tasks``),
    MTEB(eng, v1) (whose aggregate CQADupstackRetrieval stands for its sub-task files), any
    other mteb task by name, and last the file's own metrics (:func:`infer_task_spec`). A task
    none of these can score is left out (listed as unknown by :func:`collect`).
    """
    from pairrel.evaluate.task_specs import QUICKSTART_TASK_SPECS, local_task_spec

    files = _first_files(sources)
    _, lookup = benchmark_specs(FOUND_LOOKUP_BENCHMARK)
    part_of = {c.name: spec for spec in lookup.values() for c in spec.components}
    specs: dict[str, TaskSpec] = {}
    for task in sorted(files, key=str.lower):
        if task.startswith(HELDOUT_PREFIX):
            continue
        local = QUICKSTART_TASK_SPECS.get(task) or local_task_spec(task, local_tasks)
        if local:
            spec = TaskSpec(name=task, **local)
        elif task in part_of:
            spec = part_of[task]
        else:
            spec = lookup.get(task) or mteb_task_spec(task) or infer_task_spec(files[task])
        if spec is not None:
            specs[spec.name] = spec
    return specs


def _own_specs(sources: list[RowSource], specs: dict[str, TaskSpec], local_tasks: list[dict],
               infer: bool) -> dict[str, TaskSpec]:
    """Tasks present outside ``specs`` that can be scored: the study's ``local_tasks``, and
    with ``infer`` (no study given) any task whose file says how (:func:`infer_task_spec`)."""
    from pairrel.evaluate.task_specs import local_task_spec

    inside = set(specs) | {c.name for spec in specs.values() for c in spec.components}
    own: dict[str, TaskSpec] = {}
    for task, result in sorted(_first_files(sources).items(), key=lambda kv: kv[0].lower()):
        if task in inside or task.startswith(HELDOUT_PREFIX):
            continue
        local = local_task_spec(task, local_tasks)
        spec = TaskSpec(name=task, **local) if local else (infer_task_spec(result) if infer else None)
        if spec is not None:
            own[task] = spec
    return own
