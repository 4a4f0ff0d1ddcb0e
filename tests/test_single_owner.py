"""The schema is the one owner of every default: no module restates one with ``.get(key, default)``.

A ``cfg.get("n_negatives", 1)`` next to the schema's ``default: 1`` is a second owner of the same
fact, and the two drift apart unnoticed. This scans ``src/pairrel`` (except the schema's own
code, pairrel.config) for ``.get("<name>", <default>)`` and ``.get("<name>") or <default>``
where <name> is a property of the schema's training, loss, model, LoRA, data mix or source
objects, and fails listing each one with its file and line. Code reads such values from the
filled config by indexing or from :mod:`pairrel.settings`.
"""

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.test_settings import _loss_branch

SRC = REPO_ROOT / "src" / "pairrel"
OWNERS = {"config.py"}  # the schema's own code fills the defaults
NOT_YET: set[str] = set()
# Reads of files that are not a config, whose keys share a name with a config key: a prepared
# source's meta file (pairrel.data.sources writes "symmetric" only when true, and tests write
# meta files without "source") and a local dataset's meta.json (its "instruction" is optional).
# And a model card's optional ``card_info`` (pairrel.export: "" shows an unknown value in a table cell).
NOT_CONFIG = {("data/batching.py", "source"), ("data/batching.py", "symmetric"), ("data/sources.py", "instruction"),
              ("export.py", "instruction"), ("export.py", "weight")}


def config_properties() -> dict[str, dict]:
    """Name -> schema node of every property of the objects the scan covers."""
    from pairrel.config import _resolve, schema

    defs = schema()["$defs"]
    mix = schema()["properties"]["data"]["additionalProperties"]["properties"]
    objects = [defs["training"]["properties"], defs["model"]["properties"], defs["model"]["properties"]["lora"]["properties"],
               defs["source"]["properties"], defs["source_part"]["properties"], mix, _loss_branch("softmax"),
               _loss_branch("bce")]
    found: dict[str, dict] = {}
    for properties in objects:
        for name, node in properties.items():
            node = _resolve(node) if isinstance(node, dict) else {}
            if "default" in node or name not in found:
                found[name] = node
    return found


def config_keys() -> set[str]:
    return set(config_properties())


def defaulted_keys() -> set[str]:
    """The keys the schema fills: ``.get(key) or x`` on them restates a default (on a key
    without one it only reads an optional value)."""
    return {name for name, node in config_properties().items() if "default" in node}


def _get_name(node) -> str | None:
    """``"key"`` of a call ``x.get("key", ...)``, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def restated_defaults(path: Path, keys: set[str], defaulted: set[str] | None = None) -> list[tuple[int, str]]:
    """(line, key) of each ``.get(key, default)`` with ``key`` in ``keys`` and each
    ``.get(key) or default`` with ``key`` in ``defaulted`` (default: ``keys``)."""
    defaulted = keys if defaulted is None else defaulted
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        name = _get_name(node)
        if name in keys and len(node.args) + len(node.keywords) > 1:
            found.append((node.lineno, name))
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            name = _get_name(node.values[0])
            if name in defaulted:
                found.append((node.lineno, f"{name} (… or default)"))
    return found


def offenders(skip=NOT_YET) -> list[str]:
    keys, defaulted = config_keys(), defaulted_keys()
    lines = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if path.name in OWNERS or relative in skip:
            continue
        for line, name in sorted(restated_defaults(path, keys, defaulted)):
            if (relative, name.split(" ")[0]) not in NOT_CONFIG:
                lines.append(f"src/pairrel/{relative}:{line}: .get({name!r}, default)")
    return lines


def test_no_module_restates_a_schema_default():
    found = offenders()
    assert not found, "read these from the filled config or pairrel.settings:\n" + "\n".join(found)


def test_the_scan_finds_a_restated_default(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('a = cfg.get("n_negatives", 1)\nb = cfg.get("sampling") or "weighted"\nc = cfg.get("other", 2)\n')
    assert restated_defaults(sample, config_keys()) == [(1, "n_negatives"), (2, "sampling (… or default)")]
