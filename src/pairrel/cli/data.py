"""``pairrel data …`` (quickstart, prepare, summary, prefetch, check) and ``pairrel batches``.

    pairrel data quickstart --out DIR [--seed N] [--n-topics N] [--n-passages N] [--n-queries N]
                            [--test-fraction F]
    pairrel data prepare --config C.yaml [--config more.yaml] --data MIX --source NAME [--fold K] --out X.parquet
    pairrel data prepare --job JSON --out X.parquet      (the workflow: pairrel.jobs.source_job)
    pairrel data summary ID [--config C.yaml ...] [--register ID=DIR ...]
    pairrel data prefetch --config C.yaml [--no-models] [--no-mteb]
    pairrel data check --config C.yaml [--no-models] [--no-mteb]
    pairrel batches --config C.yaml --run RUN_ID [--steps N] [--prepared DIR]

Data commands need only their own keys, so they read a config without validating the whole
study; every command that takes a config registers its ``local_datasets:`` first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pairrel.cli.options import EXIT_BAD_INPUT, EXIT_OK, add_config_option, study_from_args


def _partial_config(paths: list) -> dict:
    """The merged config files, not validated as a whole study (see the module docstring)."""
    from pairrel.config import load_config

    return load_config(*paths, validate=False)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def cmd_quickstart(args) -> int:
    from pairrel.data.quickstart import generate

    paths = generate(args.out, seed=args.seed, n_topics=args.n_topics, n_passages=args.n_passages,
                     n_queries=args.n_queries, test_fraction=args.test_fraction)
    _print_json({split: str(path) for split, path in paths.items()})
    return EXIT_OK


def cmd_prepare(args) -> int:
    from pairrel.data.registry import register_from_config
    from pairrel.data.sources import prepare_source

    if args.job is not None:
        job = json.loads(args.job)
    else:
        if not (args.config and args.data and args.source):
            raise ValueError("data prepare needs --job JSON, or --config FILE… with --data and --source")
        from pairrel.jobs.arguments import source_job

        job = source_job(_partial_config(args.config), args.data, args.source, args.fold)
    register_from_config(job)
    meta = prepare_source(job["source"], job["spec"], Path(args.out), log=lambda m: print(m, file=sys.stderr))
    _print_json(meta)
    return EXIT_OK


def cmd_summary(args) -> int:
    from pairrel.data.registry import register_from_config, register_local_dir
    from pairrel.data.summary import summarize

    if args.config:
        register_from_config(_partial_config(args.config))
    for item in args.register or []:
        dataset_id, sep, directory = item.partition("=")
        if not sep or not dataset_id or not directory:
            raise ValueError(f"--register expects ID=DIR, got {item!r}")
        register_local_dir(dataset_id, directory)
    _print_json(summarize(args.dataset_id))
    return EXIT_OK


def cmd_prefetch(args) -> int:
    from pairrel.data.prefetch import prefetch

    for line in prefetch(_partial_config(args.config), include_models=not args.no_models, include_mteb=not args.no_mteb):
        print(f"fetched {line}", file=sys.stderr)
    return EXIT_OK


def cmd_check(args) -> int:
    from pairrel.data.prefetch import check_available

    problems = check_available(_partial_config(args.config), include_models=not args.no_models,
                               include_mteb=not args.no_mteb)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("all files the config needs are available locally", file=sys.stderr)
    return EXIT_BAD_INPUT if problems else EXIT_OK


def cmd_batches(args) -> int:
    from pairrel.data.inspect import batch_summaries, in_folder, require_prepared

    run_cfg = study_from_args(args).run(args.run).config
    if args.prepared is not None:
        run_cfg["prepared"] = in_folder(run_cfg["prepared"], args.prepared)
    require_prepared(run_cfg["prepared"], args.config)
    for summary in batch_summaries(run_cfg, args.steps):
        print(json.dumps(summary))
    return EXIT_OK


def register(subparsers) -> None:
    """Add the ``data`` command group and ``batches``."""
    data = subparsers.add_parser("data", help="datasets: quickstart corpus, preparation, summaries, caches")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = commands.add_parser("quickstart", help="generate the synthetic graded quickstart corpus")
    p.add_argument("--out", required=True, type=Path, help="output root; writes OUT/train and OUT/test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-topics", type=int, default=24)
    p.add_argument("--n-passages", type=int, default=600)
    p.add_argument("--n-queries", type=int, default=300)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.set_defaults(func=cmd_quickstart)

    p = commands.add_parser("prepare", help="prepare one source of a data mix as Parquet")
    add_config_option(p, required=False)
    p.add_argument("--data", help="name of the data mix (config key data.NAME)")
    p.add_argument("--source", help="name of the source within the mix")
    p.add_argument("--fold", type=int, help="the fold whose training queries to write (K-fold sources)")
    p.add_argument("--job", help="the whole job as JSON (what the workflow passes): data, source, spec, local_datasets")
    p.add_argument("--out", required=True, type=Path, help="output .parquet (meta: .meta.json beside it)")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser("summary", help="print a JSON summary of an ir_datasets id")
    p.add_argument("dataset_id")
    add_config_option(p, required=False,
                      help="config file whose local_datasets: are registered first; repeat to merge")
    p.add_argument("--register", action="append", metavar="ID=DIR", help="register a local dataset directory first")
    p.set_defaults(func=cmd_summary)

    for name, func, text in (("prefetch", cmd_prefetch, "download every dataset, model and MTEB task of a config"),
                             ("check", cmd_check, "list, offline, every file a config needs that is missing")):
        p = commands.add_parser(name, help=text)
        add_config_option(p)
        p.add_argument("--no-models", action="store_true", help="skip models")
        p.add_argument("--no-mteb", action="store_true", help="skip MTEB task data")
        p.set_defaults(func=func)

    p = subparsers.add_parser("batches", help="print what a run trains on: one JSON object per step")
    add_config_option(p)
    p.add_argument("--run", required=True, help="run id, e.g. model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42")
    p.add_argument("--steps", type=int, default=3, help="number of steps from step 0 (default 3)")
    p.add_argument("--prepared", type=Path, default=None,
                   help="folder of the data mix's prepared sources (default: where the workflow writes them)")
    p.set_defaults(func=cmd_batches)
