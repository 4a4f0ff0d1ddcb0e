"""Label granularities on TREC-DL-style grades 0–3 (and −1 = unjudged), values by hand."""

import re

import pytest
import torch

from pairrel.labels import LABEL_NAME_PATTERN, LabelMap, grades_to_targets, parse_label_granularity

GRADES = torch.tensor([[-1, 0, 1], [2, 3, -1]])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("binary@1", [[0, 0, 1], [1, 1, 0]]),
        ("binary@2", [[0, 0, 0], [1, 1, 0]]),
        ("binary@3", [[0, 0, 0], [0, 1, 0]]),
        ("graded-linear", [[0, 0, 1 / 3], [2 / 3, 1, 0]]),
        # (2^g − 1) / (2^3 − 1) = (0, 1, 3, 7) / 7
        ("graded-exp", [[0, 0, 1 / 7], [3 / 7, 1, 0]]),
    ],
)
def test_every_granularity_by_hand(name, expected):
    targets = grades_to_targets(GRADES, name, max_grade=3)
    assert targets.dtype == torch.float32
    torch.testing.assert_close(targets, torch.tensor(expected, dtype=torch.float32))
    # the LabelMap object gives the same
    torch.testing.assert_close(parse_label_granularity(name)(GRADES, 3), targets)


def test_binary_source_with_max_grade_1():
    # docpairs/triples sources: positive = 1, negative = 0, max_grade = 1: every map agrees.
    grades = torch.tensor([1, 0, -1])
    for name in ("binary@1", "graded-linear", "graded-exp"):
        assert grades_to_targets(grades, name, 1).tolist() == [1.0, 0.0, 0.0]


def test_unknown_names_fail_naming_the_value():
    for bad in ("binary", "binary@0", "binary@x", "graded", "graded-log", "Binary@2", ""):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_label_granularity(bad)
    assert isinstance(parse_label_granularity("binary@12"), LabelMap)
    assert parse_label_granularity("binary@12").name == "binary@12"


def test_pattern_matches_exactly_the_accepted_names():
    for good in ("binary@1", "binary@2", "binary@10", "graded-linear", "graded-exp"):
        assert re.match(LABEL_NAME_PATTERN, good)
    for bad in ("binary@0", "binary@02", "binary@2x", "graded-linear ", "xgraded-exp"):
        assert not re.match(LABEL_NAME_PATTERN, bad)


def test_bad_grades_and_thresholds():
    with pytest.raises(ValueError, match="grade 4 outside"):
        grades_to_targets(torch.tensor([0, 4]), "graded-linear", 3)
    with pytest.raises(ValueError, match="grade -2 outside"):
        grades_to_targets(torch.tensor([-2, 1]), "binary@1", 3)
    with pytest.raises(ValueError, match="'binary@4' exceeds max_grade 3"):
        grades_to_targets(torch.tensor([0, 3]), "binary@4", 3)
    with pytest.raises(ValueError, match="max_grade must be >= 1"):
        grades_to_targets(torch.tensor([0]), "graded-exp", 0)
