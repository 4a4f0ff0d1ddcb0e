"""The paper's tables: final checkpoints, replicates aggregated, a Δ column, per-step curves.

Input is a generic frame with one row per evaluated model (a checkpoint of a run, a base
model, or a published baseline): grid columns (``model``/``grid_model``, ``data``, ``loss``,
``labels``, ``fold``, ``seed``, ``step``, and any other axis), score columns, ``source``
(``results`` or ``published: <citation>``). Where the rows come from does not matter.

* A row is **trained** when it has a grid value other than the model; other ``results`` rows
  are **base** (untrained) models.
* **Final checkpoints**: a run is a trained row's grid values without ``step``; its final
  checkpoint is its largest evaluated step, or the rows flagged by a boolean ``final`` column
  when the frame has one (the study knows the configured last step; a run whose last
  checkpoint is not evaluated yet would otherwise show an earlier step as final).
* **One task set per cell**: when some final checkpoints of a variant have every task of the
  benchmark and others only a subset (``evaluation.full_benchmark: first-fold``: the first
  fold on the full benchmark, the other folds on ``intermediate_tasks`` and their held-out
  fold), the final tables average the complete runs only and a note names the others; a cell
  never averages a run evaluated on the subset with one evaluated on the full benchmark.
* **Replicates**: rows equal on every grid value except ``seed`` and ``fold`` are one
  *variant*; a variant's cell is the mean over its n runs, with the sample standard deviation
  (divisor n − 1) when n > 1. A replicate with a missing score leaves the variant's cell
  missing: a mean over fewer runs is not the same number.
* **Δ**: each row's ``Average`` minus the reference row's (config ``report.reference_row``, a
  selector such as ``loss=softmax`` or a row's display name). When the selector matches several
  variants, each trained row is compared with the one that agrees on every other grid value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pairrel.report.collect import grid_column
from pairrel.report.compare import parse_selector, value_matches
from pairrel.report.display import header, value_name
from pairrel.report.render import is_missing
from pairrel.report.tables import natural_key

REPLICATE_AXES = ("seed", "fold")
STEP_AXIS = "step"
DELTA = "Δ"
N_RUNS = "n"


def identity_columns(grid_columns: list[str]) -> list[str]:
    """Grid columns that name a variant: all but the replicate axes and the step."""
    dropped = {grid_column(a) for a in (*REPLICATE_AXES, STEP_AXIS)}
    return [c for c in grid_columns if c not in dropped]


def trained_mask(frame: pd.DataFrame, grid_columns: list[str]) -> pd.Series:
    """True for rows of a training run (a grid value besides the model)."""
    others = [c for c in grid_columns if c != grid_column("model")]
    if not others:
        return pd.Series(False, index=frame.index)
    return frame[others].map(lambda v: not is_missing(v)).any(axis=1) & (
        frame["source"] == "results")


def final_rows(frame: pd.DataFrame, grid_columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Base and published rows, plus each run's final checkpoint; and a note on the steps."""
    trained = trained_mask(frame, grid_columns)
    step = grid_column(STEP_AXIS)
    if "final" in frame.columns:
        keep = ~trained | frame["final"].fillna(False).astype(bool)
    elif step in frame.columns and trained.any():
        run_keys = [c for c in grid_columns if c != step]
        steps = frame[step].map(lambda v: natural_key(v)[1])
        last = steps[trained].groupby([frame.loc[trained, c].map(str) for c in run_keys]
                                      ).transform("max")
        keep = ~trained
        keep[trained] = steps[trained] == last
    else:
        keep = pd.Series(True, index=frame.index)
    kept = frame[keep]
    notes = []
    if step in frame.columns and (trained & keep).any():
        finals = sorted({v for v in kept.loc[trained[keep], step] if not is_missing(v)},
                        key=natural_key)
        notes.append("final checkpoints only: step " + ", ".join(map(str, finals))
                     + ("" if len(finals) == 1 else " (each run's last evaluated step)"))
    kept, subset_notes = complete_runs_only(kept, grid_columns)
    return kept, notes + subset_notes


