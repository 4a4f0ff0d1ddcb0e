"""The study's configuration: load, merge, validate, fill defaults.

A study is ``config.yaml`` plus optional presets merged over it (later files win, mappings are
merged key by key, everything else is replaced). The merged config is checked against the JSON
Schema shipped inside the package (``pairrel/schema/config.schema.yaml``), which is also the one
owner of every default: :func:`load_config` returns the config with each schema ``default`` filled
in, so no other module writes ``cfg.get(key, default)``. Cross-references the schema cannot express
(grid names defined, label granularities parseable, exclusion keys, no NaN or infinity) are checked
here as well; every error names the config key. Runs, paths and identities are
:mod:`pairrel.study`'s business.
"""

from __future__ import annotations

import copy
import math
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot describe a study; the message names the offending key or file."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: mappings key by key, other values replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 (PyYAML) reads a float in exponent notation without a dot or an exponent sign
# (``1e-4``, ``1.0e6``) as a string, so a learning rate written that way would fail as "not of type
# 'number'". YAML 1.2 reads them as floats, and so does pairrel.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """One YAML mapping from ``path``; errors name the file (and line)."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:  # a folder, no permission, …
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def config_from_snakemake(workflow, config: dict[str, Any]) -> dict[str, Any]:
    """The config Snakemake was given, read again as ``pairrel config`` reads it.

    Snakemake parses ``configfile:`` and ``--configfile`` files itself, keeping the last of two
    equal keys and reading ``1.0e6`` as text. Here every file is re-read with
    :func:`load_yaml` (duplicate keys refused, errors naming the file and line) and merged as
    Snakemake merges them, key order included (the order is part of what Snakemake compares to
    decide whether a job's parameters changed): the ``--configfile`` files and ``--config
    KEY=VALUE`` overrides merged first, each Snakefile ``configfile:`` merged over that (unless
    ``--replace-workflow-config``) and the command line's merged over it again. Without any file
    (Snakemake used as a library with a config dict) ``config`` is returned unchanged.
    """
    settings = workflow.config_settings
    cli_files = [Path(f).absolute() for f in (workflow.overwrite_configfiles or [])]
    own = [Path(f) for f in workflow.configfiles if Path(f).absolute() not in cli_files]
    if getattr(settings, "replace_workflow_config", False):
        own = []
    if not cli_files and not own:
        return config
    command_line = load_config(*cli_files, overrides=dict(settings.config or {}), validate=False)
    merged = copy.deepcopy(command_line)
    for path in own:
        merged = deep_merge(deep_merge(merged, load_yaml(path)), command_line)
    return merged


def load_config(*paths: str | Path, overrides: dict[str, Any] | None = None, validate: bool = True) -> dict[str, Any]:
    """Merge the config files in order (then ``overrides``), validate, and fill the defaults.

    ``validate=False`` returns the plain merge, for commands that need only a part of a config.
    """
    cfg: dict[str, Any] = {}
    for path in paths:
        cfg = deep_merge(cfg, load_yaml(path))
    if overrides:
        cfg = deep_merge(cfg, overrides)
    return validate_config(cfg) if validate else cfg


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The config schema shipped with the package."""
    text = resources.files("pairrel").joinpath("schema/config.schema.yaml").read_text(encoding="utf-8")
    # libyaml's loader where built (10x faster: every snakemake parse and pairrel command reads it)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _key_path(parts) -> str:
    return ".".join(str(part) for part in parts) or "<top level>"


def _check_finite(value: Any, where: tuple = ()) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{_key_path(where)}': {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, (*where, i))


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check ``cfg`` against the schema and the cross-references; return it with defaults filled.

    Raises :class:`ConfigError` naming the key, e.g. ``config key 'training.learning_rate': …``.
    ``cfg`` itself is not modified.
    """
    import jsonschema

    _check_finite(cfg)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            where = _key_path(err.absolute_path)
            if err.validator == "required":
                missing = err.message.split("'")[1]
                where = f"{where}.{missing}" if err.absolute_path else missing
                lines.append(f"config key '{where}' is required but missing")
            elif err.validator == "oneOf" and _is_source_path(err.absolute_path):
                lines.append(_source_form_error(where, err.instance))
            else:
                lines.append(f"config key '{where}': {err.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    filled = fill_defaults(cfg)
    _check_references(filled)
    return filled


SOURCE_FORMS = ("a source gives exactly one of 'dataset' or 'jsonl', each with 'instruction', or 'parts' "
                "(a pooled source: its parts carry jsonl, instruction, symmetric and origin; it has no "
                "dataset, jsonl, instruction, origin, symmetric, folds or pairs of its own)")


def _is_source_path(path) -> bool:
    path = list(path)
    return len(path) == 4 and path[0] == "data" and path[2] == "sources"


def _source_form_error(where: str, source: Any) -> str:
    """The message for a source of none of the allowed forms: the missing instruction when that
    is all that is wrong, else the forms."""
    if isinstance(source, dict) and "parts" not in source and "instruction" not in source \
            and ("dataset" in source) != ("jsonl" in source):
        return f"config key '{where}.instruction' is required but missing"
    return f"config key '{where}': {SOURCE_FORMS}"


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        target: Any = schema()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}})
    return node


