"""grid.exclude over a narrowed grid: a preset may take a value off the grid below the config's
own exclusions; a value defined nowhere is still a typo, named by its key."""

import pytest
import yaml

from pairrel.config import ConfigError, load_config
from pairrel.study import Study
from tests.conftest import REPO_ROOT


def paper_with(tmp_path, preset: dict) -> Study:
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    return Study(load_config(REPO_ROOT / "config.yaml", path))


def test_a_preset_narrowing_the_grid_to_trec_dl_keeps_its_runs(tmp_path):
    study = paper_with(tmp_path, {"grid": {"data": ["trec-dl-2023"]}})
    # config.yaml's exclusions still name open-mix (defined, now off the grid) and keep
    # excluding binary@1 from TREC-DL: 2 models x 2 losses x (binary@2, graded-linear) x 5 folds.
    assert len(study.runs) == 2 * 2 * 2 * 5
    assert {run.labels for run in study.runs} == {"binary@2", "graded-linear"}
    assert study.cfg["grid"]["exclude"][0] == {"data": "open-mix", "labels": "binary@2"}


def test_an_exclusion_of_a_label_off_the_grid_passes(tmp_path):
    study = paper_with(tmp_path, {"grid": {"data": ["trec-dl-2023"], "labels": ["graded-linear"]}})
    assert len(study.runs) == 2 * 2 * 1 * 5  # binary@1 and binary@2 rules exclude nothing here


@pytest.mark.parametrize(
    "rule, key, message",
    [
        ({"data": "open-mixx"}, "grid.exclude.3.data", "'open-mixx' is not defined under 'data'"),
        ({"model": "llama4"}, "grid.exclude.3.model", "'llama4' is not defined under 'models'"),
        ({"loss": "hinge"}, "grid.exclude.3.loss", "'hinge' is not defined under 'losses'"),
        ({"labels": "binary@x"}, "grid.exclude.3.labels", "unknown label granularity 'binary@x'"),
        ({"seed": 43}, "grid.exclude.3.seed", "seed 43 is not on the grid (42)"),
    ],
    ids=["data", "model", "loss", "labels", "seed"],
)
def test_a_value_defined_nowhere_is_still_an_error(tmp_path, rule, key, message):
    exclude = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())["grid"]["exclude"] + [rule]
    with pytest.raises(ConfigError, match=rf"config key '{key}': {message}".replace("(", r"\(").replace(")", r"\)")):
        paper_with(tmp_path, {"grid": {"data": ["trec-dl-2023"], "exclude": exclude}})
