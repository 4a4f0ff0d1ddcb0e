"""Paired comparison of variants: bootstrap CI, sign test, pairing over the other grid values."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from tests.test_report_tables import QS, write_run

from pairrel import cli
from pairrel.report.collect import collect
from pairrel.report.compare import (
    BOOTSTRAP_MIN_N,
    automatic_loss_pair,
    bootstrap_ci,
    compare,
    paired_summary,
    parse_selector,
    sign_test,
    wilcoxon_signed_rank,
)


def test_sign_test_hand_values():
    # 3 wins, 1 loss, 1 tie: p = 2 * P(X >= 3 | n=4) = 2 * 5/16
    assert sign_test([1.0, 2.0, 3.0, -1.0, 0.0]) == (3, 1, 1, pytest.approx(0.625))
    assert sign_test([1.0] * 5) == (5, 0, 0, pytest.approx(2 / 32))
    assert sign_test([0.0, 0.0]) == (0, 0, 2, 1.0)


def test_bootstrap_ci_hand_values():
    # two units, diffs 0 and 10: resampled means are 0, 5, 10 with probability 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are exactly 0 and 10
    assert bootstrap_ci([0.0, 10.0]) == (0.0, 10.0)
    assert bootstrap_ci([2.5, 2.5, 2.5]) == (2.5, 2.5)
    # 3 units: P(all three resampled = the smallest) = 1/27 > 2.5 %: the interval is the range
    assert bootstrap_ci([3.0, 4.0, 8.0]) == (3.0, 8.0)


def test_bootstrap_ci_is_the_percentile_interval_of_the_mean():
    # large n: the percentile interval of the mean is mean ± 1.96·s_n/sqrt(n) (CLT), s_n with
    # divisor n; a CI of the data (not of the mean) or a wrong quantile would be far off
    diffs = np.random.default_rng(1).normal(1.0, 2.0, size=400)
    low, high = bootstrap_ci(diffs)
    half = 1.959964 * diffs.std(ddof=0) / np.sqrt(400)
    assert (high - low) / 2 == pytest.approx(half, rel=0.05)
    assert (low + high) / 2 == pytest.approx(diffs.mean(), abs=0.05 * half)


def test_wilcoxon_exact_hand_values():
    # ranks 1,2,3,4, W+ = 6; the 16 sign patterns give W+ = 5 exactly twice ({1,4}, {2,3}),
    # so P(|W+ - 5| >= 1) = 14/16
    assert wilcoxon_signed_rank([1.0, 2.0, 3.0, -4.0]) == (4, 6.0, pytest.approx(14 / 16))
    assert wilcoxon_signed_rank([1.0, 2.0, 3.0, 4.0]) == (4, 10.0, pytest.approx(2 / 16))
    # ties: |d| = 1, 1, 2 have average ranks 1.5, 1.5, 3; all positive is one of 8 patterns at
    # each extreme -> 2/8. A zero is dropped (Wilcoxon's convention), so m = 3
    assert wilcoxon_signed_rank([1.0, 1.0, 2.0, 0.0]) == (3, 6.0, pytest.approx(0.25))
    # ranks 1.5, 1.5, 3 with signs -, +, +: W+ = 4.5, null mean 3; the 8 patterns give
    # 0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6, of which 6 are >= 1.5 from the mean -> p = 6/8
    assert wilcoxon_signed_rank([-1.0, 1.0, 2.0]) == (3, 4.5, pytest.approx(0.75))
    assert wilcoxon_signed_rank([0.0, 0.0]) == (0, 0.0, 1.0)


@pytest.mark.parametrize("n", [5, 9, 14])
def test_wilcoxon_matches_scipy_exact_without_ties(n):
    diffs = np.random.default_rng(n).normal(0.4, 1.0, size=n)
    expected = scipy.stats.wilcoxon(diffs, method="exact").pvalue
    assert wilcoxon_signed_rank(diffs)[2] == pytest.approx(expected, rel=1e-9)


def test_paired_summary_states_n_and_skips_bootstrap_below_threshold():
    small = paired_summary([4.0, 3.0, 8.0])
    assert small["n"] == 3 and small["mean_diff"] == pytest.approx(5.0)
    assert small["median_diff"] == pytest.approx(4.0)
    assert small["min_p"] == pytest.approx(0.25)  # 2 / 2^3: nothing on 3 tasks is significant
    assert small["wilcoxon_p"] == pytest.approx(0.25) and small["sign_p"] == pytest.approx(0.25)
    assert math.isnan(small["ci_low"]) and math.isnan(small["ci_high"])
    diffs = [1.0] * 15 + [-1.0] * 5  # n = 20: the threshold
    large = paired_summary(diffs)
    assert large["n"] == BOOTSTRAP_MIN_N == 20
    assert (large["wins"], large["losses"]) == (15, 5)
    assert large["sign_p"] == pytest.approx(2 * sum(math.comb(20, k) for k in range(15, 21)) / 2**20)
    assert not math.isnan(large["ci_low"]) and large["ci_low"] < 0.5 < large["ci_high"]


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
    assert (binary["n"], binary["wilcoxon_p"], binary["min_p"]) == (3, pytest.approx(0.25), 0.25)
    assert math.isnan(binary["ci_low"])  # 3 tasks: below the bootstrap threshold
    assert (binary["n_runs_a"], binary["n_runs_b"]) == (2, 2)
    # graded-linear, one seed: diffs 0 (tie), -2, 10
    graded = summary.loc["labels=graded-linear"]
    assert graded["mean_diff"] == pytest.approx(8 / 3)
    assert (graded["wins"], graded["losses"], graded["ties"]) == (1, 1, 1)
    # ranks of |-2|, |10|: 1, 2; W+ = 2; null sums 0,1,2,3 equally likely, |2-1.5| >= .5 always
    assert (graded["wilcoxon_w_plus"], graded["wilcoxon_p"]) == (2.0, pytest.approx(1.0))
    assert (graded["n_runs_a"], graded["n_runs_b"]) == (1, 1)
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


def test_cli_skips_a_comparison_whose_side_is_absent(tmp_path, capsys):
    for seed in (1, 2):
        write_run(tmp_path / "cache", {"loss": "softmax", "seed": seed}, (0.4, 0.7, 0.6))
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(tmp_path / "cache"), "--benchmark", QS,
                     "--out", str(out), "--compare", "loss=bce", "loss=softmax"]) == 0
    assert (out / "main_table.csv").exists() and not (out / "comparison.csv").exists()
    notes = (out / "notes.md").read_text()
    assert "comparison loss=bce vs loss=softmax skipped: --compare: no results match" in notes
