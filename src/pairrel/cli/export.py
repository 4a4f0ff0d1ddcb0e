"""``pairrel export``: a run's checkpoint as a portable folder (:mod:`pairrel.export` writes it)."""

from __future__ import annotations

from pathlib import Path

from pairrel.cli.options import EXIT_OK, add_config_option


def cmd_export(args) -> int:
    """The run's model and card from the study; the checkpoint folder is the study's
    ``checkpoint-<step>`` of the run unless ``--checkpoint`` names another."""
    from pairrel.export import export_run
    from pairrel.study import Study

    print(export_run(Study.from_files(*args.config), args.run, args.step, args.out, args.merge, args.checkpoint))
    return EXIT_OK


def register(subparsers) -> None:
    """Add ``export``."""
    p = subparsers.add_parser("export", help="write a checkpoint as a portable adapter (and merged model with --merge)")
    add_config_option(p)
    p.add_argument("--run", required=True, help="run id, e.g. model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42")
    p.add_argument("--step", required=True, type=int, help="checkpoint step")
    p.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: the run's checkpoint-<step>)")
    p.add_argument("--out", required=True, type=Path, help="new folder to write")
    p.add_argument("--merge", action="store_true", help="also write the merged model as a sentence-transformers folder")
    p.set_defaults(func=cmd_export)
