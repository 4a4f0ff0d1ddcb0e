"""``pairrel`` command line: every stage of a study (config, data, train, evaluate, report) and its tools.

Every Snakemake rule calls one of these, so each stage also runs by hand, e.g.::

    pairrel config runs --config config.yaml --config presets/quickstart.yaml
    pairrel train --config config.yaml --config presets/quickstart.yaml \\
        --run model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42
    pairrel evaluate --config config.yaml --config presets/quickstart.yaml \\
        --run model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42 --step 60 --group local

The commands are thin: the study (runs, paths, identities) is :mod:`pairrel.study`'s, the work
is the library's, which never imports this package. One module per command family holds its
``register(subparsers)`` and ``cmd_*`` functions; :mod:`pairrel.cli.options` holds what they
share (``--config``, the exit codes, which errors are bad input). Exit status: 0 success, 1 bad
input (a config key, file or line named on stderr), 2 usage error, 143 training stopped by
SIGTERM after writing a checkpoint (details in :mod:`pairrel.cli.options`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pairrel.cli.options import EPILOG, EXIT_BAD_INPUT, is_bad_input

# Every subcommand: name -> (module with a `register`, the one-line help `pairrel --help`
# lists). Only the module of the command being run is imported (some import torch, scipy or
# matplotlib, seconds of start-up); tests/test_startup.py checks each line here against the help
# the module registers.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("pairrel.cli.run", "validate a config, list its runs, or print it merged with defaults"),
    "data": ("pairrel.cli.data", "datasets: quickstart corpus, preparation, summaries, caches"),
    "train": ("pairrel.cli.run", "train one run (resumes from its last checkpoint)"),
    "evaluate": ("pairrel.cli.run", "evaluate a checkpoint or a base model of a study with mteb"),
    "batches": ("pairrel.cli.data", "print what a run trains on: one JSON object per step"),
    "recipe": ("pairrel.cli.recipe", "compare configured runs with LLM2Vec's supervised recipe"),
    "export": ("pairrel.cli.export", "write a checkpoint as a portable adapter (and merged model with --merge)"),
    "gpu-run": ("pairrel.cli.gpu", "run a command on N free GPUs of this machine (sets CUDA_VISIBLE_DEVICES)"),
    "plan": ("pairrel.cli.plan", "jobs, tokens and estimated GPU-hours per rule, before running"),
    "bench": ("pairrel.cli.plan", "measure encode/train tokens per second of the config's models on this GPU"),
    "baseline-check": ("pairrel.cli.baseline", "evaluate LLM2Vec's published checkpoint of a model and "
                       "compare with its published scores (exit 1 beyond tolerance)"),
    "report": ("pairrel.cli.report", "tables and figures from cached MTEB results"),
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``pairrel`` parser. With ``argv``, only the module of the subcommand it names is
    imported and its commands registered in full (the others only list their help); without,
    every subcommand is."""
    from pairrel import __version__

    wanted = set(LAZY_COMMANDS) if argv is None else {_command_of(argv)}
    modules = {LAZY_COMMANDS[name][0] for name in wanted if name in LAZY_COMMANDS}
    parser = argparse.ArgumentParser(prog="pairrel", description=__doc__.split("\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"pairrel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in LAZY_COMMANDS.items():
        if name in commands.choices:
            continue  # registered along with an earlier command of its module (config, train)
        if module in modules:
            importlib.import_module(module).register(commands)
        else:
            commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``pairrel`` command; returns its exit status (see :mod:`pairrel.cli.options`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if not is_bad_input(err):
            raise
        print(f"pairrel {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
