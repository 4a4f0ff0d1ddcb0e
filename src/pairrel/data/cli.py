"""`pairrel data ...`: quickstart, prepare, summary, prefetch, check.

    pairrel data quickstart --out DIR [--seed N] [--n-topics N] [--n-passages N] [--n-queries N]
                            [--test-fraction F]
    pairrel data prepare --config C.yaml [--config more.yaml] --data MIX --source NAME --out X.parquet
    pairrel data summary ID [--register ID=DIR ...]
    pairrel data prefetch --config C.yaml [--no-models] [--no-mteb]
    pairrel data check --config C.yaml [--no-models] [--no-mteb]

Config files are read with yaml.safe_load; later ``--config`` files are deep-merged over earlier
ones (mappings merge key by key, anything else is replaced). Every command that takes a config
registers its ``local_datasets:`` first. Also runnable as ``python -m pairrel.data.cli ...``.
Exit status: 0 success, 1 a reported problem (bad input, missing files), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pairrel.data.prefetch import DataUnavailableError
from pairrel.data.registry import UnknownDatasetError, register_from_config, register_local_dir
from pairrel.data.sources import SourceError

from pairrel.config import ConfigError

EXPECTED_ERRORS = (ConfigError, SourceError, DataUnavailableError, UnknownDatasetError, FileNotFoundError, ValueError)


def load_config(paths: list) -> dict:
    """The merged config (``pairrel.config.load_config``: later files win, mappings merge).

    Not schema-validated: a data command needs only its own keys (it checks them itself), so
    it also runs on a partial config naming just ``data:`` and ``local_datasets:``.
    """
    from pairrel.config import load_config as merge

    return merge(*paths, validate=False)


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

    cfg = load_config(args.config)
    register_from_config(cfg)
    try:
        source_cfg = cfg["data"][args.data]["sources"][args.source]
    except (KeyError, TypeError):
        raise ValueError(f"config has no data.{args.data}.sources.{args.source} "
                         f"(files: {', '.join(map(str, args.config))})") from None
    meta = prepare_source(args.source, source_cfg, Path(args.out), log=lambda m: print(m, file=sys.stderr))
    _print_json(meta)
    return 0


def cmd_summary(args) -> int:
    from pairrel.data.summary import summarize

    for item in args.register or []:
        dataset_id, sep, directory = item.partition("=")
        if not sep or not dataset_id or not directory:
            raise ValueError(f"--register expects ID=DIR, got {item!r}")
        register_local_dir(dataset_id, directory)
    _print_json(summarize(args.dataset_id))
    return 0


def cmd_prefetch(args) -> int:
    from pairrel.data.prefetch import prefetch

    for line in prefetch(load_config(args.config), include_models=not args.no_models, include_mteb=not args.no_mteb):
        print(f"fetched {line}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from pairrel.data.prefetch import check_available

    problems = check_available(load_config(args.config), include_models=not args.no_models,
                               include_mteb=not args.no_mteb)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("all files the config needs are available locally", file=sys.stderr)
    return 1 if problems else 0


def _guarded(func):
    def run(args) -> int:
        try:
            return func(args)
        except EXPECTED_ERRORS as err:
            print(f"pairrel data {args.data_command}: error: {err}", file=sys.stderr)
            return 1
    return run


def _add_config(parser) -> None:
    parser.add_argument("--config", action="append", required=True, type=Path,
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
    p.set_defaults(func=_guarded(cmd_quickstart))

    p = commands.add_parser("prepare", help="prepare one source of a data mix as Parquet")
    _add_config(p)
    p.add_argument("--data", required=True, help="name of the data mix (config key data.NAME)")
    p.add_argument("--source", required=True, help="name of the source within the mix")
    p.add_argument("--out", required=True, type=Path, help="output .parquet (meta: .meta.json beside it)")
    p.set_defaults(func=_guarded(cmd_prepare))

    p = commands.add_parser("summary", help="print a JSON summary of an ir_datasets id")
    p.add_argument("dataset_id")
    p.add_argument("--register", action="append", metavar="ID=DIR", help="register a local dataset directory first")
    p.set_defaults(func=_guarded(cmd_summary))

    for name, func, text in (("prefetch", cmd_prefetch, "download every dataset, model and MTEB task of a config"),
                             ("check", cmd_check, "list, offline, every file a config needs that is missing")):
        p = commands.add_parser(name, help=text)
        _add_config(p)
        p.add_argument("--no-models", action="store_true", help="skip models")
        p.add_argument("--no-mteb", action="store_true", help="skip MTEB task data")
        p.set_defaults(func=_guarded(func))
    return data


def main(argv=None) -> int:
    """Run ``pairrel data ...`` given the arguments after ``data``."""
    parser = argparse.ArgumentParser(prog="pairrel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