def _fill(node: dict[str, Any], value: Any, where: tuple) -> Any:
    import jsonschema

    node = _resolve(node)
    for part in node.get("allOf", []):
        part = _resolve(part)
        if "if" in part:
            if jsonschema.Draft202012Validator(part["if"]).is_valid(value):
                value = _fill(part["then"], value, where)
        else:
            value = _fill(part, value, where)
    if not isinstance(value, dict):
        return value
    # Per-mix training blocks override the global one key by key: filling defaults into them
    # would silently override global values with schema defaults.
    if len(where) == 2 and where[0] == "data":
        fill_props = {k: v for k, v in node.get("properties", {}).items() if k != "training"}
    else:
        fill_props = node.get("properties", {})
    for key, sub in fill_props.items():
        if not isinstance(sub, dict):
            continue
        sub = _resolve(sub)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill(sub, value[key], (*where, key))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in node.get("properties", {}):
                value[key] = _fill(extra, value[key], (*where, key))
    return value


def fill_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` with every schema ``default`` filled in where the key is absent."""
    return _fill(schema(), copy.deepcopy(cfg), ())


def fill_source_defaults(source: dict[str, Any]) -> dict[str, Any]:
    """A copy of one training source (``data.<mix>.sources.<name>``) with the schema's defaults
    filled in: for preparing a source from a config that was not validated as a whole study
    (``pairrel data prepare --config``, library calls). Nothing is validated here."""
    return _fill(schema()["$defs"]["source"], copy.deepcopy(source), ("data", "?", "sources", "?"))


def fill_run_defaults(run_cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of a hand-written run config (what :attr:`pairrel.study.Run.config` gives a
    training job) with the schema's defaults filled into its ``model``, ``training`` and ``loss``:
    for library callers that build one run without a study (benchmarks, scripts). Nothing is
    validated here; a run of a study gets its config from the study."""
    defs, mix = schema()["$defs"], schema()["properties"]["data"]["additionalProperties"]
    filled = copy.deepcopy(run_cfg)
    for key, node in (("model", defs["model"]), ("training", defs["training"]), ("loss", defs["loss"]), ("data", mix)):
        if isinstance(filled.get(key), dict):
            filled[key] = _fill(node, filled[key], (key,))
    return filled


def _check_references(cfg: dict[str, Any]) -> None:
    from pairrel.labels import parse_label_granularity

    grid = cfg["grid"]
    for axis, section in (("models", "models"), ("data", "data"), ("losses", "losses")):
        for i, name in enumerate(grid[axis]):
            if name not in cfg[section]:
                known = ", ".join(sorted(cfg[section]))
                raise ConfigError(f"config key 'grid.{axis}.{i}': '{name}' is not defined under '{section}' ({known})")
    for i, name in enumerate(grid["labels"]):
        try:
            parse_label_granularity(name)
        except ValueError as err:
            raise ConfigError(f"config key 'grid.labels.{i}': {err}") from None
    _check_exclusions(cfg)
    for name, mix in cfg["data"].items():
        for source, spec in mix["sources"].items():
            if spec.get("folds") and "jsonl" in spec:
                raise ConfigError(f"config key 'data.{name}.sources.{source}.folds': a K-fold split needs graded qrels, not a JSONL file")
    _check_local_model_paths(cfg)
    _check_compare(cfg)


def looks_local(name_or_path: str) -> bool:
    """Whether a model reference is meant as a folder on this machine rather than a hub id:
    an absolute path, ``./``, ``../`` or ``~``, or a path whose first folder exists here (a hub
    id ``org/name`` has no such folder)."""
    if name_or_path.startswith(("/", "./", "../", "~")) or name_or_path in (".", ".."):
        return True
    first = name_or_path.split("/", 1)[0]
    return "/" in name_or_path and Path(first).is_dir()


def _check_local_model_paths(cfg: dict[str, Any]) -> None:
    """A model folder that does not exist is named now, not by the hub client inside a job."""
    for model in sorted(set(cfg["grid"]["models"])):
        for key in ("name_or_path", "mntp_adapter"):
            value = cfg["models"][model].get(key)
            if isinstance(value, str) and looks_local(value) and not Path(value).expanduser().exists():
                raise ConfigError(f"config key 'models.{model}.{key}': {value} is no folder on this machine "
                                  f"(looked in {Path(value).expanduser().absolute()}); a hub id is written org/name")


GRID_AXES = ("model", "data", "loss", "labels", "fold", "seed")


def _check_defined(cfg: dict[str, Any], where: str, key: str, value: Any) -> None:
    """``value`` of grid axis ``key`` names something the config defines: a model, data mix or
    loss of its sections, a valid label granularity, a seed of the grid. A defined value that
    is off the grid (a preset narrowed ``grid.data`` below the paper's exclusions or
    comparisons) is fine: it selects nothing. A value defined nowhere is a typo: an error
    naming ``where``."""
    from pairrel.labels import parse_label_granularity

    sections = {"model": "models", "data": "data", "loss": "losses"}
    if key not in GRID_AXES:
        raise ConfigError(f"{where}: '{key}' is not a grid axis ({', '.join(GRID_AXES)})")
    if key in sections and str(value) not in {str(name) for name in cfg[sections[key]]}:
        known = ", ".join(sorted(map(str, cfg[sections[key]])))
        raise ConfigError(f"{where}: '{value}' is not defined under '{sections[key]}' ({known})")
    if key == "labels":
        try:
            parse_label_granularity(str(value))
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    if key == "seed" and str(value) not in {str(v) for v in cfg["grid"]["seeds"]}:
        # seeds are defined only by the grid: one off it is a typo of a seed on it
        seeds = ", ".join(map(str, cfg["grid"]["seeds"]))
        raise ConfigError(f"{where}: seed {value} is not on the grid ({seeds})")


def _check_compare(cfg: dict[str, Any]) -> None:
    """Each ``report.compare`` selector ``key=value[,…]`` names a grid axis and a value the
    config defines (:func:`_check_defined`; ``step`` is free); a selector without ``=`` is a
    row label, known only when the report is built."""
    for i, selector in enumerate(cfg["report"].get("compare") or []):
        parts = [p.strip() for p in str(selector).split(",")]
        if not all("=" in p and p.split("=", 1)[0].strip().isidentifier() for p in parts):
            continue
        for part in parts:
            key, value = (x.strip() for x in part.split("=", 1))
            if key != "step":
                _check_defined(cfg, f"config key 'report.compare.{i}': '{part}'", key, value)


def _check_exclusions(cfg: dict[str, Any]) -> None:
    """Each ``grid.exclude`` value names something the config defines (:func:`_check_defined`)."""
    for i, rule in enumerate(cfg["grid"]["exclude"]):
        for key, value in rule.items():
            _check_defined(cfg, f"config key 'grid.exclude.{i}.{key}'", key, value)


def put_interpreter_on_path() -> None:
    """Put the running interpreter's folder first on PATH, so that jobs started by this process
    (Snakemake's shell commands) find the ``pairrel`` script of the same environment."""
    import sys

    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the group (:func:`pairrel.io.atomic_write_text`)."""
    from pairrel.io import atomic_write_text as write

    write(path, text)


def write_yaml(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
