"""Main-score extraction from MTEB result files of every format generation.

A benchmark table needs one number per (model, task): the task's *main score* on the split and
subset the leaderboard uses, on a 0-100 scale. Result files written over the years differ in
four ways, all handled here (sources: mteb's ``TaskResult._convert_from_before_v1_11_0``, the
public ``embeddings-benchmark/results`` repository, and the published folder in
``/work/shared/data/mteb-results``):

* layout: mteb < 1.11 files put splits at the top level (``{"mteb_dataset_name": …, "test":
  {metrics}}`` or ``{"test": {"en": {metrics}}}``); mteb >= 1.11 files hold
  ``{"task_name": …, "scores": {"test": [{"hf_subset": "en", metrics…}]}}``;
* nesting: ``{"cos_sim": {"spearman": x}}`` in old STS/pair-classification files is flattened
  to ``cos_sim_spearman``;
* key names: ``cos_sim_*`` (mteb < 1.12) is ``cosine_*`` now; reranking's ``map`` is
  ``map_at_1000`` in mteb 2; MindSmallReranking's ``max_over_subqueries_map_at_1000`` was
  ``map``; ``max_ap`` was ``max: {ap}``;
* values: some exports store ``[value, 0.0]`` (value, std) lists; some files are on a 0-1
  scale and some on 0-100. The scale is decided *per file*: a file is on the 0-100 scale when
  any bounded metric (accuracy, AP, F1, nDCG, MAP, MRR, recall, precision, V-measure,
  Pearson/Spearman correlation, ``main_score``) exceeds 1 in absolute value; such metrics
  cannot exceed 1 on the 0-1 scale, and a 0-100 file with every metric below 1 % does not occur
  in practice (recall@1000 alone is far higher).

Aggregate tasks (CQADupstackRetrieval) score the mean of their sub-tasks' main scores, each
normalised to 0-100 first; the aggregate's own file is used when present (the published
leaderboard averages read ``CQADupstackRetrieval`` and it equals the mean of the 12 subforums).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

# Task types in the column order of the published MTEB(eng, v1) tables.
TASK_TYPE_ORDER = (
    "Classification",
    "Clustering",
    "PairClassification",
    "Reranking",
    "Retrieval",
    "STS",
    "Summarization",
)

# Sub-dicts of pre-1.11 files that are metric groups, not hf_subsets (mteb's own list).
_METRIC_GROUPS = {"cos_sim", "cosine", "euclidean", "manhattan", "dot", "max", "similarity"}
_NON_METRIC_KEYS = {"hf_subset", "languages", "evaluation_time", "mteb_version", "v_measures"}
_BOUNDED_METRIC = re.compile(
    r"(^|_)(accuracy|f1|ap|precision|recall|ndcg|map|mrr|v_measure|spearman|pearson|main_score)"
    r"($|_)"
)


class ResultFileError(ValueError):
    """A result file that cannot be read (corrupt, truncated, or not an MTEB result)."""


@dataclass(frozen=True)
class TaskSpec:
    """How one task is scored in a benchmark table.

    ``components`` lists the sub-tasks of an aggregate task (CQADupstackRetrieval): its score
    is the mean of theirs when the aggregate's own file is absent.
    """

    name: str
    type: str
    main_score: str
    split: str
    subset: str
    components: tuple["TaskSpec", ...] = field(default=())


@dataclass
class ResultFile:
    """One parsed result file: ``scores[split][subset]`` is a flat ``{metric: float}`` dict."""

    path: Path
    task_name: str
    scores: dict[str, dict[str, dict[str, float]]]
    scale: float  # 1.0 (0-1 file) or 100.0 (0-100 file); multiply by 100/scale for 0-100

    def main_score(self, spec: TaskSpec) -> tuple[float, str | None]:
        """The spec's main score on 0-100, and a warning when a fallback was needed.

        Raises KeyError (naming the file) when the split, subset or metric is absent.
        """
        if spec.split not in self.scores:
            raise KeyError(
                f"{self.path}: split {spec.split!r} missing (has {sorted(self.scores)})"
            )
        subsets = self.scores[spec.split]
        warning = None
        if spec.subset in subsets:
            metrics = subsets[spec.subset]
        elif len(subsets) == 1:
            # Files written before hf_subsets existed hold one unnamed subset ("default").
            (only,) = subsets
            metrics = subsets[only]
            if only != "default":
                warning = (f"{self.path}: subset {spec.subset!r} absent; "
                           f"used its only subset {only!r}")
        else:
            raise KeyError(
                f"{self.path}: subset {spec.subset!r} missing in split {spec.split!r} "
                f"(has {sorted(subsets)})"
            )
        factor = 100.0 / self.scale
        for key in metric_aliases(spec.main_score):
            if key in metrics:
                return metrics[key] * factor, warning
        derived = _max_over_similarities(spec.main_score, metrics)
        if derived is not None:
            return derived * factor, warning
        if "main_score" in metrics:  # last resort, said out loud in the notes
            return metrics["main_score"] * factor, (
                f"{self.path}: no {spec.main_score!r} key; used the file's main_score")
        raise KeyError(
            f"{self.path}: main score {spec.main_score!r} (or an alias "
            f"{metric_aliases(spec.main_score)[1:]}) missing in {spec.split}/{spec.subset}"
        )


def metric_aliases(metric: str) -> tuple[str, ...]:
    """Keys that hold ``metric`` in some file generation, preferred first.

    >>> metric_aliases("cosine_spearman")
    ('cosine_spearman', 'cos_sim_spearman')
    >>> metric_aliases("max_over_subqueries_map_at_1000")
    ('max_over_subqueries_map_at_1000', 'map_at_1000', 'map')
    """
    names = [metric]
    if metric.startswith("max_over_subqueries_"):
        names.append(metric.removeprefix("max_over_subqueries_"))
    for name in list(names):
        if name == "map_at_1000":
            names.append("map")
        elif name == "map":
            names.append("map_at_1000")
        if name.startswith("cosine_"):
            names.append("cos_sim_" + name.removeprefix("cosine_"))
        elif name.startswith("cos_sim_"):
            names.append("cosine_" + name.removeprefix("cos_sim_"))
    return tuple(dict.fromkeys(names))


_SIMILARITY_PREFIXES = ("cosine", "cos_sim", "euclidean", "manhattan", "dot", "similarity")


def _max_over_similarities(metric: str, metrics: dict[str, float]) -> float | None:
    """``max_ap`` (etc.) of files that store only per-similarity values: their maximum.

    This is mteb's definition of the ``max_*`` pair-classification scores.
    """
    if not metric.startswith("max_") or metric.startswith("max_over_"):
        return None
    stat = metric.removeprefix("max_")
    values = [metrics[f"{p}_{stat}"] for p in _SIMILARITY_PREFIXES if f"{p}_{stat}" in metrics]
    return max(values) if values else None


def _as_number(value) -> float | None:
    """A metric value as float: numbers, or the first of a ``[value, std]`` list."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and 1 <= len(value) <= 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return float(value[0])
    return None


