"""Benchmark rows: per-type averages of every evaluated model, and published baselines.

Averages follow the published MTEB(eng, v1) tables (MTEB leaderboard, LLM2Vec Table 2):
a type's average is the plain mean of its tasks' main scores (0-100), and ``Average`` is the
mean over *all tasks* (56 for MTEB(eng, v1)), not the mean of the type averages. A row missing
any task of a type has no average for that type, and a row missing any task has no
``Average``; its missing tasks are listed (``missing`` column, and under the Markdown/LaTeX
tables) instead of averaging over fewer tasks.

:func:`main_table` has one row per evaluated model and checkpoint (nothing aggregated); the
paper's tables (final checkpoints, replicates averaged, Δ) are built from it by
:mod:`pairrel.report.final` and written by :mod:`pairrel.report.render`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from pairrel.report.collect import Collection, grid_column
from pairrel.report.render import latex_escape, to_csv, to_latex, to_markdown  # noqa: F401
from pairrel.report.scores import TASK_TYPE_ORDER

PUBLISHED_SOURCE_PREFIX = "published"


# ---------------------------------------------------------------- building tables


def type_columns(coll: Collection) -> list[str]:
    """Task types of the benchmark, in published column order (absent types omitted)."""
    present = {spec.type for spec in coll.specs.values()}
    ordered = [t for t in TASK_TYPE_ORDER if t in present]
    return ordered + sorted(present - set(ordered))


def model_names(coll: Collection) -> dict[str, str]:
    """Row label -> the model's short name (``org/name`` -> ``name``), for base-model rows."""
    return {label: str(model).rsplit("/", 1)[-1]
            for label, model in zip(coll.rows["label"], coll.rows["model"])}


def with_model_column(main: pd.DataFrame, coll: Collection) -> tuple[pd.DataFrame, list[str]]:
    """``main`` with a ``grid_model`` value on every trained row, and the grid columns.

    A study's checkpoint results carry their model in the mteb model name
    (``pairrel/<model key>``), not among their grid values; the paper tables group and name
    rows by it, so it becomes the row's ``grid_model`` (the model's short name).
    """
    column = grid_column("model")
    grid_columns = list(coll.grid_columns)
    others = [c for c in grid_columns if c != column]
    if not others:
        return main, grid_columns
    main = main.copy()
    names = model_names(coll)
    trained = (main["source"] == "results") & main[others].notna().any(axis=1)
    current = main[column] if column in main.columns else pd.Series(None, index=main.index)
    fill = trained & current.isna()
    main[column] = pd.Series([names.get(label) if f else value for label, value, f in
                              zip(main["model"], current, fill)], index=main.index, dtype=object)
    if column not in grid_columns:
        grid_columns.insert(0, column)
    return main, grid_columns


def heldout_table(coll: Collection) -> pd.DataFrame | None:
    """Rows: models with held-out results (K-fold test queries); columns: grid values, one per
    held-out task (nDCG@10, 0-100). None when no row has any."""
    if coll.extra_scores.empty:
        return None
    wide = coll.extra_scores.pivot_table(index="label", columns="task", values="score", aggfunc="first")
    rows = main_table_order(coll.rows, coll.grid_columns)
    rows = rows[rows["label"].isin(wide.index)]
    table = rows[["label", *coll.grid_columns]].rename(columns={"label": "model"}).reset_index(drop=True)
    for task in sorted(wide.columns):
        table[task] = table["model"].map(wide[task])
    return table


