"""``pairrel`` command line: ``config``, ``data``, ``train``, ``evaluate``, ``report``.

Every Snakemake rule calls one of these, so each stage also runs by hand, e.g.::

    pairrel config runs --config config.yaml --config presets/quickstart.yaml
    pairrel train --config config.yaml --config presets/quickstart.yaml \\
        --run model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42
    pairrel evaluate --config config.yaml --config presets/quickstart.yaml \\
        --run model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42 --step 60 --group local

The commands are thin: the study (runs, paths, identities) is :mod:`pairrel.study`'s, the work
is the library's. Exit status: 0 success, 1 bad input (a config key, file or line named on
stderr), 2 usage error, 143 training stopped by SIGTERM after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pairrel.config import ConfigError, load_config

EXIT_BAD_INPUT = 1
EPILOG = ("exit status: 0 success; 1 bad input (the config key, file or line is named on stderr); "
          "2 usage error; 143 training stopped by SIGTERM after a checkpoint")


def add_config_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config", action="append", required=required, type=Path, metavar="FILE",
        help="config file; repeat to merge presets over it (later files win)",
    )


def study_from_args(args):
    """The study of ``--config`` files, with its local datasets registered."""
    from pairrel.data.registry import register_from_config
    from pairrel.study import Study

    study = Study(load_config(*args.config))
    register_from_config(study.cfg)
    return study


def cmd_config(args) -> int:
    from pairrel.study import Study

    study = Study(load_config(*args.config))
    if args.action == "validate":
        print(f"ok: {len(study.runs)} runs")
    elif args.action == "runs":
        for run in study.runs:
            print(run.id)
    elif args.run:  # show one run: the resolved config its training job receives (run.yaml)
        json.dump(study.run(args.run).config, sys.stdout, indent=2)
        print()
    else:
        json.dump(study.cfg, sys.stdout, indent=2)
        print()
    return 0


def cmd_train(args) -> int:
    from pairrel.config import load_yaml, write_yaml
    from pairrel.layout import RUN_CONFIG
    from pairrel.train import Trainer

    if args.run_config is not None:
        run_cfg = load_yaml(args.run_config)
    else:
        if not args.config or not args.run:
            raise ConfigError("train needs --run-config FILE, or --config FILE… with --run RUN_ID")
        run_cfg = study_from_args(args).run(args.run).config
    if not isinstance(run_cfg.get("dir"), str):
        raise ConfigError(f"{args.run_config}: not a resolved run config (no 'dir'; the workflow writes these)")
    run_dir = Path(run_cfg["dir"])
    write_yaml(run_dir / RUN_CONFIG, run_cfg)  # the settings this training job runs with
    return Trainer(run_cfg, run_dir, progress=not args.no_progress).run()


def cmd_evaluate(args) -> int:
    from pairrel.evaluate.run import evaluate_any_model, evaluate_study_model

    study = study_from_args(args)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks is not None else None
    common = dict(tasks=tasks, marker=args.marker, out=args.out)
    if args.model:
        scores = evaluate_any_model(study, args.model, args.group, tasks, args.out)
    elif args.run:
        run = study.run(args.run)
        step = args.step
        if args.checkpoint is not None:
            step = checkpoint_step(args.checkpoint)
            if run.checkpoint(step).resolve() != args.checkpoint.resolve():
                raise ConfigError(f"--checkpoint {args.checkpoint}: not a checkpoint of {run.id} (expected {run.checkpoint(step)})")
        step = step if step is not None else run.final_step
        scores = evaluate_study_model(study, args.group, run=run, step=step, **common)
    else:
        scores = evaluate_study_model(study, args.group, model=args.base, **common)
    print(json.dumps(scores, indent=2))
    return 0


def checkpoint_step(path: Path) -> int:
    """The step of a ``checkpoint-{step}`` folder."""
    from pairrel.layout import CHECKPOINT_PREFIX

    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX):].isdigit():
        raise ConfigError(f"--checkpoint {path}: expected a folder named {CHECKPOINT_PREFIX}<step>")
    return int(name[len(CHECKPOINT_PREFIX):])


# Subcommands whose parsers live in their own modules: name -> (module with a `register`, the
# one-line help `pairrel --help` lists). Only the module of the command being run is imported
# (some import torch, scipy or matplotlib, seconds of start-up); tests/test_startup.py
# checks each line here against the help the module registers.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("pairrel.data.cli", "datasets: quickstart corpus, preparation, summaries, caches"),
    "batches": ("pairrel.data.inspect", "print what a run trains on: one JSON object per step"),
    "recipe": ("pairrel.recipe", "compare configured runs with LLM2Vec's supervised recipe"),
    "export": ("pairrel.export", "write a checkpoint as a portable adapter (and merged model with --merge)"),
    "gpu-run": ("pairrel.gpu_slots", "run a command on N free GPUs of this machine (sets CUDA_VISIBLE_DEVICES)"),
    "plan": ("pairrel.plan", "jobs, tokens and estimated GPU-hours per rule, before running"),
    "bench": ("pairrel.plan", "measure encode/train tokens per second of the config's models on this GPU"),
    "baseline-check": ("pairrel.evaluate.baseline", "evaluate LLM2Vec's published checkpoint of a model and "
                       "compare with its published scores (exit 1 beyond tolerance)"),
    "report": ("pairrel.report.cli", "tables and figures from cached MTEB results"),
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _add_lazy(commands, names, wanted) -> None:
    """Register each command of ``names``: fully (its module imported) when a command of
    ``wanted`` lives in its module, else as a bare entry that only lists its help."""
    import importlib

    modules = {LAZY_COMMANDS[name][0] for name in wanted if name in LAZY_COMMANDS}
    for name in names:
        if name in commands.choices:
            continue  # registered along with another command of its module (plan, bench)
        module, help_text = LAZY_COMMANDS[name]
        if module in modules:
            importlib.import_module(module).register(commands)
        else:
            commands.add_parser(name, help=help_text, add_help=False)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``pairrel`` parser. With ``argv``, only the subcommand it names is registered in full
    (the others only list their help); without, every subcommand is."""
    from pairrel import __version__

    wanted = set(LAZY_COMMANDS) if argv is None else {_command_of(argv)}
    parser = argparse.ArgumentParser(prog="pairrel", description=__doc__.split("\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"pairrel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_lazy(commands, [name for name in LAZY_COMMANDS if name != "report"], wanted)

    p = commands.add_parser("config", help="validate a config, list its runs, or print it merged with defaults",
                            epilog=EPILOG)
    p.add_argument("action", choices=["validate", "runs", "show"])
    add_config_option(p)
    p.add_argument("--run", default=None, metavar="RUN_ID",
                   help="show: print this run's fully resolved config (what its training job receives) instead")
    p.set_defaults(func=cmd_config)

    p = commands.add_parser("train", help="train one run (resumes from its last checkpoint)", epilog=EPILOG)
    p.add_argument("--run-config", type=Path, metavar="RUN_YAML",
                   help="the run's resolved config (what the workflow passes: results/{experiment}/runs/{run}/resolved/<hash>.yaml)")
    add_config_option(p, required=False)
    p.add_argument("--run", help="run id (with --config), e.g. model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("evaluate", help="evaluate a checkpoint or a base model of a study with mteb",
                            epilog=EPILOG)
    add_config_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", help="run id of the checkpoint")
    who.add_argument("--base", metavar="MODEL", help="evaluate the untrained base model of this models: key")
    who.add_argument("--model", metavar="PATH_OR_ID",
                     help="any encoder without a run: a merged `pairrel export`, a sentence-transformers folder or a hub id")
    p.add_argument("--step", type=int, help="checkpoint step (with --run; default: the final step)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint folder (with --run; instead of --step)")
    p.add_argument("--out", type=Path, help="mteb result cache folder (default: the study's, results/{experiment}/mteb)")
    p.add_argument("--group", "--task-type", dest="group", default="all",
                   help="task group: an MTEB task type, 'all', 'local' or 'heldout' (default: all)")
    p.add_argument("--tasks", metavar="NAME[,NAME…]", help="exactly these tasks of the group (default: the study's)")
    p.add_argument("--marker", type=Path, help="write a JSON record of the job here (the workflow's output)")
    p.set_defaults(func=cmd_evaluate)

    _add_lazy(commands, ["report"], wanted)
    return parser


# Bad-input errors of modules a command may import: (module, class). A module that was never
# imported raised none, so the classes are looked up only in the modules loaded by then.
_BAD_INPUT_ERRORS = (("pairrel.data.prefetch", "DataUnavailableError"), ("pairrel.data.registry", "UnknownDatasetError"),
                     ("pairrel.data.sources", "SourceError"), ("pairrel.report.scores", "ResultFileError"))


def _is_bad_input(err: BaseException) -> bool:
    loaded = tuple(getattr(sys.modules[module], name) for module, name in _BAD_INPUT_ERRORS if module in sys.modules)
    return isinstance(err, (ConfigError, FileNotFoundError, ValueError) + loaded)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if not _is_bad_input(err):
            raise
        print(f"pairrel {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
