"""The command line is one package: the library never imports it, ``--config`` is defined once,
and every command shares one exit-code convention."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pairrel import cli
from pairrel.cli import options
from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "pairrel"
CLI_PACKAGE = PACKAGE / "cli"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = SRC) -> set[str]:
    """Every module ``path`` imports, relative imports resolved; ``from X import Y`` counts as
    both ``X`` and ``X.Y`` (Y may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            found.add(origin)
            found |= {f"{origin}.{alias.name}" for alias in node.names}
    return found


def is_cli(module: str) -> bool:
    return module == "pairrel.cli" or module.startswith("pairrel.cli.")


def library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if CLI_PACKAGE not in p.parents)


def test_the_scan_sees_every_form_of_import(tmp_path):
    pkg = tmp_path / "pairrel" / "sub"
    pkg.mkdir(parents=True)
    forms = ["import pairrel.cli", "from pairrel.cli import main", "from pairrel import cli",
             "from .. import cli", "from ..cli.options import EXIT_OK"]
    for i, line in enumerate(forms):
        (pkg / f"m{i}.py").write_text(f"def f():\n    {line}\n")
    for i, line in enumerate(forms):
        assert any(is_cli(m) for m in imported_modules(pkg / f"m{i}.py", tmp_path)), line
    (pkg / "ok.py").write_text("from pairrel.client import x\nimport pairrel.clinic\n")
    assert not any(is_cli(m) for m in imported_modules(pkg / "ok.py", tmp_path))


def test_no_library_module_imports_the_command_line():
    assert len(library_modules()) > 30  # the scan looks where the modules are
    offenders = {}
    for path in library_modules():
        hits = sorted(m for m in imported_modules(path) if is_cli(m))
        if hits:
            offenders[str(path.relative_to(REPO_ROOT))] = hits
    assert offenders == {}


def config_option_definitions() -> list[str]:
    """Every ``add_argument("--config", …)`` call under src/pairrel, as ``file:line``."""
    places = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                    and any(isinstance(a, ast.Constant) and a.value == "--config" for a in node.args)):
                places.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return places


def test_config_option_is_defined_once():
    places = config_option_definitions()
    assert len(places) == 1 and places[0].startswith("pairrel/cli/options.py:"), places


def every_parser(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action.choices, dict):  # a sub-command set
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_every_config_option_is_the_shared_one():
    parsers = list(every_parser(cli.build_parser()))
    configs = [a for p in parsers for a in p._actions if "--config" in a.option_strings]
    assert len(configs) >= 14  # config, train, evaluate, data ×4, batches, recipe ×3, export, plan, bench, …
    assert {(a.metavar, type(a).__name__, a.type) for a in configs} == {("FILE", "_AppendAction", Path)}


def test_every_command_lives_in_the_cli_package():
    assert all(module.startswith("pairrel.cli.") for module, _ in cli.LAZY_COMMANDS.values())
    modules = {p.stem for p in CLI_PACKAGE.glob("*.py")} - {"__init__", "__main__", "options", "worker"}
    assert {m.rpartition(".")[2] for m, _ in cli.LAZY_COMMANDS.values()} == modules


def test_exit_codes_have_one_owner():
    """The CLI and the trainer take their exit status from pairrel.exit_status (the trainer is
    read with ast: importing it would import torch); 143 is the shell's 128 + SIGTERM."""
    from pairrel import exit_status

    tree = ast.parse((PACKAGE / "train.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                and node.module == "pairrel.exit_status" for alias in node.names}
    assert "EXIT_TERMINATED" in imported
    assert options.EXIT_TERMINATED is exit_status.EXIT_TERMINATED and exit_status.EXIT_TERMINATED == 143
    assert (options.EXIT_OK, options.EXIT_BAD_INPUT, options.EXIT_USAGE) == (0, 1, 2)


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "pairrel.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_python_dash_m_runs_the_command_line():
    proc = run_module("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("pairrel ")
    assert run_module("plan").returncode == options.EXIT_USAGE  # --config missing: argparse's usage error


def test_gpu_run_of_a_missing_command_is_bad_input(tmp_path):
    proc = run_module("gpu-run", "--gpus", "0", "--", str(tmp_path / "no-such-command"))
    assert proc.returncode == options.EXIT_BAD_INPUT
    assert f"pairrel gpu-run: error: command not found: {tmp_path / 'no-such-command'}" in proc.stderr


@pytest.mark.parametrize("argv", [["report", "--results", "nowhere", "--out", "nowhere-out"],
                                  ["config", "validate", "--config", "nowhere.yaml"]])
def test_bad_input_is_exit_1_naming_the_file(argv, tmp_path, capsys):
    argv = [str(tmp_path / a) if a.startswith("nowhere") else a for a in argv]
    assert cli.main(argv) == options.EXIT_BAD_INPUT
    assert f"pairrel {argv[0]}: error:" in capsys.readouterr().err
