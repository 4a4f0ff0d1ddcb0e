"""Main-score extraction from MTEB result files of every format generation.

A benchmark table needs one number per (model, task): the task's *main score* on the split and
subset the leaderboard uses, on a 0-100 scale. Result files written over the years differ in
four ways, all handled here (sources: mteb's ``TaskResult._convert_from_before_v1_11_0``, the
public ``embeddings-benchmark/results`` repository, and the published folder in
``tests/data/mteb-results``):

* layout: mteb < 1.11 files put splits at the top level (``{"mteb_dataset_name": …, "test":
  {metrics}}`` or ``{"test": {"en": {metrics}}}``); mteb >= 1.11 files hold
  ``{"task_name": …, "scores": {"test": [{"hf_subset": "en", metrics…}]}}``;
* nesting: ``{"cos_sim": {"spearman": x}}`` in old STS/pair-classification files is flattened
  to ``cos_sim_spearman``;
* key names: ``cos_sim_*`` (mteb < 1.12) is ``cosine_*`` now; reranking's ``map`` is
  ``map_at_1000`` in mteb 2; MindSmallReranking's ``max_over_subqueries_map_at_1000`` was
  ``map``; ``max_ap`` was ``max: {ap}``;
* values: some exports store ``[value, 0.0]`` (value, std) lists; some files are on a 0-1
  scale and some on 0-100.

Scale and validity (:func:`written_by_mteb`, :func:`detect_scale`, :meth:`ResultFile.main_score`).
A file is on one scale. A file mteb wrote (>= 1.11, with its ``mteb_version``) is on 0-1 by
construction: its values are checked against the 0-1 ranges and no scale is guessed, so a file
whose every metric is 7.5 is refused, not read as 7.5 %. For other files the scale is decided from
its *bounded* metrics (accuracy, AP, F1, nDCG, MAP, MRR, recall,
precision, V-measure, Pearson/Spearman correlation, ``main_score``; not thresholds, timings or
nAUC statistics): the file is on 0-100 when **more than half** of its finite bounded values
exceed 1 in absolute value, else on 0-1. A real 0-100 file has nearly every value above 1 (a
metric below 1 % is rare: precision@1000 at most), a real 0-1 file none; so one impossible
value (a ``cosine_spearman`` of 7.5 in a 0-1 file) cannot flip the file's scale. Each value is
then judged on its own, when it is read: it must be finite, a correlation must lie in
[-S, S] and every other bounded metric in [0, S] (S = 1 or 100, the file's scale). A value that
fails raises :class:`ScoreValueError` naming the file, split, subset and key; bad values in
metrics no table reads (a NaN ``euclidean_pearson`` beside a valid ``cosine_spearman``) do
not reject the file.

Per-query scores. Held-out reranking results (``pairrel.evaluate.heldout``) carry, beside
their metrics, ``per_query: {measure: {query_id: value}}`` in each subset entry; it is kept in
:attr:`ResultFile.per_query`, never flattened into metrics.

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
PER_QUERY_KEY = "per_query"
_NON_METRIC_KEYS = {"hf_subset", "languages", "evaluation_time", "mteb_version", "v_measures",
                    PER_QUERY_KEY}
_BOUNDED_METRIC = re.compile(
    r"(^|_)(accuracy|f1|ap|precision|recall|ndcg|map|mrr|v_measure|spearman|pearson|main_score)"
    r"($|_)"
)
_CORRELATION_METRIC = re.compile(r"(^|_)(spearman|pearson|main_score)($|_)")
# Two files of the same (model, revision, task) agree when every metric they share is equal to
# within this much on the 0-100 scale (re-evaluations on other hardware differ in the last bits).
DUPLICATE_TOLERANCE = 1e-6


class ResultFileError(ValueError):
    """A result file that cannot be read (corrupt, truncated, or not an MTEB result)."""


class ScoreValueError(ResultFileError):
    """A metric value that cannot be a score: non-finite, or outside its range on the file's
    scale. The message names the file, split, subset and key."""


def is_bounded_metric(key: str) -> bool:
    """Whether ``key`` is a metric bounded by 1 on the 0-1 scale (see the module docstring)."""
    return not ("threshold" in key or key.startswith("nauc")) and bool(_BOUNDED_METRIC.search(key))


def metric_range(key: str, scale: float) -> tuple[float, float] | None:
    """The possible values of metric ``key`` on a file of ``scale``; None when unbounded."""
    if not is_bounded_metric(key):
        return None
    return (-scale if _CORRELATION_METRIC.search(key) else 0.0), scale


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
    # per_query[split][subset][measure][query_id]: held-out per-query scores (0-1), if any
    per_query: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)

    def checked(self, split: str, subset: str, key: str) -> float:
        """The value of ``key`` on 0-100, or ScoreValueError when it cannot be a score."""
        value = self.scores[split][subset][key]
        where = f"{self.path}: {split}/{subset} {key} = {value!r}"
        if not math.isfinite(value):
            raise ScoreValueError(f"{where} is not a finite number")
        bounds = metric_range(key, self.scale)
        if bounds is not None and not bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9:
            scale = "0-1" if self.scale == 1.0 else "0-100"
            raise ScoreValueError(
                f"{where} is outside [{bounds[0]:g}, {bounds[1]:g}], impossible on this file's "
                f"{scale} scale (decided from the majority of its bounded metrics)")
        return value * 100.0 / self.scale

    def main_score(self, spec: TaskSpec) -> tuple[float, str | None]:
        """The spec's main score on 0-100, and a warning when a fallback was needed.

        Raises KeyError (naming the file) when the split, subset or metric is absent, and
        ScoreValueError when the value read is non-finite or out of range (see :meth:`checked`).
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
        subset = spec.subset if spec.subset in subsets else next(iter(subsets))
        for key in metric_aliases(spec.main_score):
            if key in metrics:
                return self.checked(spec.split, subset, key), warning
        keys = _similarity_keys(spec.main_score, metrics)
        if keys:  # mteb's max_* scores: the maximum over the similarity functions
            return max(self.checked(spec.split, subset, k) for k in keys), warning
        if "main_score" in metrics:  # last resort, said out loud in the notes
            return self.checked(spec.split, subset, "main_score"), (
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


def _similarity_keys(metric: str, metrics: dict[str, float]) -> list[str]:
    """Keys whose maximum is ``max_ap`` (etc.) in files that store only per-similarity values.

    This is mteb's definition of the ``max_*`` pair-classification scores.
    """
    if not metric.startswith("max_") or metric.startswith("max_over_"):
        return []
    stat = metric.removeprefix("max_")
    return [f"{p}_{stat}" for p in _SIMILARITY_PREFIXES if f"{p}_{stat}" in metrics]


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
        if number is not None:  # non-finite values are kept: reading one is an error
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
    """100.0 when more than half of the file's finite bounded values exceed 1 in absolute
    value, else 1.0 (the module docstring says why)."""
    n_bounded = n_above = 0
    for subsets in scores.values():
        for metrics in subsets.values():
            for key, value in metrics.items():
                # nAUC statistics (mteb's confidence analysis) are not bounded by 1.
                if not is_bounded_metric(key) or not math.isfinite(value):
                    continue
                n_bounded += 1
                n_above += abs(value) > 1.0 + 1e-9
    return 100.0 if 2 * n_above > n_bounded else 1.0


def _per_query(entry: dict, path: Path, where: str) -> dict[str, dict[str, float]]:
    """``entry["per_query"]`` as ``{measure: {query_id: float}}``; finite values in [0, 1]."""
    block = entry.get(PER_QUERY_KEY)
    if block is None:
        return {}
    if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
        raise ResultFileError(f"{path}: {where} per_query is not {{measure: {{query_id: value}}}}")
    out: dict[str, dict[str, float]] = {}
    for measure, values in block.items():
        out[measure] = {}
        for qid, value in values.items():
            number = _as_number(value)
            if number is None or not math.isfinite(number) or not 0.0 <= number <= 1.0:
                raise ScoreValueError(
                    f"{path}: {where} per_query {measure!r} of query {qid!r} = {value!r} is not "
                    "a score in [0, 1]")
            out[measure][str(qid)] = number
    return out


def duplicate_conflict(kept: ResultFile, other: ResultFile,
                       tolerance: float = DUPLICATE_TOLERANCE) -> str | None:
    """None when two files of one (model, revision, task) agree, else why they do not.

    They agree when they share at least one metric and every shared (split, subset, metric)
    is equal to within ``tolerance`` on the 0-100 scale (each file read on its own scale, so a
    0-1 file and its 0-100 export agree). Non-finite values agree only with themselves.
    """
    shared = 0
    for split, subsets in kept.scores.items():
        for subset, metrics in subsets.items():
            theirs = other.scores.get(split, {}).get(subset, {})
            for key in sorted(metrics.keys() & theirs.keys()):
                a = metrics[key] * 100.0 / kept.scale
                b = theirs[key] * 100.0 / other.scale
                shared += 1
                same = (a == b) or (math.isfinite(a) and math.isfinite(b)
                                    and abs(a - b) <= tolerance) or (math.isnan(a) and math.isnan(b))
                if not same:
                    return (f"task {kept.task_name} of one model and revision differs between "
                            f"{kept.path} and {other.path}: {split}/{subset} {key} = "
                            f"{metrics[key]!r} vs {theirs[key]!r}")
    if not shared:
        return (f"task {kept.task_name} of one model and revision: {kept.path} and {other.path} "
                "share no metric, so they cannot be checked against each other")
    return None


def parse_result(data: object, path: Path) -> ResultFile:
    """Normalise one decoded result JSON (any generation) into a ResultFile."""
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: not an MTEB result (top level is {type(data).__name__})")
    scores: dict[str, dict[str, dict[str, float]]] = {}
    per_query: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
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
                queries = _per_query(entry, path, f"{split}/{subset}")
                if queries:
                    per_query.setdefault(split, {})[subset] = queries
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
    scale = 1.0 if written_by_mteb(data) else detect_scale(scores)
    return ResultFile(path=path, task_name=task_name, scores=scores, scale=scale, per_query=per_query)


def written_by_mteb(data: dict) -> bool:
    """Whether a result file was written by mteb itself (>= 1.11, which records its version):
    such a file is on the 0-1 scale by construction, so its values are checked against the 0-1
    ranges and its scale is never guessed. Files converted from leaderboard exports carry no
    version or ``0.0.0``; their scale is guessed (:func:`detect_scale`)."""
    version = data.get("mteb_version")
    if not isinstance(version, str) or "scores" not in data:
        return False
    parts = re.match(r"^(\d+)\.(\d+)", version)
    return bool(parts) and (int(parts[1]), int(parts[2])) >= (1, 11)


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


def _spec(entry: dict) -> TaskSpec:
    return TaskSpec(name=entry["name"], type=entry["type"], main_score=entry["main_score"],
                    split=entry["split"], subset=entry["subset"],
                    components=tuple(_spec(sub) for sub in entry["components"]))


def mteb_task_spec(name: str) -> TaskSpec | None:
    """The spec of mteb's task ``name`` (offline metadata), or None when mteb has no such task."""
    import mteb

    from pairrel.evaluate.benchmark_table import task_entry

    try:
        return _spec(task_entry(mteb.get_task(name)))
    except Exception:  # mteb raises KeyError/ValueError for an unknown name, by version
        return None


def infer_task_spec(result: ResultFile) -> TaskSpec | None:
    """How to score a task no benchmark or mteb knows (a user's task read without its config),
    from the metrics its file holds; None when they do not say.

    On the leaderboard split (:func:`leaderboard_split`), its ``default`` subset (else the
    first): ``cosine_spearman`` -> STS; ``max_ap`` -> PairClassification; ``ndcg_at_10`` ->
    Retrieval, or Reranking when the file's own ``main_score`` is its ``map_at_1000`` and not
    its nDCG@10. The main score is then the type's own (``task_specs.MAIN_SCORES``), as pairrel
    scores a user's tasks of that type.
    """
    from pairrel.evaluate.benchmark_table import leaderboard_split
    from pairrel.evaluate.task_specs import MAIN_SCORES

    if not result.scores:
        return None
    split = leaderboard_split(list(result.scores))
    subsets = result.scores[split]
    if not subsets:
        return None
    subset = "default" if "default" in subsets else next(iter(subsets))
    metrics = subsets[subset]

    def has(metric: str) -> bool:
        return any(key in metrics for key in metric_aliases(metric))

    if has("cosine_spearman"):
        task_type = "STS"
    elif has("max_ap") or _similarity_keys("max_ap", metrics):
        task_type = "PairClassification"
    elif has("ndcg_at_10"):
        main = metrics.get("main_score")
        reranking = (main is not None and main == metrics.get("map_at_1000")
                     and main != metrics.get("ndcg_at_10"))
        task_type = "Reranking" if reranking else "Retrieval"
    else:
        return None
    return TaskSpec(name=result.task_name, type=task_type, main_score=MAIN_SCORES[task_type],
                    split=split, subset=subset)


@lru_cache(maxsize=8)
def benchmark_specs(benchmark: str) -> tuple[str, dict[str, TaskSpec]]:
    """``(canonical benchmark name, {task name: TaskSpec})`` for a benchmark.

    ``pairrel-quickstart`` reads ``pairrel.evaluate.task_specs.QUICKSTART_TASK_SPECS``; any
    other name is read from the generated table of MTEB benchmarks
    (:mod:`pairrel.evaluate.benchmark_table`; a benchmark outside it from mteb, offline).
    """
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK, QUICKSTART_TASK_SPECS

    if benchmark == QUICKSTART_BENCHMARK:
        return benchmark, {
            name: TaskSpec(name=name, **spec) for name, spec in QUICKSTART_TASK_SPECS.items()
        }
    from pairrel.evaluate.benchmark_table import UnknownBenchmarkError, benchmark as table_benchmark

    try:
        bench = table_benchmark(benchmark)
    except UnknownBenchmarkError as err:
        raise ValueError(f"unknown benchmark {benchmark!r}: neither {QUICKSTART_BENCHMARK!r} nor an MTEB "
                         f"benchmark ({err})") from None
    return bench["name"], {entry["name"]: _spec(entry) for entry in bench["tasks"]}
