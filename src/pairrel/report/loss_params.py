"""BCE's learned scale t and bias b at the end of each run, and which of them barely moved.

A run's initial values are its resolved loss config's (``temperature_init``, ``bias_init``,
``run.yaml``); its final ones the last logged step of ``metrics.jsonl``. A learnable parameter
whose final value is within ``STUCK_FRACTION`` of its initial one (relative to |initial|; absolute
when the initial value is 0) is named in the report's notes: at a learning rate too small for the
run's length (``training.loss_learning_rate``) a "learned" t or b stays at its initialisation.
"""

from __future__ import annotations

import math

import pandas as pd
import yaml

from pairrel.layout import RUN_CONFIG
from pairrel.report.collect import grid_column

STUCK_FRACTION = 0.05
COLUMN = "t, b (final)"


def final_loss_parameters(runs: list) -> pd.DataFrame:
    """One row per BCE run (:class:`pairrel.report.figures.RunCurves`): its grid values (as the
    report's grid columns), ``t_init``, ``t_final``, ``b_init``, ``b_final``, ``learn_t``, ``learn_b``
    (NaN and None where the run.yaml has no ``loss:``)."""
    rows = []
    for run in runs:
        if run.loss_type != "bce" or "temperature" not in run.metrics or "bias" not in run.metrics:
            continue
        loss = _bce_settings(run.folder / RUN_CONFIG)
        last = run.metrics.iloc[-1]
        rows.append({**{grid_column(k): v for k, v in run.grid.items()},
                     "run": str(run.folder.name), "folder": str(run.folder),
                     "t_init": float(loss.temperature_init) if loss else math.nan, "t_final": float(last["temperature"]),
                     "b_init": float(loss.bias_init) if loss else math.nan, "b_final": float(last["bias"]),
                     # None: unknown (no loss settings); a note needs the initial value anyway
                     "learn_t": loss.learn_temperature if loss else None, "learn_b": loss.learn_bias if loss else None})
    return pd.DataFrame(rows)


def _bce_settings(run_yaml):
    """The BCE loss settings of a finished run's ``run.yaml``, or None when it has no ``loss:``
    (a hand-assembled results folder: :func:`pairrel.report.figures.load_runs` then infers the
    loss type from the metrics, and the initial t and b are unknown). A ``loss:`` is written
    resolved, every key there: one without them is an error naming the file."""
    from pairrel.config import ConfigError
    from pairrel.settings import BCELossSettings

    try:
        cfg = yaml.safe_load(run_yaml.read_text(encoding="utf-8"))
        if not isinstance(cfg, dict) or "loss" not in cfg:
            return None
        return BCELossSettings.from_dict(cfg["loss"], "loss")
    except (OSError, yaml.YAMLError, ConfigError) as err:
        raise ValueError(f"{run_yaml}: not the resolved config of a BCE run ({err}); "
                         "the report reads t and b's initial values from it") from None


def moved_fraction(initial: float, final: float) -> float:
    """|final - initial| / |initial| (absolute change when the initial value is 0)."""
    return abs(final - initial) / (abs(initial) if initial else 1.0)


def stuck_notes(params: pd.DataFrame, runs_root=None) -> list[str]:
    """A note per learnable t or b that moved less than ``STUCK_FRACTION`` over its run."""
    notes = []
    for _, row in params.iterrows():
        for symbol, learn, init, final in (("t", row["learn_t"], row["t_init"], row["t_final"]),
                                           ("b", row["learn_b"], row["b_init"], row["b_final"])):
            if learn and not math.isnan(init) and moved_fraction(init, final) < STUCK_FRACTION:
                notes.append(f"learnable {symbol} of {row['folder']} moved {100 * moved_fraction(init, final):.2f} % "
                             f"({init:g} -> {final:.4g}; under {100 * STUCK_FRACTION:g} %): its learning rate "
                             "(training.loss_learning_rate) may be too small for the run's length")
    return notes


def cells(frame: pd.DataFrame, identity: list[str], params: pd.DataFrame | None) -> list[str]:
    """The ``COLUMN`` cell of each table row: final t and b (mean over the row's runs), "–"
    for rows without BCE runs."""
    out = []
    for _, row in frame.iterrows():
        match = params if params is not None and len(params) and row.get("kind") == "trained" else None
        if match is not None:
            for c in identity:
                if c not in match.columns:
                    match = match.iloc[0:0]
                    break
                match = match[match[c].map(str) == str(row[c])]
        if match is None or match.empty:
            out.append("–")
            continue
        out.append(f"t {match['t_final'].mean():.3g}, b {match['b_final'].mean():.3g}")
    return out
