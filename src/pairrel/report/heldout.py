"""The held-out table: K-fold test queries per fold, over folds, pooled; and BCE − softmax.

Input is a generic per-query frame (:func:`per_query_frame` builds it from result files): the
grid columns of each evaluated model, ``source`` (the K-fold training source), ``fold``,
``measure`` (``nDCG@10``, ``RR(rel=2)@10``, ``P(rel=2)@10``), ``query_id``, ``value`` (0-100).

For each variant (grid values except fold and step; seed kept, so replicates never mix the
same query twice) and measure, at each run's final evaluated step:

* **per fold**: the mean over that fold's held-out queries (what mteb reports for the task);
* **mean ± std over folds**: of those per-fold scores (sample std, divisor n − 1);
* **pooled**: the mean over the union of all folds' queries, each query scored by the run that
  did not train on it (folds must not share a query: an error otherwise). With unequal fold
  sizes it differs from the mean over folds; it is the number comparable to a TREC-DL score.

The comparison (``A`` − ``B``, by default ``loss=bce`` − ``loss=softmax``) pairs variants equal
on every other grid value, and each query with itself: per measure, the pooled difference and
the paired tests of :func:`pairrel.report.compare.paired_summary` over the n shared queries.
"""

from __future__ import annotations

import math

import pandas as pd

from pairrel.evaluate.heldout import MEASURE_NAMES, parse_heldout_task_name
from pairrel.report.collect import RowSource, grid_column
from pairrel.report.compare import describe_tests, paired_summary, parse_selector, value_matches
from pairrel.report.display import value_name
from pairrel.report.final import PaperTable, identity_columns
from pairrel.report.render import is_missing
from pairrel.report.tables import natural_key

STEP = grid_column("step")
FOLD = grid_column("fold")
SEED = grid_column("seed")


def per_query_frame(sources: list[RowSource]) -> pd.DataFrame:
    """Every per-query held-out score of ``sources`` (from ``collect.read_sources``), 0-100.

    Columns: the grid columns (``grid_column`` names), ``task``, ``source``, ``fold`` (from the
    task name: the fold whose test queries the task holds), ``measure``, ``query_id``,
    ``value``, ``path`` (the result file).
    """
    records = []
    for row in sources:
        grid = {grid_column(k): v for k, v in row.grid.items()}
        if grid and grid_column("model") not in grid:  # a study's run: the model is in its name
            grid[grid_column("model")] = row.model.rsplit("/", 1)[-1]
        for task, result in row.files.items():
            parsed = parse_heldout_task_name(task)
            if parsed is None:
                continue
            source, fold = parsed
            for subsets in result.per_query.values():
                for measures in subsets.values():
                    for measure, values in measures.items():
                        records.extend({**grid, "task": task, "source": source,
                                        FOLD: fold, "measure": measure, "query_id": query,
                                        "value": 100.0 * value, "path": str(result.path)}
                                       for query, value in values.items())
    frame = pd.DataFrame(records)
    for column in {k for r in records for k in r} - {"value"}:
        frame[column] = pd.Series([r.get(column) for r in records], index=frame.index,
                                  dtype=object)
    return frame


