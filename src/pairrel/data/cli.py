"""`pairrel data ...`: quickstart, prepare, summary, prefetch, check.

    pairrel data quickstart --out DIR [--seed N] [--n-topics N] [--n-passages N] [--n-queries N]
                            [--test-fraction F]
    pairrel data prepare --config C.yaml [--config more.yaml] --data MIX --source NAME [--fold K] --out X.parquet
    pairrel data prepare --job JSON --out X.parquet      (the workflow: pairrel.jobs.source_job)
    pairrel data summary ID [--config C.yaml ...] [--register ID=DIR ...]
    pairrel data prefetch --config C.yaml [--no-models] [--no-mteb]
    pairrel data check --config C.yaml [--no-models] [--no-mteb]

Later ``--config`` files are deep-merged over earlier ones (``pairrel.config.load_config``).
Data commands need only their own keys, so they read a config without validating the whole
study; every command that takes a config registers its ``local_datasets:`` first. Exit status
as for every ``pairrel`` command: 0 success, 1 bad input (file, line or key named), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pairrel.config import load_config
from pairrel.data.registry import register_from_config, register_local_dir


def _partial_config(paths: list) -> dict:
    """The merged config files, not validated as a whole study (see the module docstring)."""
    return load_config(*paths, validate=False)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def cmd_quickstart(args) -> int:
    from pairrel.data.quickstart import generate

    paths = generate(args.out, seed=args.seed, n_topics=args.n_topics, n_passages=args.n_passages,
                     n_queries=args.n_queries, test_fraction=args.test_fraction)
    _print_json({split: str(path) for split, path in paths.items()})
    return 0


def cmd_prepare(args) -> int:
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
    return 0


def cmd_summary(args) -> int:
    from pairrel.data.summary import summarize

    if args.config:
        register_from_config(_partial_config(args.config))
    for item in args.register or []:
        dataset_id, sep, directory = item.partition("=")
        if not sep or not dataset_id or not directory:
            raise ValueError(f"--register expects ID=DIR, got {item!r}")
        register_local_dir(dataset_id, directory)
    _print_json(summarize(args.dataset_id))
    return 0


def cmd_prefetch(args) -> int:
    from pairrel.data.prefetch import prefetch

    for line in prefetch(_partial_config(args.config), include_models=not args.no_models, include_mteb=not args.no_mteb):
        print(f"fetched {line}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from pairrel.data.prefetch import check_available

    problems = check_available(_partial_config(args.config), include_models=not args.no_models,
                               include_mteb=not args.no_mteb)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("all files the config needs are available locally", file=sys.stderr)
    return 1 if problems else 0


def _add_config(parser, required: bool = True) -> None:
    parser.add_argument("--config", action="append", required=required, type=Path,
                        help="YAML config; repeat to deep-merge later files over earlier ones")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` command group to a ``pairrel`` sub-command parser set."""
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
    _add_config(p, required=False)
    p.add_argument("--data", help="name of the data mix (config key data.NAME)")
    p.add_argument("--source", help="name of the source within the mix")
    p.add_argument("--fold", type=int, help="the fold whose training queries to write (K-fold sources)")
    p.add_argument("--job", help="the whole job as JSON (what the workflow passes): data, source, spec, local_datasets")
    p.add_argument("--out", required=True, type=Path, help="output .parquet (meta: .meta.json beside it)")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser("summary", help="print a JSON summary of an ir_datasets id")
    p.add_argument("dataset_id")
    p.add_argument("--config", action="append", type=Path,
                   help="YAML config whose local_datasets: are registered first; repeat to deep-merge")
    p.add_argument("--register", action="append", metavar="ID=DIR", help="register a local dataset directory first")
    p.set_defaults(func=cmd_summary)

    for name, func, text in (("prefetch", cmd_prefetch, "download every dataset, model and MTEB task of a config"),
                             ("check", cmd_check, "list, offline, every file a config needs that is missing")):
        p = commands.add_parser(name, help=text)
        _add_config(p)
        p.add_argument("--no-models", action="store_true", help="skip models")
        p.add_argument("--no-mteb", action="store_true", help="skip MTEB task data")
        p.set_defaults(func=func)
    return data


def main(argv=None) -> int:
    """Run ``pairrel data ...`` given the arguments after ``data``."""
    from pairrel.cli import main as pairrel_main

    return pairrel_main(["data", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
