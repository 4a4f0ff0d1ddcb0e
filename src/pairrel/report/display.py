"""Names a reader sees in tables: grid values, column headers, row names.

A display mapping is a plain dict::

    {"model":   {"minilm": "MiniLM-L6"},           # grid value -> name, per grid axis
     "data":    {"open-mix": "E5 open mix"},
     "loss":    {"bce": "BCE", "softmax": "InfoNCE"},
     "labels":  {"binary@2": "binary (≥ 2)"},
     "columns": {"PairClassification": "PairCl."}}  # column headers (axes, types, Average)

Every key is optional; a value without a display name is shown as written in the config. In a
pairrel config the names live in ``models.<key>.display``, ``losses.<key>.display``,
``data.<key>.display`` and ``report.display`` (``{labels: …, columns: …}``, or any axis);
:func:`display_from_config` gathers them, :func:`load_display` reads the same mapping from a
YAML file (``--display``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

# Column headers of the published MTEB tables (LLM2Vec Table 2 abbreviates the same way).
DEFAULT_HEADERS = {
    "model": "Model", "data": "Data", "loss": "Loss", "labels": "Labels", "fold": "Fold",
    "seed": "Seed", "step": "Step",
    "Classification": "Class.", "Clustering": "Clust.", "PairClassification": "PairCl.",
    "Reranking": "Rerank.", "Retrieval": "Retr.", "STS": "STS", "Summarization": "Summ.",
    "Average": "Avg.",
}


def _check(display: object, where: str) -> dict:
    if display is None:
        return {}
    if not isinstance(display, dict):
        raise ValueError(f"{where}: display names must be a mapping, not {type(display).__name__}")
    for axis, names in display.items():
        if not isinstance(names, dict):
            raise ValueError(f"{where}: '{axis}' must map values to display names "
                             f"(e.g. {{bce: BCE}}), not {names!r}")
        for value, name in names.items():
            if not isinstance(name, (str, int, float)):
                raise ValueError(f"{where}: '{axis}.{value}' must be a name, not {name!r}")
    return {str(axis): {str(k): str(v) for k, v in names.items()} for axis, names in display.items()}


def load_display(path: Path) -> dict:
    """A display mapping from a YAML file (the structure in the module docstring)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--display {path}: cannot read ({err})") from err
    return _check(data, f"--display {path}")


def display_from_config(cfg: dict) -> dict:
    """Gather ``models.X.display``, ``losses.X.display``, ``data.X.display`` and
    ``report.display`` of a config (``report.display`` wins where both name a value)."""
    display = _check((cfg.get("report") or {}).get("display"), "config key 'report.display'")
    for section, axis in (("models", "model"), ("losses", "loss"), ("data", "data")):
        named = {key: spec["display"] for key, spec in (cfg.get(section) or {}).items()
                 if isinstance(spec, dict) and spec.get("display")}
        if named:
            display[axis] = {**{str(k): str(v) for k, v in named.items()},
                             **display.get(axis, {})}
    return display


def value_name(display: dict, axis: str, value: object) -> str:
    """Display name of grid value ``value`` of ``axis`` (``model``, ``loss``, …)."""
    return display.get(axis, {}).get(str(value), str(value))


def header(display: dict, column: str) -> str:
    """Header text of a column: the config's name, else a default, else the column itself."""
    key = column.removeprefix("grid_")
    return display.get("columns", {}).get(column) or DEFAULT_HEADERS.get(key, key)