def _final_step(frame: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    """Rows of each run's (grid values but step, and source) largest evaluated step."""
    if STEP not in frame.columns:
        return frame
    run = [c for c in [*grid_columns, "source"] if c != STEP and c in frame.columns]
    steps = frame[STEP].map(lambda v: natural_key(v)[1])
    last = steps.groupby([frame[c].map(str) for c in run]).transform("max")
    return frame[steps == last]


def _variant_keys(frame: pd.DataFrame, grid_columns: list[str]) -> list[str]:
    keys = identity_columns(grid_columns)
    if SEED in frame.columns and SEED not in keys:
        keys.append(SEED)
    return [k for k in keys if k in frame.columns] + ["source"]


def _as_key(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    return frame[keys].map(lambda v: "" if is_missing(v) else str(v)).agg("\x1f".join, axis=1)


def _names(variants: pd.DataFrame, keys: list[str], display: dict) -> list[str]:
    """``Llama-3-8B · BCE · graded`` from the keys that vary (seed shown as ``seed 42``)."""
    varying = [k for k in keys if variants[k].map(str).nunique() > 1] or keys[:1]
    names = []
    for _, row in variants.iterrows():
        parts = []
        for k in varying:
            if is_missing(row[k]):
                continue
            axis = k.removeprefix("grid_")
            parts.append(f"seed {row[k]}" if k == SEED else value_name(display, axis, row[k]))
        names.append(" · ".join(parts) or "model")
    return names


def heldout_summary(frame: pd.DataFrame, grid_columns: list[str], display: dict | None = None
                    ) -> PaperTable:
    """Rows: variant × measure; columns: each fold, mean ± std over folds, pooled, queries."""
    display = display or {}
    frame = _final_step(frame, grid_columns)
    keys = _variant_keys(frame, grid_columns)
    frame = frame.assign(_variant=_as_key(frame, keys))
    # a query held out by two folds of one variant: the folds are not a partition
    twice = frame.groupby(["_variant", "measure", "query_id"])[FOLD].nunique()
    if (twice > 1).any():
        variant, measure, query = twice[twice > 1].index[0]
        tasks = sorted(frame.loc[(frame["_variant"] == variant) & (frame["query_id"] == query),
                                 "task"].unique())
        raise ValueError(f"held-out query {query!r} appears in several folds ({', '.join(tasks)}) "
                         "of one variant: the folds must partition the queries")
    folds = sorted(frame[FOLD].unique(), key=natural_key)
    variants = frame.drop_duplicates("_variant")[["_variant", *keys]]
    variants = variants.iloc[sorted(range(len(variants)), key=lambda i: tuple(
        natural_key(variants.iloc[i][k]) for k in keys))].reset_index(drop=True)
    names = dict(zip(variants["_variant"], _names(variants, keys, display)))
    per_fold = frame.groupby(["_variant", "measure", FOLD])["value"].mean()
    pooled = frame.groupby(["_variant", "measure"])["value"].agg(["mean", "count"])
    records, stds = [], []
    for variant in variants["_variant"]:
        for measure in [m for m in MEASURE_NAMES if (variant, m) in pooled.index]:
            by_fold = per_fold.loc[(variant, measure)]
            record = {"Variant": names[variant], "Measure": measure}
            for fold in folds:
                record[f"fold {fold}"] = float(by_fold.get(fold, math.nan))
            record["folds"] = float(by_fold.mean())
            stds.append(float(by_fold.std(ddof=1)) if len(by_fold) > 1 else math.nan)
            record["pooled"] = float(pooled.loc[(variant, measure), "mean"])
            record["queries"] = int(pooled.loc[(variant, measure), "count"])
            record["n_folds"] = len(by_fold)
            records.append(record)
    shown = pd.DataFrame(records)
    csv = shown.assign(folds_std=stds)
    std_series = pd.Series(stds, index=shown.index)
    headers = {"folds": "mean ± std\nover folds", "pooled": "pooled", "queries": "queries"}
    notes = ["Held-out queries of K-fold sources: reranking of each query's judged passages, "
             "0-100; not part of any average. nDCG@10 uses graded gains; RR and P count grade "
             "≥ 2 as relevant (ir_measures).",
             "fold k: mean over fold k's held-out queries, scored by the run trained without "
             "them; pooled: mean over all folds' queries (each scored once), with their number."]
    if STEP in frame.columns:
        steps = sorted({v for v in frame[STEP] if not is_missing(v)}, key=natural_key)
        notes.append("final checkpoints only: step " + ", ".join(map(str, steps)))
    latex = shown.drop(columns=["Variant", "n_folds"])
    return PaperTable(csv, shown.drop(columns=["n_folds"]), {"folds": std_series}, headers,
                      [], [], notes, latex, {"folds": std_series}, list(shown["Variant"]))


def heldout_comparison(frame: pd.DataFrame, grid_columns: list[str], a: str, b: str,
                       display: dict | None = None) -> PaperTable | None:
    """``a`` − ``b`` per measure over the shared held-out queries (pooled over folds).

    None (and nothing compared) when one side has no held-out result.
    """
    display = display or {}
    frame = _final_step(frame, grid_columns)
    sel_a, sel_b = parse_selector(a), parse_selector(b)
    if not (isinstance(sel_a, dict) and isinstance(sel_b, dict)):
        raise ValueError(f"held-out comparison needs grid selectors (loss=bce), not {a!r}/{b!r}")
    named = {grid_column(k) for k in (*sel_a, *sel_b)}
    keys = [k for k in _variant_keys(frame, grid_columns) if k not in named]

    def side(selector: dict) -> pd.DataFrame:
        mask = pd.Series(True, index=frame.index)
        for key, wanted in selector.items():
            column = grid_column(key)
            if column not in frame.columns:
                return frame.iloc[0:0]
            mask &= frame[column].map(lambda v, w=wanted: value_matches(v, w))
        picked = frame[mask]
        return picked.assign(_pair=_as_key(picked, keys))

    side_a, side_b = side(sel_a), side(sel_b)
    if side_a.empty or side_b.empty:
        return None
    merged = side_a.merge(side_b[["_pair", "measure", "query_id", "value"]],
                          on=["_pair", "measure", "query_id"], suffixes=("_a", "_b"))
    if merged.empty:
        return None
    pairs = merged.drop_duplicates("_pair")[["_pair", *keys]].reset_index(drop=True)
    names = dict(zip(pairs["_pair"], _names(pairs, keys, display)))
    records = []
    for pair in pairs["_pair"]:
        for measure in MEASURE_NAMES:
            group = merged[(merged["_pair"] == pair) & (merged["measure"] == measure)]
            if group.empty:
                continue
            summary = paired_summary(group["value_a"] - group["value_b"])
            records.append({"Variant": names[pair], "Measure": measure,
                            "A": float(group["value_a"].mean()),
                            "B": float(group["value_b"].mean()),
                            "diff": summary.pop("mean_diff"), **summary})
    csv = pd.DataFrame(records)
    shown = csv[["Variant", "Measure", "A", "B", "diff", "n", "wins", "losses", "ties"]].copy()
    for column in ("wilcoxon_p", "sign_p"):
        shown[column] = csv[column].map(lambda p: f"{p:.3g}")
    with_ci = csv["ci_low"].notna()
    shown["95 % CI"] = [f"[{lo:+.2f}, {hi:+.2f}]" if ok else "–"
                        for lo, hi, ok in zip(csv["ci_low"], csv["ci_high"], with_ci)]
    headers = {"A": a, "B": b, "diff": "A − B", "wilcoxon_p": "Wilcoxon p",
               "sign_p": "sign p"}
    notes = [f"A = {a}, B = {b}: pooled held-out scores (0-100) over the queries both were "
             "tested on, one pair per query. " + describe_tests("query", "queries")]
    latex = shown.drop(columns=["Variant"])
    return PaperTable(csv, shown, {}, headers, [], ["diff"], notes, latex, {},
                      list(shown["Variant"]))
