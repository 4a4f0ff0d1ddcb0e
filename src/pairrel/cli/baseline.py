"""``pairrel baseline-check``: LLM2Vec's published checkpoint of a model, evaluated and compared
with its published scores (:mod:`pairrel.evaluate.baseline`). Exit 1 when a task is beyond the
reference file's tolerance (the table is still written, as ``.failed.md``)."""

from __future__ import annotations

from pathlib import Path

from pairrel.cli.options import EXIT_BAD_INPUT, EXIT_OK, add_config_option, study_from_args
from pairrel.evaluate.baseline import REFERENCE_FILE, run_baseline_check  # light: torch is imported on use


def cmd_baseline_check(args) -> int:
    rows = run_baseline_check(study_from_args(args), args.model, args.out, args.reference)
    print(Path(args.out).read_text(encoding="utf-8"), end="")
    return EXIT_OK if all(r["ok"] for r in rows) else EXIT_BAD_INPUT


def register(subparsers) -> None:
    """Add ``baseline-check``."""
    p = subparsers.add_parser("baseline-check", help="evaluate LLM2Vec's published checkpoint of a model and "
                                                     "compare with its published scores (exit 1 beyond tolerance)")
    add_config_option(p)
    p.add_argument("--model", required=True, help="model key (config 'models') with a published checkpoint")
    p.add_argument("--reference", type=Path, default=None, help=f"reference file (default: {REFERENCE_FILE})")
    p.add_argument("--out", type=Path, required=True, help="Markdown table to write (a .csv beside it)")
    p.set_defaults(func=cmd_baseline_check)
