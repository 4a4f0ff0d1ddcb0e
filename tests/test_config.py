"""The study config: merging, schema validation with key-naming errors, grid and run ids."""

import copy

import pytest

from pairrel.config import (
    ConfigError,
    checkpoint_steps,
    deep_merge,
    expand_grid,
    load_config,
    parse_run_id,
    resolve_run,
    run_id,
    validate_config,
)
from tests.conftest import REPO_ROOT

PAPER = REPO_ROOT / "config.yaml"
QUICKSTART = REPO_ROOT / "presets" / "quickstart.yaml"


@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


def test_paper_config_is_valid_and_plans_the_grid(paper):
    runs = expand_grid(paper)
    # 2 models x 2 data x 2 losses x 2 labels, minus open-mix x graded-linear (2 x 2 runs)
    assert len(runs) == 12
    assert {r["model"] for r in runs} == {"llama3-8b", "sheared-llama"}
    # The open mix has grades 0/1: only binary@1 gives its queries a positive.
    assert {r["labels"] for r in runs if r["data"] == "open-mix"} == {"binary@1"}
    assert {r["labels"] for r in runs if r["data"] == "trec-dl-2023"} == {"binary@2", "graded-linear"}


def test_quickstart_preset_merges_over_the_paper_config():
    cfg = load_config(PAPER, QUICKSTART)
    assert cfg["experiment"] == "quickstart"
    assert cfg["losses"]["bce"]["bias_init"] == -4.0          # overridden
    assert cfg["losses"]["bce"]["learn_bias"] is True          # kept from config.yaml
    assert cfg["training"]["warmup_steps"] == 6
    assert cfg["training"]["weight_decay"] == 0.0              # inherited
    assert [run_id(r) for r in expand_grid(cfg)][0] == "model~minilm/data~quickstart/loss~softmax/labels~binary@2/seed~42"


def test_deep_merge_replaces_lists_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base["a"]["c"] == [1, 2]  # inputs untouched


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["losses"].__setitem__("focal", {"type": "focal"}), "losses.focal.type"),
        (lambda c: c["training"].__setitem__("learning_rate", -1e-4), "training.learning_rate"),
        (lambda c: c.pop("experiment"), "experiment"),
        (lambda c: c["training"].pop("steps"), "training.steps"),
        (lambda c: c["grid"].__setitem__("labels", ["binary@2", "graded-cubic"]), "grid.labels.1"),
        (lambda c: c["losses"]["bce"].__setitem__("bias", 0.0), "losses.bce"),
        (lambda c: c["grid"].__setitem__("losses", ["softmax", "hinge"]), "grid.losses"),
    ],
    ids=["unknown-loss", "negative-lr", "missing-experiment", "missing-steps", "unknown-labels", "unknown-key", "undefined-grid-loss"],
)
def test_bad_config_names_the_key(paper, mutate, key):
    cfg = copy.deepcopy(paper)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"'{key}" in str(err.value)


def test_run_id_round_trip_and_resolution(paper):
    run = {"model": "sheared-llama", "data": "trec-dl-2023", "loss": "bce", "labels": "binary@2", "seed": 42}
    text = run_id(run)
    assert text == "model~sheared-llama/data~trec-dl-2023/loss~bce/labels~binary@2/seed~42"
    assert parse_run_id(text) == run
    resolved = resolve_run(paper, run)
    assert resolved["loss"] == {"type": "bce", "temperature_init": 10.0, "bias_init": -10.0, "learn_temperature": True, "learn_bias": True}
    assert resolved["model"]["name_or_path"] == "princeton-nlp/Sheared-LLaMA-1.3B"
    assert resolved["data"]["sources"]["trec-dl-2023"]["folds"] == 5
    with pytest.raises(ConfigError, match="malformed run id"):
        parse_run_id("model~a/data~b")


def test_checkpoint_steps():
    assert checkpoint_steps({"steps": 1000, "checkpoint_every": 200}) == [200, 400, 600, 800, 1000]
    assert checkpoint_steps({"steps": 30, "checkpoint_every": 20}) == [20, 30]
    assert checkpoint_steps({"steps": 5}) == [5]


def test_missing_file_and_bad_yaml_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