def _flatten_metrics(entry: dict, prefix: str = "") -> dict[str, float]:
    """Flatten ``{"cos_sim": {"spearman": x}}`` into ``{"cos_sim_spearman": x}``; keep numbers."""
    flat: dict[str, float] = {}
    for key, value in entry.items():
        if key in _NON_METRIC_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_metrics(value, prefix=f"{name}_"))
            continue
        number = _as_number(value)
        if number is not None and not math.isnan(number):
            flat[name] = number
    return flat


def _old_split_subsets(split_scores: dict) -> dict[str, dict[str, float]]:
    """A pre-1.11 split dict as ``{subset: metrics}``.

    mteb's rule: a dict value that is no metric group (cos_sim, max, …) is a subset.
    """
    has_subsets = any(
        isinstance(v, dict) and k not in _METRIC_GROUPS for k, v in split_scores.items()
    )
    if not has_subsets:
        return {"default": _flatten_metrics(split_scores)}
    return {
        subset: _flatten_metrics(metrics)
        for subset, metrics in split_scores.items()
        if isinstance(metrics, dict) and subset not in _METRIC_GROUPS
    }


def detect_scale(scores: dict[str, dict[str, dict[str, float]]]) -> float:
    """100.0 if any bounded metric of the file exceeds 1 in absolute value, else 1.0."""
    for subsets in scores.values():
        for metrics in subsets.values():
            for key, value in metrics.items():
                # nAUC statistics (mteb's confidence analysis) are not bounded by 1.
                if "threshold" in key or key.startswith("nauc") or not _BOUNDED_METRIC.search(key):
                    continue
                if abs(value) > 1.0 + 1e-9:
                    return 100.0
    return 1.0


