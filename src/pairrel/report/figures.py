"""Figures (PNG + PDF): task-type comparison, ablations over numeric grid axes, training curves.

Every figure is drawn with matplotlib's Agg backend (no display needed) and saved through a
temporary file that is renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pairrel.report.collect import grid_column  # noqa: E402

MAX_BAR_VARIANTS = 8  # more variants than this: a heatmap reads better than bars
CURVE_KEYS = ("loss", "temperature", "bias")


def save_figure(fig, out_base: Path) -> list[Path]:
    """Save ``fig`` as ``<out_base>.png`` and ``.pdf`` (temp file + rename); close it."""
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("png", "pdf"):
        target = out_base.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    plt.close(fig)
    return written


def type_comparison(main: pd.DataFrame, types: list[str], out_base: Path) -> list[Path]:
    """Per-task-type scores of every row: grouped bars (few rows) or an annotated heatmap."""
    columns = [*types, "Average"]
    data = main.set_index("model")[columns].astype(float)
    data = data.dropna(how="all")
    if data.empty:
        return []
    if len(data) <= MAX_BAR_VARIANTS:
        fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(columns)), 4.2))
        width = 0.8 / len(data)
        x = np.arange(len(columns))
        for i, (label, values) in enumerate(data.iterrows()):
            ax.bar(x + (i - (len(data) - 1) / 2) * width, values.to_numpy(), width, label=label)
        ax.set_xticks(x, columns, rotation=20, ha="right")
        ax.set_ylabel("score (0-100)")
        ax.set_title("Scores per task type")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
                  frameon=False)
    else:
        fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 4.0, 0.32 * len(data) + 1.6))
        image = ax.imshow(data.to_numpy(), aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(data)), data.index, fontsize=7)
        for (i, j), value in np.ndenumerate(data.to_numpy()):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if value < np.nanmean(data.to_numpy()[:, j]) else "black")
        fig.colorbar(image, ax=ax, label="score (0-100)")
        ax.set_title("Scores per task type")
    return save_figure(fig, out_base)


def _numeric_axes(ours: pd.DataFrame, grid_columns: list[str]) -> list[str]:
    axes = []
    for column in grid_columns:
        if column == grid_column("seed"):
            continue
        given = ours[column].dropna()  # rows without the key (a base model) are not on the axis
        values = pd.to_numeric(given, errors="coerce")
        if len(values) and values.notna().all() and values.nunique() >= 2:
            axes.append(column)
    return axes


def ablation_plots(main: pd.DataFrame, grid_columns: list[str], types: list[str],
                   out_dir: Path) -> list[Path]:
    """One figure per numeric grid axis (bias_init, step, …): score vs axis value.

    Panels: Average and each task type. One line per combination of the other grid values
    (seed excluded); points are the mean over seeds, error bars one standard deviation.
    """
    ours = main[main["source"] == "results"]
    written: list[Path] = []
    seed_col = grid_column("seed")
    for axis in _numeric_axes(ours, grid_columns):
        panels = [c for c in ["Average", *types] if ours[c].notna().any()]
        if not panels:
            continue
        others = [c for c in grid_columns if c not in {axis, seed_col}
                  and ours[c].nunique(dropna=True) > 1]
        ncols = min(4, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.2 * nrows), squeeze=False)
        for extra in grid.flat[len(panels):]:
            extra.set_visible(False)
        axes = [list(grid.flat[:len(panels)])]
        frame = ours[ours[axis].notna()]
        frame = frame.assign(_x=pd.to_numeric(frame[axis]))
        groups = frame.groupby(others, dropna=False, sort=True) if others else [((), frame)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{c.removeprefix('grid_')}={v}"
                              for c, v in zip(others, key)) or "all"
            stats = group.groupby("_x")[panels].agg(["mean", "std"])
            for ax, panel in zip(axes[0], panels):
                mean = stats[(panel, "mean")]
                ax.errorbar(mean.index, mean.to_numpy(), yerr=stats[(panel, "std")].fillna(0),
                            marker="o", capsize=3, label=label)
        for ax, panel in zip(axes[0], panels):
            ax.set_title(panel)
            ax.set_xlabel(axis.removeprefix("grid_"))
            ax.grid(alpha=0.3)
        for row in grid:
            row[0].set_ylabel("score (0-100)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.suptitle(f"Ablation over {axis.removeprefix('grid_')} (mean ± std over seeds)")
        fig.tight_layout(rect=(0, 0.06 if len(labels) > 1 else 0, 1, 1))
        if len(labels) > 1:
            fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)),
                       fontsize=8, frameon=False)
        written += save_figure(fig, Path(out_dir) / f"ablation_{axis.removeprefix('grid_')}")
    return written


def find_runs(runs_dir: Path) -> list[Path]:
    """Run folders under ``runs_dir``: those holding both ``run.yaml`` and ``metrics.jsonl``."""
    runs = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("checkpoint-", ".")))
        if "run.yaml" in files and "metrics.jsonl" in files:
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


def _short_run_names(runs: list[Path], root: Path) -> list[str]:
    """Run ids without the ``key~value`` parts that every run shares."""
    parts = [run.relative_to(root).parts for run in runs]
    shared = set.intersection(*(set(p) for p in parts)) if parts else set()
    names = ["/".join(x for x in p if x not in shared) or "/".join(p) or run.name
             for p, run in zip(parts, runs)]
    return names


def training_curves(runs_dir: Path, out_base: Path, skip_bad: bool = False,
                    warnings: list[str] | None = None) -> list[Path]:
    """Loss, temperature and bias against step, one line per run (log scale for temperature)."""
    runs_dir = Path(runs_dir)
    # A fresh clone with only evaluation results copied in has no runs: the tables still build.
    runs = find_runs(runs_dir) if runs_dir.is_dir() else []
    if not runs:
        if warnings is not None:
            warnings.append(f"--runs {runs_dir}: no run folder (run.yaml + metrics.jsonl); "
                            "no training curves")
        return []
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(4.2 * len(CURVE_KEYS), 3.6),
                             squeeze=False)
    for index, (run, name) in enumerate(zip(runs, _short_run_names(runs, runs_dir))):
        metrics = read_metrics(run / "metrics.jsonl", skip_bad=skip_bad, warnings=warnings)
        if metrics.empty:
            continue
        metrics = metrics.sort_values("step")
        # Only the BCE loss logs a bias; a softmax run's "temperature" is its fixed tau, a
        # different quantity from BCE's scale t, so its curve would mislead in that panel.
        is_bce = "bias" in metrics.columns
        for ax, key in zip(axes[0], CURVE_KEYS):
            if key in metrics.columns and (key == "loss" or is_bce):
                values = pd.to_numeric(metrics[key], errors="coerce")
                if values.notna().any():
                    ax.plot(metrics["step"], values, label=name, linewidth=1.2, color=f"C{index % 10}")
    titles = {"temperature": "BCE scale t = exp(t′)", "bias": "BCE bias b"}
    for ax, key in zip(axes[0], CURVE_KEYS):
        ax.set_title(titles.get(key, key))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        lines = ax.get_lines()
        if key == "temperature" and lines and all(
                np.nanmin(line.get_ydata()) > 0 for line in lines):
            ax.set_yscale("log")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))),
               fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.035 * math.ceil(
                   len(labels) / 3)))
    fig.suptitle("Training curves")
    fig.tight_layout()
    return save_figure(fig, out_base)
