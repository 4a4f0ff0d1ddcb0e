"""Paired comparison of two variants over benchmark tasks (e.g. BCE vs softmax).

For variants A and B scored on the same n tasks, d_i = score_A(task i) - score_B(task i)
(0-100 scale). Reported:

* mean difference  d̄ = (1/n) Σ d_i;
* a paired bootstrap 95 % confidence interval of d̄: resample the n tasks with replacement
  10,000 times (numpy ``default_rng(seed)``, fixed seed), take the 2.5th and 97.5th
  percentiles of the resampled means (Efron & Tibshirani 1993, percentile interval);
* a two-sided sign test: wins = #{d_i > 0}, losses = #{d_i < 0}, ties dropped,
  p = ``scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue``.

Selectors name a side: an exact row label, or ``key=value[,key=value…]`` over grid values
(``loss=bce``). Rows of A and B are paired when they agree on every other grid value except
``seed``; each side's per-task scores are first averaged over its seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from pairrel.report.collect import grid_column

N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def bootstrap_ci(diffs, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (tasks resampled with replacement)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def sign_test(diffs, tie_tolerance: float = 1e-9) -> tuple[int, int, int, float]:
    """(wins, losses, ties, two-sided p) of the sign test; ties are dropped from the test."""
    d = np.asarray(diffs, dtype=float)
    wins = int((d > tie_tolerance).sum())
    losses = int((d < -tie_tolerance).sum())
    ties = int(d.size - wins - losses)
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return wins, losses, ties, float(p)


def parse_selector(text: str) -> dict[str, str] | str:
    """``"loss=bce,seed=42"`` -> ``{"loss": "bce", "seed": "42"}``; anything else is a label."""
    parts = [p.strip() for p in text.split(",")]
    if all("=" in p and p.split("=", 1)[0].strip().isidentifier() for p in parts):
        return {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip() for p in parts}
    return text


def _matches(value: object, wanted: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if str(value) == wanted:
        return True
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def _select(scores: pd.DataFrame, selector: dict[str, str] | str) -> pd.DataFrame:
    if isinstance(selector, str):
        picked = scores[scores["label"] == selector]
        if picked.empty:
            raise ValueError(f"--compare: no row labelled {selector!r}; labels are "
                             f"{sorted(scores['label'].unique())}")
        return picked
    mask = pd.Series(True, index=scores.index)
    for key, wanted in selector.items():
        column = grid_column(key)
        if column not in scores.columns:
            raise ValueError(f"--compare: {key!r} is not a grid key of these results")
        mask &= scores[column].map(lambda v, w=wanted: _matches(v, w))
    picked = scores[mask]
    if picked.empty:
        raise ValueError(f"--compare: no results match {selector}")
    return picked


def _natural_key(column: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().all() else column.astype(str)


def _describe(selector: dict[str, str] | str) -> str:
    if isinstance(selector, str):
        return selector
    return ",".join(f"{k}={v}" for k, v in selector.items())


def compare(scores: pd.DataFrame, grid_columns: list[str], a: str, b: str,
            n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare selectors ``a`` and ``b`` on the tidy scores of ``collect``.

    Returns ``(per_task, summary)``: per_task has ``pair, task, type, a, b, diff`` (one row
    per paired task); summary has one row per pair with ``n_tasks, mean_diff, ci_low,
    ci_high, wins, losses, ties, sign_p, n_seeds_a, n_seeds_b``.
    """
    sel_a, sel_b = parse_selector(a), parse_selector(b)
    side_a, side_b = _select(scores, sel_a), _select(scores, sel_b)
    used = set()
    for sel in (sel_a, sel_b):
        if isinstance(sel, dict):
            used |= {grid_column(k) for k in sel}
    seed_col = grid_column("seed")
    if isinstance(sel_a, str) or isinstance(sel_b, str):
        keys = []  # labels name exact rows: one pair
    else:
        keys = [c for c in grid_columns if c not in used and c != seed_col]

    def per_side(side: pd.DataFrame) -> pd.DataFrame:
        grouped = side.groupby([*keys, "task", "type"], dropna=False, sort=False)
        out = grouped["score"].mean().rename("score").reset_index()
        n_seeds = grouped["label"].nunique().rename("n_seeds").reset_index()
        return out.merge(n_seeds, on=[*keys, "task", "type"])

    merged = per_side(side_a).merge(per_side(side_b), on=[*keys, "task", "type"],
                                    suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError(f"--compare {_describe(sel_a)} {_describe(sel_b)}: no task is scored "
                         "for both sides with equal other grid values")
    if keys:  # pairs in natural order (step 200 before 1000)
        merged = merged.sort_values(keys, kind="stable", key=_natural_key).reset_index(drop=True)
    merged["pair"] = merged.apply(
        lambda r: ", ".join(f"{k.removeprefix('grid_')}={r[k]}" for k in keys
                            if not pd.isna(r[k])) or "all", axis=1)
    merged["diff"] = merged["score_a"] - merged["score_b"]
    per_task = merged.rename(columns={"score_a": "a", "score_b": "b"})[
        ["pair", "task", "type", "a", "b", "diff"]]
    summaries = []
    for pair, group in merged.groupby("pair", sort=False):
        low, high = bootstrap_ci(group["diff"], n_resamples=n_resamples, seed=seed)
        wins, losses, ties, p = sign_test(group["diff"])
        summaries.append({
            "pair": pair, "a": _describe(sel_a), "b": _describe(sel_b),
            "n_tasks": len(group), "mean_diff": float(group["diff"].mean()),
            "ci_low": low, "ci_high": high, "wins": wins, "losses": losses, "ties": ties,
            "sign_p": p, "n_seeds_a": int(group["n_seeds_a"].max()),
            "n_seeds_b": int(group["n_seeds_b"].max()),
        })
    return per_task.reset_index(drop=True), pd.DataFrame(summaries)


def automatic_loss_pair(scores: pd.DataFrame) -> tuple[str, str] | None:
    """``("loss=bce", "loss=softmax")`` when the grid has exactly two losses, else None."""
    column = grid_column("loss")
    if column not in scores.columns:
        return None
    losses = sorted(str(v) for v in scores[column].dropna().unique())
    if len(losses) != 2:
        return None
    first, second = (("bce", "softmax") if set(losses) == {"bce", "softmax"} else losses)
    return f"loss={first}", f"loss={second}"
