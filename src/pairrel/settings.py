"""Typed, frozen views of a validated config: the settings a training job reads.

The schema (``pairrel/schema/config.schema.yaml``) owns every default and
:func:`pairrel.config.load_config` fills them in, so the dataclasses here have no defaults of
their own: :meth:`_Settings.from_dict` takes every field from the dict and a missing key is a
:class:`~pairrel.config.ConfigError` naming it (the dict did not come through the schema). A
field listed in a class's ``OPTIONAL`` is one the schema lets a config leave out without a
default (a loss's ``display``, a source's ``dataset`` or ``jsonl``): it reads None when absent.
Keys the schema does not know are refused as it refuses them. ``tests/test_settings.py`` checks
that each class's fields are exactly its schema object's properties, so a new schema key cannot
be forgotten here.

:class:`RunSettings` is a resolved run config (:attr:`pairrel.study.Run.config`, ``run.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Union

from pairrel.config import ConfigError


@dataclass(frozen=True)
class _Settings:
    """Common ``from_dict``: each field from the dict, nested settings built by ``NESTED``."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # may be absent (no schema default): None then
    NESTED: ClassVar[dict[str, Any]] = {}  # field -> function(value, where) building it

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = ""):
        """The settings of ``data`` (the config object at key ``where``, for error messages)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config key '{where or cls.__name__}': expected a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"config key '{_join(where, unknown[0])}': not a setting of {cls.__name__} "
                              f"(known: {', '.join(names)})")
        values = {}
        for name in names:
            if name not in data:
                if name in cls.OPTIONAL:
                    values[name] = None
                    continue
                raise ConfigError(f"config key '{_join(where, name)}' is missing: the settings must come from a "
                                  "config validated by pairrel.config (which fills every schema default)")
            value = data[name]
            build = cls.NESTED.get(name)
            values[name] = build(value, _join(where, name)) if build is not None and value is not None else value
        return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass(frozen=True)
class TrainingSettings(_Settings):
    """``training:`` (a data mix's own block merged over the global one)."""

    steps: int
    batch_size: int
    gradcache_tokens: int | None
    gradcache_chunk: int | None
    gpus: int
    skip_nonfinite_batches: bool
    min_applied_fraction: float
    n_negatives: int
    docs_per_query: int | None
    learning_rate: float
    loss_learning_rate: float | None
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float | None
    checkpoint_every: int | None
    log_every: int
    num_threads: int | None


@dataclass(frozen=True)
class LoraSettings(_Settings):
    """``models.<name>.lora``."""

    r: int
    alpha: float
    dropout: float
    target_modules: list[str]


@dataclass(frozen=True)
class ModelSettings(_Settings):
    """``models.<name>``."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("display",)
    NESTED: ClassVar[dict[str, Any]] = {"lora": LoraSettings.from_dict}

    name_or_path: str
    display: str | None
    kind: str
    mntp_adapter: str | None
    params_b: float | None
    hub_id: str | None
    mntp_hub_id: str | None
    max_length: int
    template: str
    dtype: str
    gradient_checkpointing: bool
    packing: str
    kernels: str
    compile: bool
    lora: LoraSettings


@dataclass(frozen=True)
class _LossSettings(_Settings):
    """What every ``losses.<name>`` has: its ``type`` and an optional display name."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("display",)

    type: str
    display: str | None


@dataclass(frozen=True)
class SoftmaxLossSettings(_LossSettings):
    """``losses.<name>`` of ``type: softmax``."""

    temperature: float

    @property
    def own_learning_rate(self) -> None:
        """The softmax loss has no trainable parameter of its own."""
        return None

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of :class:`pairrel.losses.SoftmaxLoss`."""
        return {"temperature": self.temperature}


@dataclass(frozen=True)
class BCELossSettings(_LossSettings):
    """``losses.<name>`` of ``type: bce``."""

    temperature_init: float
    bias_init: float
    learn_temperature: bool
    learn_bias: bool
    learning_rate: float | None

    @property
    def own_learning_rate(self) -> float | None:
        """Peak learning rate of t' and b (None: ``training.loss_learning_rate``)."""
        return self.learning_rate

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of :class:`pairrel.losses.PairRelevanceBCELoss`."""
        return {"temperature_init": self.temperature_init, "bias_init": self.bias_init,
                "learn_temperature": self.learn_temperature, "learn_bias": self.learn_bias}


LossSettings = Union[SoftmaxLossSettings, BCELossSettings]
LOSS_SETTINGS: dict[str, type] = {"softmax": SoftmaxLossSettings, "bce": BCELossSettings}


def loss_settings(data: dict[str, Any], where: str = "loss") -> LossSettings:
    """The settings of one loss entry, by its ``type``."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in LOSS_SETTINGS:
        raise ConfigError(f"config key '{_join(where, 'type')}': {kind!r} is not a loss type ({', '.join(LOSS_SETTINGS)})")
    return LOSS_SETTINGS[kind].from_dict(data, where)


@dataclass(frozen=True)
class SourceSettings(_Settings):
    """``data.<mix>.sources.<name>``: one training source.

    ``dataset``, ``jsonl`` or ``parts`` says where its pairs come from (exactly one is set);
    ``fold`` is set only in a preparation job's spec (:func:`pairrel.study.source_job`), the
    fold whose training queries it writes.
    """

    OPTIONAL: ClassVar[tuple[str, ...]] = ("dataset", "jsonl", "parts", "instruction", "origin", "fold")

    dataset: str | None
    jsonl: str | None
    parts: dict[str, dict[str, Any]] | None
    instruction: str | None
    weight: float
    max_queries: int | None
    symmetric: bool
    origin: dict[str, Any] | None
    folds: int | None
    fold_seed: int
    pairs: str
    fold: int | None

    # keys a source has beyond its schema properties (see the class docstring)
    JOB_KEYS: ClassVar[tuple[str, ...]] = ("fold",)


def _sources(value: dict[str, Any], where: str) -> dict[str, SourceSettings]:
    return {name: SourceSettings.from_dict(spec, _join(where, name)) for name, spec in value.items()}


@dataclass(frozen=True)
class DataSettings(_Settings):
    """``data.<mix>`` without its ``training:`` (merged into the run's training settings)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("display",)
    NESTED: ClassVar[dict[str, Any]] = {"sources": _sources}

    sources: dict[str, SourceSettings]
    display: str | None
    sampling: str


@dataclass(frozen=True)
class RunSettings(_Settings):
    """A resolved run config (:attr:`pairrel.study.Run.config`, a run's ``run.yaml``)."""

    NESTED: ClassVar[dict[str, Any]] = {
        "model": ModelSettings.from_dict, "data": DataSettings.from_dict, "loss": loss_settings,
        "training": TrainingSettings.from_dict,
    }

    experiment: str
    run_id: str
    grid: dict[str, Any]
    model: ModelSettings
    data: DataSettings
    loss: LossSettings
    labels: str
    seed: int
    fold: int | None
    training: TrainingSettings
    prepared: dict[str, dict[str, str]]
    dir: str
