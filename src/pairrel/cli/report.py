"""``pairrel report``: its options; the tables and figures are :mod:`pairrel.report.build`'s."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pairrel.cli.options import EXIT_OK, add_config_option
from pairrel.report import build


def cmd_report(args) -> int:
    options = build.ReportOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(build.ReportOptions)})
    markdown, notes = build.build_report(options)
    for line in notes:
        print(f"pairrel report: {line}", file=sys.stderr)
    print(markdown)
    return EXIT_OK


def register(subparsers) -> None:
    """Add ``report``."""
    parser = subparsers.add_parser(
        "report", help="tables and figures from cached MTEB results",
        description=build.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, required=False,
                      help="the study's config files (repeatable): map its checkpoints' results "
                           "back to their runs and leave stale results out")
    parser.add_argument("--results", nargs="+", action="extend", required=True, type=Path,
                        metavar="DIR",
                        help="MTEB result caches: a folder holding results/, results/ itself, "
                             "a harness experiment folder, or one model/revision folder; "
                             "repeat the option or list several, every one is read")
    parser.add_argument("--benchmark", default=None,
                        help="an MTEB benchmark name (e.g. 'MTEB(eng, v1)') or "
                             "'pairrel-quickstart'; default: the --config's evaluation.benchmark, "
                             "else the tasks found in the results, grouped by type (published "
                             "baselines only beside their own benchmark)")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR",
                        help="folder for tables and figures (created)")
    parser.add_argument("--runs", type=Path, metavar="DIR",
                        help="training runs (run.yaml + metrics.jsonl) for training curves and BCE's final t and b")
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="published baselines (YAML/CSV file or folder); default: "
                             f"{build.DEFAULT_REFERENCE_DIR} when it exists and the benchmark is "
                             f"{build.REFERENCE_BENCHMARK}")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave published baselines out")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="restrict the table to these tasks, the benchmark's or your own "
                             "(averages over the subset; published baselines, which cover the "
                             "whole benchmark, are left out)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two row labels or grid selectors (loss=bce loss=softmax); default: "
                             "the two losses when the grid has exactly two")
    parser.add_argument("--display", type=Path, metavar="YAML",
                        help="display names: {model: {key: name}, data: …, loss: …, labels: …, "
                             "columns: {PairClassification: PairCl.}} (see pairrel.report.display); "
                             "merged over the --config's models.X.display, losses.X.display, "
                             "report.display")
    parser.add_argument("--reference-row", metavar="SELECTOR",
                        help="the main table's Δ column: each row's Average minus this row's "
                             "(a grid selector such as loss=softmax, or a row's display name); "
                             "default: config key report.reference_row")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip corrupt or truncated result/metrics files with a warning "
                             "instead of failing")
    parser.set_defaults(func=cmd_report)
