"""The study's configuration: load, merge, validate, expand into runs, resolve one run.

A study is ``config.yaml`` plus optional presets merged over it (later files win, mappings are
merged key by key, everything else is replaced). The merged config is validated against
``workflow/schemas/config.schema.yaml`` before anything runs, and each training run gets one
fully resolved ``run.yaml`` (see :func:`resolve_run`).
"""

from __future__ import annotations

import copy
import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"

# The grid axes, in run-id order: config key of the axis -> name in the run id.
GRID_AXES = {"models": "model", "data": "data", "losses": "loss", "labels": "labels", "seeds": "seed"}


class ConfigError(ValueError):
    """A config that cannot describe a study; the message names the offending key."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: mappings key by key, other values replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(*paths: str | Path, validate: bool = True) -> dict[str, Any]:
    """Merge the config files in order and validate the result."""
    cfg: dict[str, Any] = {}
    for path in paths:
        cfg = deep_merge(cfg, load_yaml(path))
    if validate:
        validate_config(cfg)
    return cfg


def _key_path(error: Any) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def validate_config(cfg: dict[str, Any]) -> None:
    """Check ``cfg`` against the JSON Schema and the cross-references the schema cannot express.

    Raises :class:`ConfigError` naming the key, e.g. ``config key 'training.learning_rate': …``.
    """
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            where = _key_path(err)
            if err.validator == "required":
                missing = err.message.split("'")[1]
                where = f"{where}.{missing}" if err.absolute_path else missing
                lines.append(f"config key '{where}' is required but missing")
            else:
                lines.append(f"config key '{where}': {err.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    _check_references(cfg)


def _check_references(cfg: dict[str, Any]) -> None:
    from pairrel.labels import parse_label_granularity

    grid = cfg["grid"]
    for axis, section in (("models", "models"), ("data", "data"), ("losses", "losses")):
        for name in grid[axis]:
            if name not in cfg[section]:
                known = ", ".join(sorted(cfg[section]))
                raise ConfigError(f"config key 'grid.{axis}': '{name}' is not defined under '{section}' ({known})")
    for name in grid["labels"]:
        try:
            parse_label_granularity(name)
        except ValueError as err:
            raise ConfigError(f"config key 'grid.labels': {err}") from None
    for i, rule in enumerate(grid.get("exclude", [])):
        for key in rule:
            if key not in GRID_AXES.values():
                raise ConfigError(f"config key 'grid.exclude.{i}.{key}': not a grid axis ({', '.join(GRID_AXES.values())})")


def expand_grid(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the study: the product of the grid axes minus ``grid.exclude``, in order."""
    grid = cfg["grid"]
    axes = [(name, grid[key]) for key, name in GRID_AXES.items()]
    excludes = grid.get("exclude", [])
    runs = []
    for values in itertools.product(*(vals for _, vals in axes)):
        run = {name: value for (name, _), value in zip(axes, values)}
        if any(all(str(run[k]) == str(v) for k, v in rule.items()) for rule in excludes):
            continue
        runs.append(run)
    return runs


def run_id(run: dict[str, Any]) -> str:
    """``model~…/data~…/loss~…/labels~…/seed~…``, the layout of Snakemake's ``Paramspace``."""
    return "/".join(f"{name}~{run[name]}" for name in GRID_AXES.values())


def parse_run_id(text: str) -> dict[str, Any]:
    """Inverse of :func:`run_id`; raises :class:`ConfigError` for a malformed id."""
    run: dict[str, Any] = {}
    for part in text.strip("/").split("/"):
        key, sep, value = part.partition("~")
        if not sep or key not in GRID_AXES.values():
            raise ConfigError(f"malformed run id '{text}': expected {run_id({n: '…' for n in GRID_AXES.values()})}")
        run[key] = int(value) if key == "seed" else value
    missing = set(GRID_AXES.values()) - run.keys()
    if missing:
        raise ConfigError(f"malformed run id '{text}': missing {', '.join(sorted(missing))}")
    return run


def resolve_run(cfg: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The fully resolved config of one run: everything training needs, nothing else."""
    for name, section in (("model", "models"), ("data", "data"), ("loss", "losses")):
        if run[name] not in cfg[section]:
            raise ConfigError(f"run {run_id(run)}: '{run[name]}' is not defined under '{section}'")
    return {
        "experiment": cfg["experiment"],
        "run_id": run_id(run),
        "grid": dict(run),
        "model": copy.deepcopy(cfg["models"][run["model"]]),
        "data": copy.deepcopy(cfg["data"][run["data"]]),
        "loss": copy.deepcopy(cfg["losses"][run["loss"]]),
        "labels": run["labels"],
        "seed": int(run["seed"]),
        "training": copy.deepcopy(cfg["training"]),
    }


def checkpoint_steps(training: dict[str, Any]) -> list[int]:
    """The steps at which a run writes checkpoints: every ``checkpoint_every`` and the last."""
    total = int(training["steps"])
    every = int(training.get("checkpoint_every", total))
    return sorted(set(range(every, total + 1, every)) | {total})


def put_interpreter_on_path() -> None:
    """Put the running interpreter's folder first on PATH, so that jobs started by this process
    (Snakemake's shell commands) find the ``pairrel`` script of the same environment."""
    import sys

    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_yaml(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