def natural_key(value: object) -> tuple:
    """Numbers before text, numbers by value (so seed 7 < seed 42)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    try:  # grid values read back as text ("60") still sort as numbers
        return (1, float(str(value)), "")
    except ValueError:
        return (2, 0.0, str(value))


def main_table_order(rows: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    """Rows by model, base model first, then by grid values (numbers numerically)."""
    keys = [
        (r["model"], r["revision"], r["experiment"] != "",
         *[natural_key(r.get(c)) for c in grid_columns], r["label"])
        for _, r in rows.iterrows()
    ]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    return rows.iloc[order].reset_index(drop=True)


def main_table(coll: Collection, references: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, revision, experiment) and per published baseline.

    Columns: ``model`` (label), grid columns, the benchmark's task types, ``Average``,
    ``n_tasks``, ``missing`` (tasks absent, ``; ``-joined), ``source``.
    """
    types = type_columns(coll)
    n_per_type = pd.Series([s.type for s in coll.specs.values()]).value_counts()
    n_total = len(coll.specs)
    scores = coll.scores
    by_label_type = scores.groupby(["label", "type"])["score"].agg(["mean", "count"])
    by_label = scores.groupby("label")["score"].agg(["mean", "count"])
    records = []
    for _, row in main_table_order(coll.rows, coll.grid_columns).iterrows():
        record = {"model": row["label"], **{c: row.get(c) for c in coll.grid_columns}}
        for t in types:
            key = (row["label"], t)
            complete = (key in by_label_type.index
                        and by_label_type.loc[key, "count"] == n_per_type[t])
            record[t] = float(by_label_type.loc[key, "mean"]) if complete else math.nan
        complete = row["label"] in by_label.index and by_label.loc[row["label"], "count"] == n_total
        record["Average"] = float(by_label.loc[row["label"], "mean"]) if complete else math.nan
        record["n_tasks"] = int(row["n_tasks"])
        record["missing"] = "; ".join(row["missing"])
        record["source"] = "results"
        records.append(record)
    columns = ["model", *coll.grid_columns, *types, "Average", "n_tasks", "missing", "source"]
    table = pd.DataFrame(records, columns=columns)
    for column in coll.grid_columns:  # keep grid values as written (42, not 42.0)
        table[column] = pd.Series([r.get(column) for r in records], index=table.index,
                                  dtype=object)
    if references is not None and len(references):
        refs = references.reindex(columns=columns)
        refs["missing"] = refs["missing"].fillna("")
        for column in coll.grid_columns:
            refs[column] = pd.Series([None] * len(refs), index=refs.index, dtype=object)
        table = pd.concat([refs, table], ignore_index=True) if len(table) else refs
    return table


# ---------------------------------------------------------------- published baselines


def load_references(path: Path, type_names: list[str]) -> pd.DataFrame:
    """Published baseline rows from a YAML/CSV file or a folder of them.

    YAML: ``{citation: str, benchmark: str, rows: [{model: str, <Type>: float, Average: float,
    n_tasks: int}]}``. CSV: columns ``model``, types, ``Average``, ``n_tasks``, ``citation``.
    Rows are labelled ``<model> (published)`` with ``source`` = ``published: <citation>``.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".csv"}) \
        if path.is_dir() else [path]
    records = []
    for file in files:
        if file.suffix == ".csv":
            frame = pd.read_csv(file)
            if "model" not in frame.columns or "citation" not in frame.columns:
                raise ValueError(f"{file}: reference CSV needs columns 'model' and 'citation'")
            entries = [(r.pop("citation"), r) for r in frame.to_dict("records")]
        else:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "citation" not in data or "rows" not in data:
                raise ValueError(f"{file}: reference YAML needs keys 'citation' and 'rows'")
            entries = [(data["citation"], dict(r)) for r in data["rows"]]
        for citation, entry in entries:
            if "model" not in entry:
                raise ValueError(f"{file}: a reference row lacks 'model': {entry}")
            unknown = set(entry) - {"model", "Average", "n_tasks", *type_names}
            if unknown:
                raise ValueError(
                    f"{file}: row {entry['model']!r} has unknown keys {sorted(unknown)}")
            record = {k: float(v) for k, v in entry.items() if k not in {"model", "n_tasks"}}
            record["model"] = f"{entry['model']} (published)"
            record["n_tasks"] = int(entry.get("n_tasks", 0))
            record["missing"] = ""
            record["source"] = f"{PUBLISHED_SOURCE_PREFIX}: {citation}"
            records.append(record)
    return pd.DataFrame(records)
