"""The typed settings mirror the schema exactly and take every value from a filled config."""

from dataclasses import fields

import pytest

from pairrel.config import ConfigError, _resolve, load_config, schema
from pairrel.settings import (BCELossSettings, DataSettings, LoraSettings, ModelSettings, RunSettings,
                              SoftmaxLossSettings, SourceSettings, TrainingSettings)
from pairrel.study import Study
from tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "config.yaml"
PRESETS = sorted((REPO_ROOT / "presets").glob("*.yaml"))


def _loss_branch(loss_type: str) -> dict:
    for part in schema()["$defs"]["loss"]["allOf"]:
        if part["if"]["properties"]["type"]["const"] == loss_type:
            return part["then"]["properties"]
    raise AssertionError(loss_type)


def schema_objects() -> dict:
    """Each settings class -> the properties of the schema object it holds."""
    defs = schema()["$defs"]
    mix = schema()["properties"]["data"]["additionalProperties"]["properties"]
    return {
        TrainingSettings: defs["training"]["properties"],
        ModelSettings: defs["model"]["properties"],
        LoraSettings: defs["model"]["properties"]["lora"]["properties"],
        SoftmaxLossSettings: _loss_branch("softmax"),
        BCELossSettings: _loss_branch("bce"),
        SourceSettings: defs["source"]["properties"],
        DataSettings: {k: v for k, v in mix.items() if k != "training"},  # merged into the run's training
    }


@pytest.mark.parametrize("cls", list(schema_objects()), ids=lambda cls: cls.__name__)
def test_fields_are_the_schema_properties(cls):
    properties = schema_objects()[cls]
    names = [f.name for f in fields(cls)]
    extra = tuple(getattr(cls, "JOB_KEYS", ()))
    assert sorted(names) == sorted([*properties, *extra])
    # a field that may be absent has no schema default (else the filled config always has it)
    for name in cls.OPTIONAL:
        if name not in extra:
            assert "default" not in _resolve(properties[name]), name


@pytest.fixture(scope="module")
def studies():
    return [Study(load_config(CONFIG)), *(Study(load_config(CONFIG, preset)) for preset in PRESETS)]


def test_every_run_of_the_shipped_configs_has_settings(studies):
    for study in studies:
        for run in study.runs:
            settings = run.settings
            assert sorted(f.name for f in fields(RunSettings)) == sorted(run.config)
            assert settings.training.steps == run.training["steps"]
            assert settings.loss.type == run.config["loss"]["type"]
            assert set(settings.data.sources) == set(run.config["data"]["sources"])
            assert settings.model.lora.r == run.config["model"]["lora"]["r"]


def test_missing_key_is_an_error_naming_it(studies):
    run_cfg = studies[0].runs[0].config
    del run_cfg["training"]["warmup_steps"]
    with pytest.raises(ConfigError, match=r"config key 'training.warmup_steps' is missing"):
        RunSettings.from_dict(run_cfg)
    with pytest.raises(ConfigError, match=r"config key 'training.warmup_steps' is missing"):
        TrainingSettings.from_dict(run_cfg["training"], "training")


def test_unknown_key_is_refused_as_the_schema_refuses_it(studies):
    run_cfg = studies[0].runs[0].config
    run_cfg["model"]["lora"]["rank"] = 8
    with pytest.raises(ConfigError, match=r"config key 'model.lora.rank': not a setting of LoraSettings"):
        RunSettings.from_dict(run_cfg)


def test_optional_key_without_default_reads_none(studies):
    run_cfg = studies[0].runs[0].config
    run_cfg["loss"].pop("display", None)
    assert RunSettings.from_dict(run_cfg).loss.display is None


def test_fill_run_defaults_gives_a_hand_written_run_the_schemas_defaults():
    """A run built without a study (a benchmark) gets the schema's defaults, and only where a key
    is absent: the given values stay."""
    from pairrel.config import fill_run_defaults, schema

    defs = schema()["$defs"]
    given = {"model": {"name_or_path": "m", "max_length": 64}, "training": {"steps": 3},
             "loss": {"type": "bce", "bias_init": -5.0}, "data": {"sources": {}}}
    filled = fill_run_defaults(given)
    assert given["training"] == {"steps": 3}  # the caller's dict is not changed
    assert filled["model"]["max_length"] == 64 and filled["training"]["steps"] == 3
    assert filled["model"]["dtype"] == defs["model"]["properties"]["dtype"]["default"]
    assert filled["training"]["warmup_steps"] == defs["training"]["properties"]["warmup_steps"]["default"]
    assert filled["loss"]["bias_init"] == -5.0 and "temperature_init" in filled["loss"]
    assert "sampling" in filled["data"]