def complete_runs_only(frame: pd.DataFrame, grid_columns: list[str]
                       ) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` without the runs of a variant evaluated on fewer tasks than its other runs.

    A variant (rows equal on :func:`identity_columns`) whose runs include some with every task
    (empty ``missing``) keeps only those: its K-fold runs past the first fold, evaluated on a
    subset, are left out of this table (the held-out table has them), with a note naming them.
    A variant with no complete run keeps all its runs (its cells stay missing as before).
    """
    if "missing" not in frame.columns:
        return frame, []
    trained = trained_mask(frame, grid_columns)
    complete = frame["missing"].map(lambda m: is_missing(m) or str(m) == "")
    identity = identity_columns(grid_columns)
    replicate = [grid_column(a) for a in REPLICATE_AXES if grid_column(a) in frame.columns]
    drop = pd.Series(False, index=frame.index)
    left_out: list[str] = []
    runs = frame[trained]
    keys = [runs[c].map(str) for c in identity] or [pd.Series("", index=runs.index)]
    for _, group in runs.groupby(keys, sort=False, dropna=False) if len(runs) else ():
        whole = complete[group.index]
        if whole.any() and not whole.all():
            partial = group[~whole]
            drop[partial.index] = True
            variant = ", ".join(f"{c.removeprefix('grid_')}={group.iloc[0][c]}" for c in identity)
            axes = [c for c in replicate if group[c].map(str).nunique() > 1] or replicate

            def runs_named(rows: pd.DataFrame) -> str:  # "fold 1, fold 2" (the axes that vary)
                return ", ".join(" ".join(f"{c.removeprefix('grid_')} {r[c]}" for c in axes
                                          if not is_missing(r[c])) for _, r in rows.iterrows())

            kept, gone = runs_named(group[whole]), runs_named(partial)
            left_out.append(f"{variant}: {kept or 'complete runs'} (every task); "
                            f"{gone or 'the others'} on a task subset left out")
    if not left_out:
        return frame, []
    note = ("final checkpoints with every task only (a cell never averages a run on a task subset "
            "with one on the whole benchmark; the subset runs are in heldout and per_step): "
            + "; ".join(left_out))
    return frame[~drop], [note]


@dataclass
class Aggregated:
    """Variants with mean (``<col>``), std (``<col>_std``), ``n`` runs and what they were."""

    frame: pd.DataFrame
    identity: list[str]
    value_columns: list[str]
    replicate_values: dict[str, list[str]] = field(default_factory=dict)  # axis -> values seen
    # variants whose runs were averaged at different steps (a run's later checkpoints not
    # evaluated yet): "grid values: steps"
    mixed_steps: list[str] = field(default_factory=list)


def aggregate(frame: pd.DataFrame, grid_columns: list[str], value_columns: list[str],
              model_names: dict[str, str] | None = None) -> Aggregated:
    """One row per variant (trained), per base model and per published row.

    Output columns: ``kind`` (published; base: an untrained model of the grid, its rows carry
    only the ``model`` grid value; external: any other model without grid values, e.g.
    published result files; trained), ``name`` (untrained rows: the row's
    model name), identity grid columns, each value column and ``<col>_std``, ``n``,
    ``n_tasks`` (smallest over the runs), ``missing``, ``source``.
    """
    identity = identity_columns(grid_columns)
    trained = trained_mask(frame, grid_columns)
    model_names = model_names or {}
    model_col = grid_column("model")
    # an untrained model named like a grid model is that model's base (its grid may be empty)
    grid_models = ({str(v) for v in frame.loc[trained, model_col] if not is_missing(v)}
                   if model_col in frame.columns else set())
    records: list[dict] = []
    for _, row in frame[~trained].iterrows():
        published = str(row["source"]).startswith("published")
        name = row["model"] if published else model_names.get(row["model"], row["model"])
        model = row.get(model_col) if model_col in frame.columns else None
        if is_missing(model) and not published and name in grid_models:
            model = name
        base = not published and not is_missing(model)
        record = {"kind": "published" if published else "base" if base else "external",
                  "name": name, **{c: model if c == model_col else None for c in identity}}
        for c in value_columns:
            record[c] = row[c]
            record[f"{c}_std"] = math.nan
        record.update(n=1, n_tasks=row.get("n_tasks"), missing=row.get("missing", ""),
                      source=row["source"])
        records.append(record)
    replicate_values: dict[str, set] = {}
    mixed_steps: list[str] = []
    runs = frame[trained]
    if len(runs):
        keys = [runs[c].map(str) for c in identity] or [pd.Series("", index=runs.index)]
        for _, group in runs.groupby(keys, sort=False, dropna=False):
            first = group.iloc[0]
            record = {"kind": "trained", "name": None, **{c: first[c] for c in identity}}
            for c in value_columns:
                values = group[c].astype(float)
                record[c] = values.mean(skipna=False)
                record[f"{c}_std"] = (values.std(ddof=1, skipna=False) if len(values) > 1
                                      else math.nan)
            missing = sorted({m for ms in group.get("missing", pd.Series([""])) for m in
                              str(ms).split("; ") if m})
            record.update(n=len(group), n_tasks=group["n_tasks"].min()
                          if "n_tasks" in group else None,
                          missing="; ".join(missing), source="results")
            records.append(record)
            step_col = grid_column(STEP_AXIS)
            if step_col in group.columns and group[step_col].map(str).nunique() > 1:
                mixed_steps.append(", ".join(str(first[c]) for c in identity) + ": steps "
                                   + ", ".join(sorted(set(group[step_col].map(str)),
                                                      key=natural_key)))
            for axis in REPLICATE_AXES:
                column = grid_column(axis)
                if column in group.columns:
                    replicate_values.setdefault(axis, set()).update(
                        str(v) for v in group[column] if not is_missing(v))
    out = pd.DataFrame(records)
    if len(out):
        def order(i: int) -> tuple:  # published as given, base by name, variants by grid value
            kind = out.at[i, "kind"]
            if kind == "published":
                return (0, i)
            if kind == "external":
                return (1, (0, 0.0, ""), -1, str(out.at[i, "name"]))
            model = out.at[i, model_col] if model_col in out.columns else None
            model = out.at[i, "name"] if is_missing(model) else model
            if kind == "base":  # each model's base row first, then its variants
                return (1, natural_key(model), 0)
            return (1, natural_key(model), 1, *[natural_key(out.at[i, c]) for c in identity])

        out = out.iloc[sorted(range(len(out)), key=order)].reset_index(drop=True)
    for c in identity:  # grid values as written (42, not 42.0)
        out[c] = pd.Series([r.get(c) for r in out.to_dict("records")], index=out.index,
                           dtype=object) if len(out) else pd.Series(dtype=object)
    return Aggregated(out, identity, value_columns,
                      {k: sorted(v, key=natural_key) for k, v in replicate_values.items()},
                      mixed_steps)


def _varying(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    trained = frame[frame["kind"] == "trained"]
    return [c for c in columns
            if trained[c].map(lambda v: "" if is_missing(v) else str(v)).nunique() > 1]


def variant_names(frame: pd.DataFrame, display: dict, shown_axes: list[str]) -> list[str]:
    """A one-cell name per row of an aggregated frame: published rows by their name, base
    models ``MiniLM (base)``, variants by their ``shown_axes`` values (``MiniLM · BCE``)."""
    names = []
    model_col = grid_column("model")
    for _, row in frame.iterrows():
        if row["kind"] == "published":
            published = str(row["name"]).removesuffix(" (published)")
            names.append(f"{value_name(display, 'model', published)} (published)")
        elif row["kind"] == "external":
            names.append(value_name(display, "model", row["name"]))
        elif row["kind"] == "base":
            model = row.get(model_col)
            model = row["name"] if is_missing(model) else model
            names.append(f"{value_name(display, 'model', model)} (base)")
        else:
            parts = [value_name(display, c.removeprefix("grid_"), row[c]) for c in shown_axes
                     if not is_missing(row[c])]
            names.append(" · ".join(parts) if parts else "trained")
    return names


def _name_axes(frame: pd.DataFrame, identity: list[str]) -> list[str]:
    """Axes that name a variant in one cell: the model, then every axis that varies."""
    model_col = grid_column("model")
    varying = [c for c in _varying(frame, identity) if c != model_col]
    return [c for c in [model_col, *varying] if c in identity] or identity[:1]


def replicate_note(agg: Aggregated) -> str | None:
    """What ± means here, naming only the replicate axes that exist (never "over seeds"
    without several seeds)."""
    if not (agg.frame["n"] > 1).any():
        seeds = agg.replicate_values.get("seed", [])
        if len(seeds) == 1:  # one run a row: say so, so no ± is not read as a missing number
            return f"a single seed ({seeds[0]}): one run per row, no ± (no spread to show)"
        return None
    axes = [f"{len(v)} {axis}s ({', '.join(v)})" for axis, v in agg.replicate_values.items()
            if len(v) > 1]
    over = " × ".join(axes) if axes else "runs"
    return (f"mean ± sample standard deviation (divisor n − 1) over the n runs of a row: {over}; "
            "rows without ± have one run")


def delta(agg: Aggregated, selector: str, display_names: list[str], column: str = "Average",
          display: dict | None = None) -> tuple[pd.Series | None, str]:
    """Each row's ``column`` minus its reference row's; and the note that says which (the
    reference by its display names: ``InfoNCE``, not ``loss=softmax``)."""
    frame = agg.frame
    parsed = parse_selector(selector)
    shown = selector if isinstance(parsed, str) else ", ".join(
        (display or {}).get(key, {}).get(str(wanted)) or f"{key}={wanted}"
        for key, wanted in parsed.items())
    if isinstance(parsed, str):
        refs = [i for i, n in enumerate(display_names) if n == parsed]
        keys: list[str] = []
    else:
        refs = list(frame.index)
        for key, wanted in parsed.items():
            col = grid_column(key)
            if col not in frame.columns:
                return None, (f"reference row {selector!r}: {key!r} is not a grid key of these "
                              "results; no Δ column")
            refs = [i for i in refs if frame.at[i, "kind"] == "trained"
                    and value_matches(frame.at[i, col], wanted)]
        keys = [c for c in agg.identity if c not in {grid_column(k) for k in parsed}]
    if not refs:
        return None, f"reference row {selector!r} matches no row; no Δ column"
    values = frame[column].astype(float)
    if len(refs) == 1:
        ref = refs[0]
        return values - values[ref], (f"{DELTA} = {header({}, column)} − that of "
                                      f"{display_names[ref]}")
    out = pd.Series(math.nan, index=frame.index)
    lookup = {tuple(str(frame.at[i, k]) for k in keys): i for i in refs}
    if len(lookup) < len(refs):
        return None, (f"reference row {selector!r} matches {len(refs)} rows that differ only "
                      "in axes it names; make it more specific; no Δ column")
    for i in frame.index[frame["kind"] == "trained"]:
        ref = lookup.get(tuple(str(frame.at[i, k]) for k in keys))
        if ref is not None:
            out[i] = values[i] - values[ref]
    named = ", ".join(k.removeprefix("grid_") for k in keys)
    return out, (f"{DELTA} = {header({}, column)} − that of the {shown} row with the same "
                 f"{named}")


@dataclass
class PaperTable:
    """A table ready for the writers: CSV frame (everything) and what the text formats show."""

    csv: pd.DataFrame
    shown: pd.DataFrame
    stds: dict[str, pd.Series]
    headers: dict[str, str]
    bold: list[str]
    signed: list[str]
    notes: list[str]
    # LaTeX has a page width: rows grouped under their model, fewer ± (None: as ``shown``)
    latex_shown: pd.DataFrame | None = None
    latex_stds: dict[str, pd.Series] | None = None
    groups: list[str] | None = None
    latex_notes: list[str] = field(default_factory=list)


PUBLISHED_GROUP = "Published"
OTHER_GROUP = "Other models"


def latex_layout(frame: pd.DataFrame, display: dict, identity: list[str]
                 ) -> tuple[list[str], list[str]]:
    """(row label within its group, group) per row of an aggregated frame, for LaTeX.

    Groups are the models (published baselines first, under one heading); a trained row is
    named by its other varying axes (``TREC-DL 2023 · BCE · graded``), a base row ``untrained``.
    """
    model_col = grid_column("model")
    axes = [c for c in _name_axes(frame, identity) if c != model_col]
    labels, groups = [], []
    for name, (_, row) in zip(variant_names(frame, display, axes), frame.iterrows()):
        if row["kind"] == "published":
            groups.append(PUBLISHED_GROUP)
            published = str(row["name"]).removesuffix(" (published)")
            labels.append(value_name(display, "model", published))
            continue
        if row["kind"] == "external":
            groups.append(OTHER_GROUP)
            labels.append(name)
            continue
        model = row.get(model_col) if model_col in frame.columns else None
        model = row["name"] if is_missing(model) and row["kind"] == "base" else model
        groups.append(value_name(display, "model", model) if not is_missing(model) else "Trained")
        labels.append("untrained" if row["kind"] == "base" else name)
    return labels, groups


def final_table(main: pd.DataFrame, grid_columns: list[str], type_columns: list[str],
                display: dict | None = None, reference_row: str | None = None,
                model_names: dict[str, str] | None = None,
                loss_params: pd.DataFrame | None = None) -> PaperTable:
    """The main table: final checkpoints, one row per variant, base and published rows.

    Shown columns: Model, each grid axis that varies between variants (constant ones are named
    in a note), the task types, Average, Δ (with ``reference_row``), n (when some row averages
    several runs). ``model_names`` maps a row's label to its model's name (base rows).
    ``loss_params`` (:func:`pairrel.report.loss_params.final_loss_parameters`) adds each BCE
    variant's final t and b (mean over its runs).
    """
    display = display or {}
    values = [*type_columns, "Average"]
    kept, notes = final_rows(main, grid_columns)
    agg = aggregate(kept, grid_columns, values, model_names)
    frame = agg.frame
    model_col = grid_column("model")
    has_model = model_col in frame.columns
    axes = [c for c in agg.identity if c != model_col]
    shown_axes = _varying(frame, axes)
    trained = frame[frame["kind"] == "trained"]
    for c in axes:
        if c not in shown_axes and len(trained) and not is_missing(trained[c].iloc[0]):
            notes.append(f"every trained row: {header(display, c)} = "
                         f"{value_name(display, c.removeprefix('grid_'), trained[c].iloc[0])}")
    model_cells = variant_names(frame, display, [model_col] if has_model else [])
    shown = pd.DataFrame({"Model": [
        name if kind != "trained" or has_model else "–"
        for name, kind in zip(model_cells, frame["kind"])]})
    for c in shown_axes:
        shown[c] = [value_name(display, c.removeprefix("grid_"), v)
                    if kind == "trained" and not is_missing(v) else "–"
                    for v, kind in zip(frame[c], frame["kind"])]
    for c in values:
        shown[c] = frame[c].astype(float)
    stds = {c: frame[f"{c}_std"] for c in values}
    row_names = variant_names(frame, display, [c for c in [model_col, *shown_axes]
                                               if c in frame.columns])
    signed: list[str] = []
    csv = frame.drop(columns=["kind"])
    csv.insert(0, "row", row_names)
    if reference_row:
        diff, note = delta(agg, reference_row, row_names, "Average", display)
        notes.append(note)
        if diff is not None:
            shown[DELTA] = diff
            csv["delta_average"] = diff
            signed.append(DELTA)
    if (frame["n"] > 1).any():
        shown[N_RUNS] = frame["n"].astype(int)
    if loss_params is not None and len(loss_params):
        from pairrel.report import loss_params as lp

        learned = lp.cells(frame, agg.identity, loss_params)
        if any(cell != "–" for cell in learned):
            shown[lp.COLUMN] = learned
            csv["loss_params_final"] = learned
    note = replicate_note(agg)
    if note:
        notes.append(note)
    if agg.mixed_steps:
        notes.append("runs averaged at different final steps (later checkpoints not evaluated "
                     "yet?): " + "; ".join(agg.mixed_steps))
    headers = {c: header(display, c) for c in shown.columns}
    headers[DELTA] = DELTA
    headers[N_RUNS] = N_RUNS
    labels, groups = latex_layout(frame, display, agg.identity)
    numbers = [c for c in shown.columns if c in (*values, DELTA, N_RUNS)]
    latex_shown = pd.concat([pd.DataFrame({"Variant": labels}), shown[numbers]], axis=1)
    headers["Variant"] = ""
    latex_notes = []
    if (frame["n"] > 1).any():
        latex_notes.append(f"± on {header(display, 'Average')} only; every column's standard "
                           "deviation is in the CSV file")
    return PaperTable(csv, shown, stds, headers, values, signed, notes, latex_shown,
                      {"Average": stds["Average"]}, groups, latex_notes)


def per_step_table(main: pd.DataFrame, grid_columns: list[str], value_columns: list[str],
                   display: dict | None = None, column: str = "Average") -> PaperTable | None:
    """``column`` of every variant at every evaluated step (mean ± std over replicates).

    None when no run has more than one evaluated step. The CSV is long (one row per variant ×
    step, every value column); the text formats are wide (one column per step).
    """
    display = display or {}
    step = grid_column(STEP_AXIS)
    trained = main[trained_mask(main, grid_columns)]
    if step not in main.columns or trained.empty:
        return None
    steps = sorted({v for v in trained[step] if not is_missing(v)}, key=natural_key)
    if len(steps) < 2:
        return None
    per_step = {s: aggregate(trained[trained[step].map(str) == str(s)], grid_columns,
                             value_columns).frame for s in steps}
    identity = identity_columns(grid_columns)
    long = pd.concat([f.assign(**{STEP_AXIS: s}) for s, f in per_step.items()],
                     ignore_index=True).drop(columns=["kind", "name"])
    variants = long.drop_duplicates(subset=[c for c in identity]).reset_index(drop=True)
    variants = variants.iloc[sorted(range(len(variants)), key=lambda i: tuple(
        natural_key(variants.at[i, c]) for c in identity))].reset_index(drop=True)
    variants = variants[identity].assign(kind="trained", name=None)
    shown = pd.DataFrame({"Variant": variant_names(variants, display,
                                                   _name_axes(variants, identity))})
    stds = {}

    def key(frame: pd.DataFrame) -> pd.Series:
        return frame[identity].map(str).agg("\x1f".join, axis=1)

    for s in steps:
        cells = per_step[s].set_index(key(per_step[s]))
        ids = key(variants)
        shown[f"step {s}"] = ids.map(cells[column]).astype(float).to_numpy()
        stds[f"step {s}"] = pd.Series(ids.map(cells[f"{column}_std"]).astype(float).to_numpy())
    notes = [f"{header(display, column)} at each evaluated step"]
    n_max = int(long["n"].max())
    if n_max > 1:
        notes.append(f"mean ± std over up to {n_max} runs (seeds × folds) per cell")
    return PaperTable(long, shown, stds, {"Variant": "Variant"}, [], [], notes)


MAX_TASK_COLUMNS = 6  # task columns per LaTeX tabular: 6 stacked headers fit a 6.9 in page
_HEADER_LINE = 12  # longer task names are stacked on two lines at a CamelCase boundary


def short_task_name(task: str, task_type: str) -> str:
    """``Banking77Classification`` -> ``Banking77``, ``ArxivClusteringP2P`` -> ``ArxivP2P``:
    the type is the table's title already."""
    for word in (task_type, "Classification", "Clustering", "Retrieval", "Reranking"):
        if word in task and len(task) > len(word):
            return task.replace(word, "", 1)
    return task


def stacked(name: str, width: int = _HEADER_LINE) -> str:
    """Split a long CamelCase name into two header lines, at the boundary nearest its middle."""
    if len(name) <= width:
        return name
    cuts = [i for i in range(1, len(name)) if name[i].isupper() and name[i - 1].islower()
            or name[i].isdigit() != name[i - 1].isdigit() or name[i - 1] in "-_"]
    if not cuts:
        return name
    cut = min(cuts, key=lambda i: abs(i - len(name) / 2))
    return name[:cut] + "\n" + name[cut:]


def per_task_tables(scores: pd.DataFrame, main: pd.DataFrame, grid_columns: list[str],
                    task_types: dict[str, str], display: dict | None = None,
                    model_names: dict[str, str] | None = None,
                    max_columns: int = MAX_TASK_COLUMNS
                    ) -> tuple[pd.DataFrame, list[tuple[str, PaperTable]]]:
    """Per-task scores of the final variants, one table per task type (split into parts of at
    most ``max_columns`` tasks): rows are the main table's base and trained rows, columns the
    type's tasks; best per task in bold. Returns ``(csv, [(title, table)])``, types in order.

    ``scores`` is the tidy frame (``label``, ``task``, ``score``), ``main`` the per-row frame
    (``model`` = label, grid columns, ``n_tasks``, ``source``); ``task_types`` maps each task of
    the benchmark to its type, in table order. The first element is the whole table for the
    CSV (one row per variant, every task with its ``<task>_std``).
    """
    display = display or {}
    ours = main[main["source"] == "results"]
    wide = scores.pivot_table(index="label", columns="task", values="score", aggfunc="first")
    tasks = list(task_types)
    frame = ours.copy()
    for task in tasks:
        frame[task] = frame["model"].map(wide[task]) if task in wide.columns else math.nan
        frame[task] = frame[task].astype(float)
    kept, notes = final_rows(frame, grid_columns)
    agg = aggregate(kept, grid_columns, tasks, model_names)
    names = variant_names(agg.frame, display, _name_axes(agg.frame, agg.identity))
    latex_labels, groups = latex_layout(agg.frame, display, agg.identity)
    latex_notes = (["LaTeX shows means only; standard deviations are in the CSV file"]
                   if (agg.frame["n"] > 1).any() else [])
    note = replicate_note(agg)
    out = []
    types = list(dict.fromkeys(task_types.values()))
    for task_type in types:
        of_type = [t for t in tasks if task_types[t] == task_type]
        parts = [of_type[i:i + max_columns] for i in range(0, len(of_type), max_columns)]
        for index, part in enumerate(parts, start=1):
            shown = pd.DataFrame({"Variant": names})
            stds = {}
            for task in part:
                shown[task] = agg.frame[task].astype(float)
                stds[task] = agg.frame[f"{task}_std"]
            title = task_type
            if len(parts) > 1:
                title += f" ({index}/{len(parts)})"
            headers = {"Variant": "Variant",
                       **{t: stacked(short_task_name(t, task_type)) for t in part}}
            latex_shown = pd.concat([pd.DataFrame({"Variant": latex_labels}), shown[part]],
                                    axis=1)
            out.append((title, PaperTable(shown, shown, stds, {**headers, "Variant": ""},
                                          list(part), [], notes + ([note] if note else []),
                                          latex_shown, {}, groups, latex_notes)))
    csv = agg.frame.drop(columns=["kind", "name"])
    csv.insert(0, "row", names)
    return csv, out