def parse_result(data: object, path: Path) -> ResultFile:
    """Normalise one decoded result JSON (any generation) into a ResultFile."""
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: not an MTEB result (top level is {type(data).__name__})")
    scores: dict[str, dict[str, dict[str, float]]] = {}
    if "scores" in data and isinstance(data["scores"], dict):  # mteb >= 1.11
        task_name = data.get("task_name")
        for split, entries in data["scores"].items():
            if not isinstance(entries, list):
                raise ResultFileError(f"{path}: scores[{split!r}] is not a list of subsets")
            for entry in entries:
                if not isinstance(entry, dict):
                    raise ResultFileError(f"{path}: scores[{split!r}] holds a non-object entry")
                subset = entry.get("hf_subset", "default")
                scores.setdefault(split, {})[subset] = _flatten_metrics(entry)
    elif "mteb_dataset_name" in data:  # mteb < 1.11
        task_name = data["mteb_dataset_name"]
        for split, split_scores in data.items():
            if isinstance(split_scores, dict):
                scores[split] = _old_split_subsets(split_scores)
    else:
        raise ResultFileError(
            f"{path}: not an MTEB result (no 'scores' / 'mteb_dataset_name' key)"
        )
    if not isinstance(task_name, str) or not task_name:
        task_name = path.stem
    return ResultFile(path=path, task_name=task_name, scores=scores, scale=detect_scale(scores))


def read_result_file(path: Path) -> ResultFile:
    """Read and normalise one result file; ResultFileError names the file when it is bad."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultFileError(f"{path}: cannot read ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultFileError(
            f"{path}: corrupt or truncated JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    return parse_result(data, Path(path))


def leaderboard_split(eval_splits: list[str]) -> str:
    """The split published tables use: ``test`` when evaluated, else the first (MSMARCO: dev)."""
    return "test" if "test" in eval_splits else eval_splits[0]


def _spec_from_mteb_task(task) -> TaskSpec:
    meta = task.metadata
    components: tuple[TaskSpec, ...] = ()
    if getattr(task, "is_aggregate", False):
        components = tuple(_spec_from_mteb_task(sub) for sub in meta.tasks)
    subsets = list(getattr(task, "hf_subsets", None) or ["default"])
    # A benchmark restricts multilingual tasks to its languages (STS17 -> en-en, STS22 -> en,
    # AmazonCounterfactual -> en); "en-ext" and the like are other subsets, never averaged in.
    subset = subsets[0] if len(subsets) == 1 else ("en" if "en" in subsets else subsets[0])
    return TaskSpec(
        name=meta.name,
        type=meta.type,
        main_score=meta.main_score,
        split=leaderboard_split(list(meta.eval_splits)),
        subset=subset,
        components=components,
    )


@lru_cache(maxsize=8)
def benchmark_specs(benchmark: str) -> tuple[str, dict[str, TaskSpec]]:
    """``(canonical benchmark name, {task name: TaskSpec})`` for a benchmark.

    ``pairrel-quickstart`` reads ``pairrel.evaluate.task_specs.QUICKSTART_TASK_SPECS``; any
    other name goes to ``mteb.get_benchmark`` (offline; task metadata only).
    """
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK, QUICKSTART_TASK_SPECS

    if benchmark == QUICKSTART_BENCHMARK:
        return benchmark, {
            name: TaskSpec(name=name, **spec) for name, spec in QUICKSTART_TASK_SPECS.items()
        }
    import mteb  # slow import (~2.5 s): only when an MTEB benchmark is asked for

    try:
        bench = mteb.get_benchmark(benchmark)
    except Exception as err:  # mteb raises KeyError/ValueError depending on version
        raise ValueError(
            f"unknown benchmark {benchmark!r}: neither {QUICKSTART_BENCHMARK!r} nor an MTEB "
            f"benchmark ({err})"
        ) from err
    specs = {task.metadata.name: _spec_from_mteb_task(task) for task in bench.tasks}
    return bench.name, specs
