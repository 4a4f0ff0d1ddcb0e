"""Paired comparison of variants: bootstrap CI, sign test, pairing over the other grid values."""

import numpy as np
import pandas as pd
import pytest
from tests.test_report_tables import QS, write_run

from pairrel.report import cli
from pairrel.report.collect import collect
from pairrel.report.compare import (
    automatic_loss_pair,
    bootstrap_ci,
    compare,
    parse_selector,
    sign_test,
)


def test_sign_test_hand_values():
    # 3 wins, 1 loss, 1 tie: p = 2 * P(X >= 3 | n=4) = 2 * 5/16
    assert sign_test([1.0, 2.0, 3.0, -1.0, 0.0]) == (3, 1, 1, pytest.approx(0.625))
    assert sign_test([1.0] * 5) == (5, 0, 0, pytest.approx(2 / 32))
    assert sign_test([0.0, 0.0]) == (0, 0, 2, 1.0)


def test_bootstrap_ci_hand_values():
    # two tasks, diffs 0 and 10: resampled means are 0, 5, 10 with probability 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are exactly 0 and 10
    assert bootstrap_ci([0.0, 10.0]) == (0.0, 10.0)
    assert bootstrap_ci([2.5, 2.5, 2.5]) == (2.5, 2.5)
    diffs = np.random.default_rng(1).normal(1.0, 2.0, size=30)
    assert bootstrap_ci(diffs) == bootstrap_ci(diffs)  # fixed seed: reproducible
    low, high = bootstrap_ci(diffs)
    assert low < diffs.mean() < high


def test_parse_selector():
    assert parse_selector("loss=bce") == {"loss": "bce"}
    assert parse_selector("loss=bce, seed=42") == {"loss": "bce", "seed": "42"}
    assert parse_selector("minilm (loss=bce, seed=1)") == "minilm (loss=bce, seed=1)"


def _grid(tmp_path):
    """loss × labels × seed; per-task (retrieval, sts, pair classification) scores on 0-1."""
    values = {
        ("bce", "binary@2", 1): (0.40, 0.80, 0.70), ("bce", "binary@2", 2): (0.42, 0.78, 0.74),
        ("softmax", "binary@2", 1): (0.38, 0.75, 0.66),
        ("softmax", "binary@2", 2): (0.36, 0.77, 0.62),
        ("bce", "graded-linear", 1): (0.50, 0.70, 0.60),
        ("softmax", "graded-linear", 1): (0.50, 0.72, 0.50),
    }
    for (loss, labels, seed), v in values.items():
        write_run(tmp_path, {"loss": loss, "labels": labels, "seed": seed}, v)
    return collect([tmp_path], benchmark=QS)


def test_pairs_match_other_grid_values_and_average_seeds(tmp_path):
    coll = _grid(tmp_path)
    per_task, summary = compare(coll.scores, coll.grid_columns, "loss=bce", "loss=softmax")
    summary = summary.set_index("pair")
    assert list(summary.index) == ["labels=binary@2", "labels=graded-linear"]
    # binary@2, seed means: bce (41, 79, 72), softmax (37, 76, 64) -> diffs 4, 3, 8
    binary = summary.loc["labels=binary@2"]
    assert binary["mean_diff"] == pytest.approx(5.0)
    assert (binary["wins"], binary["losses"], binary["ties"]) == (3, 0, 0)
    assert binary["sign_p"] == pytest.approx(0.25)
    # P(all three resampled tasks = the smallest diff) = 1/27 > 2.5 %: the bounds are 3 and 8
    assert (binary["ci_low"], binary["ci_high"]) == (pytest.approx(3.0), pytest.approx(8.0))
    assert (binary["n_seeds_a"], binary["n_seeds_b"]) == (2, 2)
    # graded-linear, one seed: diffs 0 (tie), -2, 10
    graded = summary.loc["labels=graded-linear"]
    assert graded["mean_diff"] == pytest.approx(8 / 3)
    assert (graded["wins"], graded["losses"], graded["ties"]) == (1, 1, 1)
    rows = per_task[per_task["pair"] == "labels=binary@2"].set_index("task")
    assert rows.loc["PairrelQuickstartPairClassification", "diff"] == pytest.approx(8.0)
    assert rows.loc["PairrelQuickstartSTS", "a"] == pytest.approx(79.0)


def test_label_and_multi_key_selectors(tmp_path):
    coll = _grid(tmp_path)
    _, by_label = compare(coll.scores, coll.grid_columns,
                          "all-MiniLM-L6-v2 (loss=bce, labels=binary@2, seed=1)",
                          "all-MiniLM-L6-v2 (loss=softmax, labels=binary@2, seed=1)")
    _, by_keys = compare(coll.scores, coll.grid_columns, "loss=bce,labels=binary@2,seed=1",
                         "loss=softmax,labels=binary@2,seed=1")
    # seed 1: diffs 2, 5, 4
    assert by_label.loc[0, "mean_diff"] == pytest.approx(11 / 3)
    assert by_keys.loc[0, "mean_diff"] == pytest.approx(11 / 3)
    with pytest.raises(ValueError, match="not a grid key"):
        compare(coll.scores, coll.grid_columns, "lr=1", "lr=2")
    with pytest.raises(ValueError, match="no results match"):
        compare(coll.scores, coll.grid_columns, "loss=bce", "loss=infonce")


def test_automatic_pair_only_for_exactly_two_losses(tmp_path):
    coll = _grid(tmp_path)
    assert automatic_loss_pair(coll.scores) == ("loss=bce", "loss=softmax")
    only_bce = coll.scores[coll.scores["loss"] == "bce"]
    assert automatic_loss_pair(only_bce) is None


def test_cli_compare_option(tmp_path, capsys):
    _grid(tmp_path / "cache")
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(tmp_path / "cache"), "--benchmark", QS,
                     "--out", str(out), "--compare", "labels=graded-linear",
                     "labels=binary@2"]) == 0
    summary = pd.read_csv(out / "comparison_summary.csv")
    # pairs on loss (seeds averaged): bce graded (50,70,60) - binary (41,79,72) = 9,-9,-12
    bce = summary.set_index("pair").loc["loss=bce"]
    assert bce["mean_diff"] == pytest.approx(-4.0)
    assert "labels=graded-linear vs labels=binary@2" in (out / "comparison.md").read_text()
