"""Benchmark tables: per-task scores, per-type averages, seeds, published baselines.

Averages follow the published MTEB(eng, v1) tables (MTEB leaderboard, LLM2Vec Table 2):
a type's average is the plain mean of its tasks' main scores (0-100), and ``Average`` is the
mean over *all tasks* (56 for MTEB(eng, v1)), not the mean of the type averages. A row missing
any task of a type has no average for that type, and a row missing any task has no
``Average``; its missing tasks are listed (``missing`` column, and under the Markdown/LaTeX
tables) instead of averaging over fewer tasks.

Writers produce CSV, Markdown and LaTeX (booktabs; best value per score column in bold).
Every file is written to a temporary name and renamed, so no reader sees half a table.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from pairrel.report.collect import Collection, grid_column
from pairrel.report.scores import TASK_TYPE_ORDER

PUBLISHED_SOURCE_PREFIX = "published"


# ---------------------------------------------------------------- building tables


def type_columns(coll: Collection) -> list[str]:
    """Task types of the benchmark, in published column order (absent types omitted)."""
    present = {spec.type for spec in coll.specs.values()}
    ordered = [t for t in TASK_TYPE_ORDER if t in present]
    return ordered + sorted(present - set(ordered))


def per_task_table(coll: Collection) -> pd.DataFrame:
    """Rows: benchmark tasks (grouped by type); columns: ``task``, ``type``, one per row label."""
    order = type_columns(coll)
    tasks = sorted(coll.specs.values(), key=lambda s: (order.index(s.type), s.name.lower()))
    wide = coll.scores.pivot_table(index="task", columns="label", values="score", aggfunc="first")
    labels = list(main_table_order(coll.rows, coll.grid_columns)["label"])
    table = pd.DataFrame({"task": [s.name for s in tasks], "type": [s.type for s in tasks]})
    for label in labels:
        column = wide[label] if label in wide.columns else pd.Series(dtype=float)
        table[label] = table["task"].map(column)
    return table


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


def _sort_key(value: object) -> tuple:
    """Numbers before text, numbers by value (so seed 7 < seed 42)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def main_table_order(rows: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    """Rows by model, base model first, then by grid values (numbers numerically)."""
    keys = [
        (r["model"], r["revision"], r["experiment"] != "",
         *[_sort_key(r.get(c)) for c in grid_columns], r["label"])
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


def seed_table(main: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame | None:
    """Mean and sample standard deviation (ddof=1) over ``seed`` of rows equal but for it.

    Returns None when no group has more than one seed. Columns: ``model``, the grid columns
    except seed, ``<col>_mean``/``<col>_std`` per score column, ``n_seeds``.
    """
    seed_col = grid_column("seed")
    ours = main[main["source"] == "results"]
    if seed_col not in ours.columns or ours[seed_col].nunique(dropna=True) < 2:
        return None
    keys = [c for c in grid_columns if c != seed_col]
    value_cols = [c for c in main.columns if c not in {"model", *grid_columns, "n_tasks",
                                                        "missing", "source"}]
    base = ours["model"].str.replace(r"\s*\(.*\)$", "", regex=True)
    frame = ours.assign(_base=base)
    records = []
    for _, group in frame.groupby(["_base", *keys], dropna=False, sort=False):
        # the group's own cells, not groupby's key (which may turn 60 into 60.0)
        values = {k: group[k].iloc[0] for k in ["_base", *keys]}
        varying = [k for k in keys if main[k].nunique(dropna=True) > 1]
        parts = [f"{k.removeprefix('grid_')}={values[k]}" for k in varying
                 if k != "grid_model" and not _is_missing(values[k])]
        label = f"{values['_base']} ({', '.join(parts)})" if parts else values["_base"]
        record = {"model": label, **{k: values[k] for k in keys}}
        for c in value_cols:
            series = group[c].astype(float)
            record[f"{c}_mean"] = series.mean(skipna=False)
            record[f"{c}_std"] = series.std(ddof=1, skipna=False) if len(series) > 1 else math.nan
        record["n_seeds"] = len(group)
        records.append(record)
    table = pd.DataFrame(records)
    for k in keys:
        table[k] = pd.Series([r[k] for r in records], index=table.index, dtype=object)
    return table if (table["n_seeds"] > 1).any() else None


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


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


# ---------------------------------------------------------------- text formats


def _cell(value: object, numeric: bool = True, decimals: int = 2) -> str:
    """Scores with two decimals; grid values (object columns) exactly as written."""
    if _is_missing(value):
        return "–"
    if numeric and isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def to_markdown(table: pd.DataFrame, notes: list[str] = ()) -> str:
    """A GitHub pipe table (floats with two decimals, '–' for none), then notes as a list."""
    header = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in table.itertuples(index=False):
        cells = [_cell(v, n).replace("|", "\\|") for v, n in zip(row, numeric)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, bold_columns: list[str], bold_rows: bool = False,
             notes: list[str] = (), caption: str | None = None) -> str:
    """A booktabs tabular; the maximum of each ``bold_columns`` column is bold.

    With ``bold_rows`` the maximum over ``bold_columns`` *within each row* is bold instead (the
    per-task table, whose columns are models). Ties at two decimals are all bold.
    """
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    cells = [[_cell(v, n) for v, n in zip(row, numeric)] for row in table.itertuples(index=False)]
    positions = [list(table.columns).index(c) for c in bold_columns if c in table.columns]
    rounded = table.iloc[:, positions].apply(pd.to_numeric, errors="coerce").round(2)
    if len(positions) < 2 if bold_rows else len(table) < 2:
        positions = []  # a lone value is not "best" of anything
    if bold_rows:
        best = rounded.max(axis=1)
        for i in range(len(table)):
            for j, pos in enumerate(positions):
                if not math.isnan(best.iloc[i]) and rounded.iat[i, j] == best.iloc[i]:
                    cells[i][pos] = f"\\textbf{{{cells[i][pos]}}}"
    else:
        best = rounded.max(axis=0)
        for j, pos in enumerate(positions):
            for i in range(len(table)):
                if not math.isnan(best.iloc[j]) and rounded.iat[i, j] == best.iloc[j]:
                    cells[i][pos] = f"\\textbf{{{cells[i][pos]}}}"
    spec = "".join("r" if n else "l" for n in numeric)
    out = [r"% generated by pairrel report; needs \usepackage{booktabs}"]
    if caption:
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}"]
    out += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for row in cells:
        out.append(" & ".join(c if c.startswith("\\textbf") else latex_escape(c) for c in row)
                   + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    for note in notes:
        out.append(rf"\par\footnotesize {latex_escape(note)}")
    if caption:
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """CSV with full precision (rounding is for the human-readable formats only)."""
    return table.to_csv(index=False)


def seeds_markdown(seeds: pd.DataFrame, value_cols: list[str], keys: list[str]) -> str:
    """The seed table as Markdown cells ``mean ± std``."""
    shown = seeds[["model", *keys]].copy()
    for c in value_cols:
        means, stds = seeds[f"{c}_mean"], seeds[f"{c}_std"]
        shown[c] = [
            "–" if _is_missing(m) else (f"{m:.2f}" if _is_missing(s) else f"{m:.2f} ± {s:.2f}")
            for m, s in zip(means, stds)
        ]
    shown["n_seeds"] = seeds["n_seeds"]
    return to_markdown(shown)
