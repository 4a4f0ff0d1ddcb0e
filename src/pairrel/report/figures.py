"""Figures at paper size (PNG + PDF): task-type scores, ablations, training curves.

Every figure is built inside ``style.paper_style()`` at one of the two paper widths
(``style.ONE_COLUMN_IN`` 3.3 in, ``style.TWO_COLUMN_IN`` 6.9 in), with text of at least 7 pt,
and names its runs with ``style.run_name`` — the same name for the same run in every figure.
Builders (``*_figure``) return matplotlib ``Figure`` objects; ``save_figure`` writes them at
exactly their size (300 dpi PNG, vector PDF) through a temporary file renamed into place, with
the permissions the umask allows (0644 under umask 022), so collaborators can read them.

Input frames are the report's row tables: one row per evaluated model (a training run at one
checkpoint, a base model or a published baseline) with the grid columns of
``pairrel.report.collect`` (``grid_model`` for the ``model`` key, ``None`` where a row has no
grid value), score columns on the 0-100 scale, ``model`` (the row label) and ``source``
(``"results"``, or ``"published: <citation>"``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator

from pairrel import layout
from pairrel.report import style
from pairrel.report.collect import RESERVED_COLUMNS, grid_column
from pairrel.report.style import plt

CURVE_SMOOTH_FRACTION = 0.05  # moving mean over 5 % of a run's logged steps (at least 1)
MIN_POINTS_TO_SMOOTH = 40  # shorter curves are drawn as logged
MAX_SERIES_PER_PANEL = 6  # more lines than this in one panel: facet the runs instead
MAX_STEP_TICKS = 8  # up to this many checkpoints, ablation_step has a tick at each one
# collect's label of a model evaluated at several revisions ends in " @<revision[:8]>"
BASE_LABEL_REVISION = re.compile(r" @\S{1,8}$")
# The heatmap's cells share one colour scale (the lowest to the highest score shown), so equal
# colours are equal scores in every column; a colour bar gives the scale.
HEATMAP_CMAP = "Blues"
TYPE_SCORES_TITLE = "Score per task type (0-100)"


# ------------------------------------------------------------------------ saving


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, out_base: Path) -> list[Path]:
    """Save ``fig`` as ``<out_base>.png`` (300 dpi) and ``.pdf`` at its exact size; close it.

    Written to a temporary file and renamed; the files get mode ``0666 & ~umask``. PDFs carry
    no creation date, so rebuilding from the same results gives the same file.
    """
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~_umask()
    written = []
    for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        target = out_base.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=style.DPI, metadata=metadata)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    plt.close(fig)
    return written


# ------------------------------------------------------------------ row tables


def grid_key(column: str) -> str:
    """Grid key of a grid column (inverse of ``collect.grid_column``: ``grid_model`` -> model)."""
    key = column.removeprefix("grid_")
    return key if column != key and key in RESERVED_COLUMNS else column


@dataclass
class Row:
    """One row of a figure: its name, grid values (empty for base/published) and scores."""

    name: str
    grid: dict
    values: dict[str, float]
    std: dict[str, float]
    n_seeds: int
    kind: str  # "run", "base" or "published"


def _grid_of(record: pd.Series, grid_columns: list[str]) -> dict:
    grid = {}
    for column in grid_columns:
        value = record.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            grid[grid_key(column)] = value
    return grid


def _final_checkpoints(frame: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    """Rows at the last evaluated step of their run (all rows when there is no step)."""
    step = grid_column("step")
    if step not in frame.columns or frame[step].isna().all():
        return frame
    keys = [c for c in grid_columns if c != step]
    steps = pd.to_numeric(frame[step], errors="coerce")
    run_key = pd.Series(["|".join(str(r[k]) for k in keys) for _, r in frame.iterrows()],
                        index=frame.index, dtype=object)
    last = steps.groupby(run_key).transform("max")
    return frame[steps.isna() | (steps == last)]


def figure_rows(main: pd.DataFrame, grid_columns: list[str], value_columns: list[str],
                display: style.DisplayNames | None = None, final_only: bool = True
                ) -> list[Row]:
    """Rows to plot: runs (final checkpoint, mean over seeds), then base models and baselines.

    Runs equal but for ``seed`` become one row: the mean of each score column over seeds and
    the sample standard deviation (ddof=1; 0 with one seed). Runs are named by
    ``style.run_name`` over the keys that vary among them; base models as
    ``"<model> (base)"``; published baselines by their label.
    """
    frame = main.copy()
    if final_only:
        frame = _final_checkpoints(frame, grid_columns)
    grids = [_grid_of(r, grid_columns) for _, r in frame.iterrows()]
    is_published = frame["source"].astype(str).str.startswith("published").to_numpy()
    runs = [g for g, pub in zip(grids, is_published) if g and not pub]
    keys = style.naming_keys(runs)
    seed = "seed"
    groups: dict[str, list[int]] = {}
    for position, (grid, pub) in enumerate(zip(grids, is_published)):
        if grid and not pub:
            ident = json.dumps({k: str(v) for k, v in grid.items() if k != seed},
                               sort_keys=True)
            groups.setdefault(ident, []).append(position)
    rows: list[Row] = []
    for positions in groups.values():
        block = frame.iloc[positions]
        grid = {k: v for k, v in grids[positions[0]].items() if k != seed}
        values = {c: float(pd.to_numeric(block[c], errors="coerce").mean())
                  for c in value_columns}
        std = {c: float(pd.to_numeric(block[c], errors="coerce").std(ddof=1))
               if len(block) > 1 else 0.0 for c in value_columns}
        rows.append(Row(style.run_name(grid, keys, display) or str(block.iloc[0]["model"]),
                        grid, values, std, len(block), "run"))
    for position, (grid, pub) in enumerate(zip(grids, is_published)):
        if grid and not pub:
            continue
        record = frame.iloc[position]
        label = str(record["model"])
        name = label if pub else f"{_base_model(label, display)} (base)"
        rows.append(Row(name, {}, {c: float(pd.to_numeric(record[c], errors="coerce"))
                                   for c in value_columns},
                        dict.fromkeys(value_columns, 0.0), 1, "published" if pub else "base"))
    return rows


def _base_model(label: object, display) -> str:
    """A base model's shown name from its row label (without collect's ``@revision``)."""
    return style.format_value("model", BASE_LABEL_REVISION.sub("", str(label)), display)


def _present_columns(main: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in main.columns
            and pd.to_numeric(main[c], errors="coerce").notna().any()]


# ------------------------------------------------------------- type scores


def type_scores_figure(main: pd.DataFrame, grid_columns: list[str], types: list[str],
                       display: style.DisplayNames | None = None):
    """Scores per task type and Average of every final-checkpoint row.

    Up to ``style.MAX_HEATMAP_ROWS`` rows: an annotated heatmap (rows × score columns; every
    cell printed and shaded on one scale shared by all columns, darker = higher, with a colour
    bar). More rows: a dot plot, one
    panel per score column, runs equal but for the loss on one line with one marker per loss.
    None when no row has a score.
    """
    columns = _present_columns(main, [*types, "Average"])
    if not columns:
        return None
    rows = [r for r in figure_rows(main, grid_columns, columns, display)
            if any(not math.isnan(r.values[c]) for c in columns)]
    rows = [r for r in rows if r.kind != "run"] + [r for r in rows if r.kind == "run"]
    if not rows:
        return None
    with style.paper_style():
        if len(rows) <= style.MAX_HEATMAP_ROWS:
            return _heatmap(rows, columns)
        return _dot_plot(rows, columns, display)


def _heatmap(rows: list[Row], columns: list[str]):
    data = np.array([[r.values[c] for c in columns] for r in rows], dtype=float)
    width = "one" if len(columns) <= 4 else "two"
    fig, axes = style.new_figure(width, 0.7 + 0.19 * len(rows))
    ax = axes[0][0]
    low, high = float(np.nanmin(data)), float(np.nanmax(data))
    if high <= low:  # one value: any positive span keeps the colours defined
        low, high = low - 0.5, high + 0.5
    shade = (data - low) / (high - low)  # 0 = the lowest score shown, 1 = the highest
    # the colour map's ends (white, near-black) are cut off: printed values stay legible
    span = high - low
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=HEATMAP_CMAP,
                      vmin=low - 0.15 / 0.7 * span, vmax=high + 0.15 / 0.7 * span)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="score (0-100)")
    bar.ax.set_ylim(low, high)
    bar.outline.set_visible(False)
    ax.set_title(TYPE_SCORES_TITLE)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), [r.name for r in rows])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for (i, j), value in np.ndenumerate(data):
        text = "–" if math.isnan(value) else f"{value:.1f}"
        dark = not math.isnan(value) and shade[i, j] > 0.55
        ax.text(j, i, text, ha="center", va="center", fontsize=style.MIN_FONT_PT,
                color="white" if dark else "black")
    n_references = sum(r.kind != "run" for r in rows)
    if 0 < n_references < len(rows):  # a white gap between references and runs
        ax.axhline(n_references - 0.5, color="white", linewidth=2.5)
    for i, row in enumerate(rows):  # reference rows (base, published) in grey italics
        if row.kind != "run":
            ax.get_yticklabels()[i].set_color("0.35")
            ax.get_yticklabels()[i].set_style("italic")
    fig.pairrel_data = {"kind": "heatmap", "rows": [r.name for r in rows], "columns": columns,
                        "values": data, "scale": (low, high)}
    return fig


def _dot_plot(rows: list[Row], columns: list[str], display):
    runs = [r for r in rows if r.kind == "run"]
    hue_key = "loss" if len({str(r.grid.get("loss")) for r in runs}) > 1 else None
    line_keys = [k for k in style.naming_keys([r.grid for r in runs]) if k != hue_key]
    hues = sorted({str(r.grid.get(hue_key)) for r in runs}) if hue_key else [""]
    lines: dict[str, dict[str, Row]] = {}
    for r in rows:  # references (base models, published) first, as in the heatmap
        if r.kind != "run":
            lines[r.name] = {"reference": r}
    for r in runs:
        line = style.run_name(r.grid, line_keys, display) or r.name
        lines.setdefault(line, {})[str(r.grid.get(hue_key)) if hue_key else ""] = r
    names = list(lines)
    ncols = min(4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = style.new_figure("two", nrows * (0.45 + 0.13 * len(names)) + 0.3, nrows, ncols,
                                 sharey=True)
    markers = "osD^v<>P"
    for extra in axes.flat[len(columns):]:
        extra.set_visible(False)
    y = np.arange(len(names))
    for ax, column in zip(axes.flat, columns):
        references = ["reference"] if any(r.kind != "run" for r in rows) else []
        for h, hue in enumerate([*hues, *references]):
            xs = [lines[n][hue].values[column] if hue in lines[n] else np.nan for n in names]
            label = ("reference" if hue == "reference" else
                     style.format_value(hue_key, hue, display) if hue_key else "run")
            ax.plot(xs, y, linestyle="none", marker=markers[h % len(markers)],
                    color="0.45" if hue == "reference" else style.color(h), label=label)
        ax.set_title(column)
        ax.margins(x=0.1)  # markers at the extremes stay whole
        ax.grid(axis="x")
        ax.set_yticks(y, names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.tick_params(axis="y", length=0)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    keep = [i for i, label in enumerate(labels) if label not in labels[:i]]
    fig.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="outside upper center",
               ncol=len(keep))
    for ax in axes[-1]:
        ax.set_xlabel("score (0-100)")
    fig.suptitle(TYPE_SCORES_TITLE, fontsize=style.BASE_FONT_PT)
    fig.pairrel_data = {"kind": "dots", "rows": names, "columns": columns}
    return fig


# --------------------------------------------------------------------- ablations


def _numeric_axes(runs: pd.DataFrame, grid_columns: list[str]) -> list[str]:
    axes = []
    for column in grid_columns:
        if column == grid_column("seed"):
            continue
        given = runs[column].dropna()  # rows without the key (a base model) are not on it
        values = pd.to_numeric(given, errors="coerce")
        if len(values) and values.notna().all() and values.nunique() >= 2:
            axes.append(column)
    return axes


def ablation_figures(main: pd.DataFrame, grid_columns: list[str], types: list[str],
                     display: style.DisplayNames | None = None) -> dict[str, object]:
    """One figure per numeric grid axis (``bias_init``, ``step``, …): score vs the axis value.

    One line per combination of the other grid values (seed aggregated), named by
    ``style.run_name`` and styled by ``style.series_styles`` (colour = loss, dashes = labels).
    Up to ``MAX_SERIES_PER_PANEL`` lines: one panel per score column (Average and each task
    type). More: Average only, one panel per combination of the remaining grid values (model,
    data, …), so no panel holds more than the loss × labels lines. Points are the mean over
    seeds, with ±1 standard deviation bars only where there are several seeds (and then the
    legend says so). Axes other than ``step`` use final checkpoints. Base models are grey
    horizontal lines. Returns ``{axis key: Figure}``.
    """
    published = main["source"].astype(str).str.startswith("published")
    ours = main[~published]
    has_grid = ours[grid_columns].notna().any(axis=1) if grid_columns else ours["model"].isna()
    runs, bases = ours[has_grid], ours[~has_grid]
    figures = {}
    for column in _numeric_axes(runs, grid_columns):
        key = grid_key(column)
        panels = _present_columns(runs, ["Average", *types])
        if not panels:
            continue
        frame = runs if key == "step" else _final_checkpoints(runs, grid_columns)
        frame = frame[frame[column].notna()]
        with style.paper_style():
            figures[key] = _ablation(frame, bases, grid_columns, column, panels, display)
    return figures


def _ablation(frame, bases, grid_columns, column, panels, display):
    """Panels per score column when few series; else Average only, one panel per facet."""
    key = grid_key(column)
    other_columns = [c for c in grid_columns if c not in {column, grid_column("seed")}]
    grids = [_grid_of(r, other_columns) for _, r in frame.iterrows()]
    keys = style.naming_keys(grids)
    names = [style.run_name(g, keys, display) or "run" for g in grids]
    frame = frame.assign(_series=names, _x=pd.to_numeric(frame[column]))
    n_seeds = frame.groupby(["_series", "_x"]).size()
    several = int(n_seeds.max()) > 1
    series = list(dict.fromkeys(names))
    if len(series) <= MAX_SERIES_PER_PANEL:
        looks = dict(zip(names, style.series_styles(grids, keys)))
        facets = [(panel, panel, series) for panel in panels]  # (title, column, series)
        legend_names = series
    else:  # facet by the keys that colour and dashes do not show; Average only
        shown = [k for k in ("loss", "labels") if k in keys] or keys[:1]
        facet_keys = [k for k in keys if k not in shown]
        looks = dict(zip(names, style.series_styles(grids, keys, distinguish=shown)))
        by_facet: dict[str, list[str]] = {}
        for grid, name in zip(grids, names):
            # one facet value a line: panel titles stay within a quarter of the page width
            title = "\n".join(style.format_value(k, grid[k], display)
                              for k in facet_keys if k in grid) or "all runs"
            if name not in by_facet.setdefault(title, []):
                by_facet[title].append(name)
        score = "Average" if "Average" in panels else panels[0]
        facets = [(title, score, members) for title, members in by_facet.items()]
        short = {name: style.run_name(grid, shown, display) for grid, name in zip(grids, names)}
        legend_names = None
    ncols = min(4, len(facets))
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = style.new_figure("two", 0.9 + 1.35 * nrows, nrows, ncols)
    for extra in axes.flat[len(facets):]:
        extra.set_visible(False)
    data = {}
    for ax, (title, score, members) in zip(axes.flat, facets):
        for name in members:
            group = frame[frame["_series"] == name]
            stats = group.groupby("_x")[score].agg(["mean", "std"])
            err = stats["std"].fillna(0).to_numpy() if several else None
            label = name if legend_names is not None else short[name]
            ax.errorbar(stats.index.to_numpy(), stats["mean"].to_numpy(), yerr=err,
                        markersize=3, capsize=2 if several else 0, label=label, **looks[name])
            data[(name, score)] = (stats.index.to_numpy(), stats["mean"].to_numpy())
        for b, (_, base) in enumerate(bases.iterrows()):
            if legend_names is None and not _base_in_facet(base, title, display):
                continue
            value = pd.to_numeric(base.get(score), errors="coerce")
            if not math.isnan(value):
                ax.axhline(value, color="0.5", linewidth=0.8,
                           linestyle=style.DASHES[1:][b % 3],
                           label=f"{_base_model(base['model'], display)} (base)")
        ax.set_title(title)
        ax.grid(alpha=0.4)
        ax.xaxis.set_major_locator(style.ticker.MaxNLocator(nbins=4))
    steps = sorted(frame["_x"].unique())
    for ax in axes[-1]:
        ax.set_xlabel("training step" if key == "step" else key)
    for ax in axes.flat:
        if key == "step" and len(steps) <= MAX_STEP_TICKS:
            ax.set_xticks(steps, [f"{x:g}" for x in steps])  # a tick at every checkpoint
        elif key == "step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    fig.supylabel("score (0-100)" if legend_names is not None else
                  f"{facets[0][1]} score (0-100)", fontsize=style.BASE_FONT_PT)
    labels, handles = _legend_entries(axes)
    order = sorted(range(len(labels)), key=lambda i: labels[i].endswith(" (base)"))  # runs first
    labels, handles = [labels[i] for i in order], [handles[i] for i in order]
    title = None
    if several:
        low, high = int(n_seeds.min()), int(n_seeds.max())
        title = f"mean ± s.d. over {low}–{high} seeds" if low != high else \
            f"mean ± s.d. over {high} seeds"
    if len(labels) > 1 or title:
        fig.legend(handles, labels, loc="outside lower center", title=title,
                   ncol=style.legend_columns(labels, style.TWO_COLUMN_IN))
    fig.pairrel_data = {"kind": "ablation", "axis": key, "series": data,
                        "panels": [f[0] for f in facets]}
    return fig


def _base_in_facet(base: pd.Series, facet_title: str, display) -> bool:
    """Whether a base model belongs in a facet (the facet names its model, or no model)."""
    lines = facet_title.split("\n")
    return _base_model(base["model"], display) in lines


# --------------------------------------------------------------- training curves


def find_runs(runs_dir: Path) -> list[Path]:
    """Run folders under ``runs_dir``: those holding both ``run.yaml`` and ``metrics.jsonl``."""
    runs = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((layout.CHECKPOINT_PREFIX, ".")))
        if layout.RUN_CONFIG in files and layout.METRICS in files:
            runs.append(Path(folder))
    return runs


def read_metrics(path: Path, skip_bad: bool = False, warnings: list[str] | None = None
                 ) -> pd.DataFrame:
    """``metrics.jsonl`` as a frame (columns step, loss, temperature, bias, …).

    A line that is not a JSON object with a ``step`` raises ValueError naming file and line;
    with ``skip_bad`` it is skipped and named in ``warnings``.
    """
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "step" not in record:
                    raise ValueError("not a JSON object with a 'step'")
            except ValueError as err:
                message = f"{path}:{number}: bad metrics line ({err})"
                if not skip_bad:
                    raise ValueError(message + " (pass --skip-bad to skip it)") from err
                if warnings is not None:
                    warnings.append(message)
                continue
            records.append(record)
    return pd.DataFrame(records)


@dataclass
class RunCurves:
    """A training run's grid values, loss type (``softmax``/``bce``) and logged metrics."""

    grid: dict
    loss_type: str
    metrics: pd.DataFrame
    folder: Path


