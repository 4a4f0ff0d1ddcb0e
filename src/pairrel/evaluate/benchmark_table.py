"""Task names, types and scoring of the MTEB benchmarks pairrel plans with, without mteb.

Building ``mteb.get_benchmark`` instantiates mteb's whole task registry (thousands of task
objects, ~10 s of CPU); the Study (every ``snakemake`` parse) and the report need only each
task's name, type, main score, leaderboard split and subset. These come from
``benchmark_tasks.json`` beside this module, generated from mteb by
``tools/gen_benchmark_table.py`` (and checked against mteb by tests/test_benchmark_table.py).
A benchmark the table does not hold is looked up in mteb, lazily (its price is paid only by
the configs that name it).

A task entry: ``{"type", "main_score", "split", "subset", "components": [entries]}``; the
split is the one leaderboards publish (``test`` when evaluated, else the first: MSMARCO's
``dev``), the subset the benchmark's language (STS17 -> ``en-en``, STS22 -> ``en``; a
single-subset task its only subset), and an aggregate task (CQADupstackRetrieval) lists its
sub-tasks as components.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("benchmark_tasks.json")
# The benchmarks the generator writes into the table (the paper's, and its successor).
TABLE_BENCHMARKS = ("MTEB(eng, v1)", "MTEB(eng, v2)")


class UnknownBenchmarkError(ValueError):
    """A benchmark name that neither the table nor mteb knows."""


def leaderboard_split(eval_splits: list[str]) -> str:
    """The split published tables use: ``test`` when evaluated, else the first (MSMARCO: dev)."""
    return "test" if "test" in eval_splits else eval_splits[0]


def task_entry(task) -> dict:
    """One table entry of an mteb task object (aggregates: with their components)."""
    meta = task.metadata
    components = [task_entry(sub) for sub in meta.tasks] if getattr(task, "is_aggregate", False) else []
    subsets = list(getattr(task, "hf_subsets", None) or ["default"])
    # A benchmark restricts multilingual tasks to its languages (STS17 -> en-en, STS22 -> en,
    # AmazonCounterfactual -> en); "en-ext" and the like are other subsets, never averaged in.
    subset = subsets[0] if len(subsets) == 1 else ("en" if "en" in subsets else subsets[0])
    return {"name": meta.name, "type": meta.type, "main_score": meta.main_score,
            "split": leaderboard_split(list(meta.eval_splits)), "subset": subset, "components": components}


def benchmark_from_mteb(name: str) -> dict:
    """``{"name": canonical name, "aliases": [...], "tasks": [entries]}`` read from mteb (slow)."""
    import mteb

    try:
        bench = mteb.get_benchmark(name)
    except (KeyError, ValueError) as err:  # mteb raises either, depending on version
        raise UnknownBenchmarkError(f"unknown MTEB benchmark {name!r} ({err})") from None
    return {"name": bench.name, "aliases": sorted(getattr(bench, "aliases", None) or []),
            "tasks": [task_entry(task) for task in bench.tasks]}


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(TABLE_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=16)
def benchmark(name: str) -> dict:
    """The benchmark called ``name`` (or one of its aliases): from the table, else from mteb."""
    for entry in _table()["benchmarks"]:
        if name == entry["name"] or name in entry["aliases"]:
            return entry
    return benchmark_from_mteb(name)


def benchmark_task_types(name: str) -> dict[str, str]:
    """Task name -> MTEB task type of every task of the benchmark, in the benchmark's order."""
    return {task["name"]: task["type"] for task in benchmark(name)["tasks"]}
