"""``pairrel recipe diff|instructions|sizes``: configured runs beside LLM2Vec's supervised recipe
(the facts and the comparisons are :mod:`pairrel.recipe`'s)."""

from __future__ import annotations

import json
from pathlib import Path

from pairrel.cli.options import EXIT_OK, add_config_option, study_from_args
from pairrel.config import load_config


def cmd_diff(args) -> int:
    from pairrel.recipe import diff_report
    from pairrel.study import Study

    for line in diff_report(Study(load_config(*args.config)), args.run):
        print(line)
    return EXIT_OK


def cmd_instructions(args) -> int:
    from pairrel.recipe import instruction_preview

    table = instruction_preview(study_from_args(args), args.model, args.text)
    if args.json:
        print(json.dumps(table, indent=2, ensure_ascii=False))
        return EXIT_OK
    width = max(len(name) for name in table)
    for name, seen in table.items():
        print(f"{name:<{width}}  query:    {seen['query']}")
        print(f"{'':<{width}}  document: {seen['document']}")
    return EXIT_OK


def cmd_sizes(args) -> int:
    import yaml

    from pairrel.recipe import release_caps

    fragment, notes = release_caps(load_config(*args.config), args.release)
    print("# max_queries at the sizes of the echo-data release (pairrel recipe sizes); merge it over the config")
    print("\n".join(f"# {note}" for note in notes))
    print(yaml.safe_dump(fragment, sort_keys=False), end="")
    return EXIT_OK


def register(subparsers) -> None:
    """Add the ``recipe`` command group."""
    recipe = subparsers.add_parser("recipe", help="compare configured runs with LLM2Vec's supervised recipe")
    commands = recipe.add_subparsers(dest="recipe_command", required=True, metavar="COMMAND")
    p = commands.add_parser("diff", help="one line per difference from LLM2Vec's supervised recipe (exit 0)")
    add_config_option(p)
    p.add_argument("--run", action="append", default=None, help="only this run id (repeatable; default: every run)")
    p.set_defaults(func=cmd_diff)
    p = commands.add_parser("instructions", help="the text the encoder sees on each side of every evaluated task")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help='JSON: {task: {"query": ..., "document": ...}}')
    p.add_argument("--model", default=None, help="the model whose protocol to show (default: the grid's, if they share one)")
    p.add_argument("--text", default="TEXT", help="the sample text (default: TEXT)")
    p.set_defaults(func=cmd_instructions)
    p = commands.add_parser("sizes", help="print a preset capping each ir_datasets source at its released file's size")
    add_config_option(p)
    p.add_argument("--release", required=True, type=Path, help="folder of the echo-data release's JSONL files")
    p.set_defaults(func=cmd_sizes)
