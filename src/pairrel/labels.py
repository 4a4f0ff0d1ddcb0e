"""Label granularity: named maps from raw relevance grades to training targets y in [0, 1].

With g a raw grade in {0, …, G} (G = ``max_grade`` of the
source, e.g. 3 for TREC-DL 2023) and g = −1 for a pair nobody judged:

- ``binary@k``      y = 1 if g ≥ k else 0            (TREC's passage convention is binary@2)
- ``graded-linear`` y = g / G
- ``graded-exp``    y = (2^g − 1) / (2^G − 1)         (the gain of nDCG's exponential form)

Unjudged pairs (g = −1) get y = 0 under every map. ``binary@0`` is rejected: it would make
every judged document, grade 0 included, a positive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported where targets are computed: config checks need names only
    import torch

# The JSON schema of the config uses this pattern for grid.labels.
LABEL_NAME_PATTERN = r"^(binary@[1-9][0-9]*|graded-linear|graded-exp)$"

UNJUDGED = -1


@dataclass(frozen=True)
class LabelMap:
    """A named map ``targets = fn(grades, max_grade)`` for grades ≥ 0 (unjudged handled outside)."""

    name: str
    fn: Callable[[torch.Tensor, int], torch.Tensor]

    def __call__(self, grades: torch.Tensor, max_grade: int) -> torch.Tensor:
        return grades_to_targets(grades, self, max_grade)


def _binary(threshold: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def fn(grades: torch.Tensor, max_grade: int) -> torch.Tensor:
        if threshold > max_grade:
            raise ValueError(f"label granularity 'binary@{threshold}' exceeds max_grade {max_grade}: no document could be relevant")
        return (grades >= threshold).float()

    return fn


def _graded_linear(grades: torch.Tensor, max_grade: int) -> torch.Tensor:
    return grades.float() / max_grade


def _graded_exp(grades: torch.Tensor, max_grade: int) -> torch.Tensor:
    # float64 so 2^G stays exact for any realistic G before the division.
    return ((2.0 ** grades.double() - 1.0) / (2.0**max_grade - 1.0)).float()


def parse_label_granularity(name: str) -> LabelMap:
    """The ``LabelMap`` called ``name``; ValueError naming ``name`` if it is unknown."""
    if not isinstance(name, str) or not re.match(LABEL_NAME_PATTERN, name):
        raise ValueError(
            f"unknown label granularity {name!r}: expected 'binary@<k>' with k >= 1, 'graded-linear' or 'graded-exp'"
        )
    if name.startswith("binary@"):
        return LabelMap(name, _binary(int(name.split("@", 1)[1])))
    return LabelMap(name, _graded_linear if name == "graded-linear" else _graded_exp)


def grades_to_targets(grades: torch.Tensor, name: str | LabelMap, max_grade: int) -> torch.Tensor:
    """Float targets in [0, 1] with the shape of ``grades``; grade −1 (unjudged) → 0.

    Raises ValueError for ``max_grade`` < 1 or a grade outside {−1, 0, …, max_grade}.
    """
    label_map = name if isinstance(name, LabelMap) else parse_label_granularity(name)
    if max_grade < 1:
        raise ValueError(f"max_grade must be >= 1, got {max_grade}")
    if grades.numel():
        low, high = int(grades.min()), int(grades.max())
        if low < UNJUDGED or high > max_grade:
            bad = low if low < UNJUDGED else high
            raise ValueError(f"grade {bad} outside [-1 (unjudged), {max_grade} (max_grade)]")
    import torch

    judged = grades >= 0
    targets = label_map.fn(grades.clamp(min=0), max_grade)
    return torch.where(judged, targets, torch.zeros_like(targets))
