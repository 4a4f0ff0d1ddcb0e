"""``pairrel config``, ``pairrel train``, ``pairrel evaluate``: a study's runs, one at a time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pairrel.cli.options import EPILOG, EXIT_OK, add_config_option, study_from_args
from pairrel.config import ConfigError, load_config


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
    return EXIT_OK


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
    # EXIT_OK, or EXIT_TERMINATED after a SIGTERM (pairrel.exit_status: the trainer's own constant)
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
    return EXIT_OK


def checkpoint_step(path: Path) -> int:
    """The step of a ``checkpoint-{step}`` folder (pairrel.layout), or an error naming the option."""
    from pairrel.layout import CHECKPOINT_PREFIX, checkpoint_step as step_of

    step = step_of(path)
    if step is None:
        raise ConfigError(f"--checkpoint {path}: expected a folder named {CHECKPOINT_PREFIX}<step>")
    return step


def register(commands) -> None:
    """Add ``config``, ``train`` and ``evaluate``."""
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