def load_runs(runs_dir: Path, skip_bad: bool = False, warnings: list[str] | None = None
              ) -> list[RunCurves]:
    """Every run under ``runs_dir`` with its ``run.yaml`` (grid, loss type) and metrics.

    The loss type is ``loss.type`` of the resolved config; a ``run.yaml`` without it falls
    back to the metrics (only BCE logs a ``bias``). A run.yaml that is not a YAML mapping
    raises ValueError naming it.
    """
    curves = []
    for folder in find_runs(runs_dir):
        try:
            config = yaml.safe_load((folder / layout.RUN_CONFIG).read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ValueError(f"{folder / layout.RUN_CONFIG}: not valid YAML ({err})") from err
        if not isinstance(config, dict):
            raise ValueError(f"{folder / layout.RUN_CONFIG}: not a YAML mapping")
        metrics = read_metrics(folder / layout.METRICS, skip_bad=skip_bad, warnings=warnings)
        if metrics.empty:
            continue
        metrics = metrics.sort_values("step").reset_index(drop=True)
        loss = config.get("loss")
        loss_type = loss.get("type") if isinstance(loss, dict) else None
        if loss_type is None:
            loss_type = "bce" if "bias" in metrics.columns and metrics["bias"].notna().any() \
                else "softmax"
        grid = config.get("grid")
        if not isinstance(grid, dict):  # older run.yaml: the run id's key~value path parts
            grid = dict(p.split("~", 1) for p in folder.relative_to(runs_dir).parts if "~" in p)
        curves.append(RunCurves(grid, str(loss_type), metrics, folder))
    return curves


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving mean over ``window`` points (shorter at the start), NaNs ignored."""
    series = pd.Series(values, dtype=float)
    return series.rolling(window, min_periods=1).mean().to_numpy()


def training_curves_figure(runs: list[RunCurves], display: style.DisplayNames | None = None):
    """Training curves, one colour per run (the same in every panel).

    Panels: the loss of each loss type on its own axis (InfoNCE and BCE losses are different
    quantities), then for BCE runs the scale t = exp(t′) (log axis only where it spans a
    decade, plain tick labels) and the bias b. Curves with at least ``MIN_POINTS_TO_SMOOTH``
    points are drawn thin as logged with a trailing moving mean over
    ``CURVE_SMOOTH_FRACTION`` of the points on top. None when no run has metrics.
    """
    if not runs:
        return None
    keys = style.naming_keys([r.grid for r in runs])
    names = [style.run_name(r.grid, keys, display) or r.folder.name for r in runs]
    looks = style.series_styles([r.grid for r in runs], keys)
    order = sorted(range(len(runs)), key=lambda i: names[i])
    loss_types = [t for t in style.LOSS_TYPE_TITLES if any(r.loss_type == t for r in runs)]
    loss_types += sorted({r.loss_type for r in runs} - set(loss_types))
    panels = [("loss", t) for t in loss_types]
    if any(r.loss_type == "bce" for r in runs):
        panels += [("temperature", "bce"), ("bias", "bce")]
    titles = {"temperature": "BCE scale t = exp(t′)", "bias": "BCE bias b"}
    if len(panels) == 4:
        nrows, ncols, height = 2, 2, 3.2
    else:
        nrows, ncols, height = 1, len(panels), 2.0
    with style.paper_style():
        fig, axes = style.new_figure("two", height + 0.12 * len(runs), nrows, ncols)
        data = {}
        for ax, (metric, loss_type) in zip(axes.flat, panels):
            for i in order:
                run = runs[i]
                if run.loss_type != loss_type or metric not in run.metrics.columns:
                    continue
                steps = run.metrics["step"].to_numpy(dtype=float)
                values = pd.to_numeric(run.metrics[metric], errors="coerce").to_numpy(dtype=float)
                if np.isnan(values).all():
                    continue
                look = {"color": looks[i]["color"], "linestyle": looks[i]["linestyle"]}
                if len(values) >= MIN_POINTS_TO_SMOOTH:
                    window = max(1, round(CURVE_SMOOTH_FRACTION * len(values)))
                    ax.plot(steps, values, linewidth=0.5, alpha=0.3, color=look["color"])
                    ax.plot(steps, moving_mean(values, window), label=names[i], **look)
                else:
                    ax.plot(steps, values, label=names[i], **look)
                data[(names[i], metric)] = (steps, values)
            title = (f"{style.LOSS_TYPE_TITLES.get(loss_type, loss_type)} loss"
                     if metric == "loss" else titles[metric])
            ax.set_title(title)
            ax.set_xlabel("training step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.4)
            if metric == "temperature":
                style.readable_log_axis(ax, "y")
        labels, handles = _legend_entries(axes)
        fig.legend(handles, labels, loc="outside lower center",
                   ncol=style.legend_columns(labels, style.TWO_COLUMN_IN))
        fig.pairrel_data = {"kind": "curves", "series": data, "names": names}
    return fig


def _legend_entries(axes) -> tuple[list[str], list]:
    """(labels, handles) of every panel, each label once, in first-seen order (one figure legend)."""
    labels, handles = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                labels.append(label)
                handles.append(handle)
    return labels, handles


# ------------------------------------------------------------- report entry points


# Figures the report always writes (the workflow declares them): a placeholder stands in when
# there is nothing to plot, so an older figure never survives beside newer tables.
ALWAYS_WRITTEN = tuple(output for output, files in layout.REPORT_RULE_FILES.items()
                       if files[0].endswith(layout.FIGURE_FORMATS))


def placeholder(out_base: Path, message: str) -> list[Path]:
    """A one-column figure that says why there is no plot (``out_base``.png and .pdf)."""
    with style.paper_style():
        fig, axes = style.new_figure("one", 1.2)
        ax = axes[0][0]
        ax.axis("off")
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    return save_figure(fig, out_base)


def type_comparison(main: pd.DataFrame, types: list[str], out_base: Path,
                    grid_columns: list[str] | None = None,
                    display: style.DisplayNames | None = None) -> list[Path]:
    """Build ``type_scores_figure`` and save it at ``out_base`` (.png, .pdf); [] when empty."""
    if grid_columns is None:
        grid_columns = [c for c in main.columns if c not in {"model", *types, "Average",
                                                             "n_tasks", "missing", "source"}]
    fig = type_scores_figure(main, grid_columns, types, display)
    return save_figure(fig, out_base) if fig is not None else []


def ablation_plots(main: pd.DataFrame, grid_columns: list[str], types: list[str],
                   out_dir: Path, display: style.DisplayNames | None = None) -> list[Path]:
    """Save every ``ablation_figures`` figure as ``out_dir/ablation_<axis>.{png,pdf}``."""
    written: list[Path] = []
    for key, fig in ablation_figures(main, grid_columns, types, display).items():
        written += save_figure(fig, Path(out_dir) / layout.ablation_figure(key))
    return written


def training_curves(runs_dir: Path, out_base: Path, skip_bad: bool = False,
                    warnings: list[str] | None = None,
                    display: style.DisplayNames | None = None) -> list[Path]:
    """Training curves of every run under ``runs_dir``, saved at ``out_base``.

    A fresh clone with only evaluation results copied in has no runs: nothing is written and
    ``warnings`` says so (the tables still build).
    """
    runs_dir = Path(runs_dir)
    runs = load_runs(runs_dir, skip_bad, warnings) if runs_dir.is_dir() else []
    if not runs:
        if warnings is not None:
            warnings.append(f"--runs {runs_dir}: no run folder (run.yaml + metrics.jsonl); "
                            "no training curves")
        return []
    return save_figure(training_curves_figure(runs, display), out_base)
