"""``pairrel report``: every table and figure from cached MTEB results, nothing recomputed.

Outputs in ``--out``:

==========================  ==================================================================
main_table.{csv,md,tex}     model, grid values, type averages, Average, n_tasks (+ missing,
                            source in the CSV); published baselines when a reference is used
main_table_seeds.{csv,md}   mean ± std over seeds (only when several seeds exist)
per_task.{csv,md,tex}       task × row main scores
comparison.{csv,md},        per-task differences, mean, paired bootstrap CI, sign test
comparison_summary.csv      (``--compare A B``, or automatically for exactly two losses)
type_scores.{png,pdf}       per-task-type comparison of the rows
ablation_<axis>.{png,pdf}   score vs every numeric grid axis (bias_init, step, …)
training_curves.{png,pdf}   loss, temperature, bias vs step (``--runs``)
heldout.{csv,md,tex}        held-out K-fold queries (nDCG@10), when evaluated
notes.md                    incomplete rows and their missing tasks, unknown tasks, warnings
==========================  ==================================================================
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pairrel.config import atomic_write_text
from pairrel.report import compare as compare_mod
from pairrel.report import figures, tables
from pairrel.report.collect import collect
from pairrel.report.scores import ResultFileError

DEFAULT_BENCHMARK = "MTEB(eng, v1)"
DEFAULT_REFERENCE_DIR = Path("results/reference")
# Published baselines (LLM2Vec, arXiv 2404.05961) are MTEB(eng, v1) numbers; never put them beside others.
REFERENCE_BENCHMARK = "MTEB(eng, v1)"
MAX_MISSING_SHOWN = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, metavar="FILE",
                        help="the study's config files (repeatable): map its checkpoints' results "
                             "back to their runs and leave stale results out")
    parser.add_argument("--results", nargs="+", required=True, type=Path, metavar="DIR",
                        help="MTEB result caches: a folder holding results/, results/ itself, "
                             "a harness experiment folder, or one model/revision folder")
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK,
                        help="an MTEB benchmark name or 'pairrel-quickstart' "
                             f"(default: {DEFAULT_BENCHMARK})")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR",
                        help="folder for tables and figures (created)")
    parser.add_argument("--runs", type=Path, metavar="DIR",
                        help="training runs (run.yaml + metrics.jsonl) for training curves")
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="published baselines (YAML/CSV file or folder); default: "
                             f"{DEFAULT_REFERENCE_DIR} when it exists and the benchmark is "
                             f"{REFERENCE_BENCHMARK}")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave published baselines out")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="restrict the benchmark to these tasks (averages over the subset; "
                             "published baselines, which cover the whole benchmark, are left out)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two row labels or grid selectors (loss=bce loss=softmax); default: "
                             "the two losses when the grid has exactly two")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip corrupt or truncated result/metrics files with a warning "
                             "instead of failing")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to a ``pairrel`` argument parser."""
    parser = subparsers.add_parser(
        "report", help="tables and figures from cached MTEB results",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run_report)
    return parser


def _references(args, benchmark: str, type_names: list[str], notes: list[str]):
    if args.no_reference:
        return None
    if args.tasks:
        notes.append("published baselines left out: they average the whole benchmark, not this subset")
        return None
    if args.reference is not None:
        if not args.reference.exists():
            raise FileNotFoundError(f"--reference {args.reference}: no such file or directory")
        if benchmark != REFERENCE_BENCHMARK:
            notes.append(f"published baselines are {REFERENCE_BENCHMARK} numbers; this table "
                         f"is {benchmark}")
        return tables.load_references(args.reference, type_names)
    if benchmark == REFERENCE_BENCHMARK and DEFAULT_REFERENCE_DIR.is_dir():
        return tables.load_references(DEFAULT_REFERENCE_DIR, type_names)
    return None


def _incomplete_notes(main, n_total: int) -> list[str]:
    notes = []
    for _, row in main[(main["source"] == "results") & (main["missing"] != "")].iterrows():
        missing = row["missing"].split("; ")
        shown = ", ".join(missing[:MAX_MISSING_SHOWN])
        if len(missing) > MAX_MISSING_SHOWN:
            shown += f", … (+{len(missing) - MAX_MISSING_SHOWN} more, see notes.md)"
        notes.append(f"{row['model']}: incomplete, {row['n_tasks']}/{n_total} tasks "
                     f"(no Average); missing {shown}")
    return notes


def _write_table(out: Path, stem: str, table, bold_columns, notes, bold_rows=False,
                 hidden=("missing", "source")) -> str:
    shown = table.drop(columns=[c for c in hidden if c in table.columns])
    markdown = tables.to_markdown(shown, notes)
    atomic_write_text(out / f"{stem}.csv", tables.to_csv(table))
    atomic_write_text(out / f"{stem}.md", markdown)
    atomic_write_text(out / f"{stem}.tex", tables.to_latex(shown, bold_columns,
                                                              bold_rows=bold_rows, notes=notes))
    return markdown


def _write_comparison(out: Path, coll, pair: tuple[str, str]) -> None:
    per_task, summary = compare_mod.compare(coll.scores, coll.grid_columns, *pair)
    atomic_write_text(out / "comparison.csv", tables.to_csv(per_task))
    atomic_write_text(out / "comparison_summary.csv", tables.to_csv(summary))
    lines = [f"# {pair[0]} vs {pair[1]}", "",
             f"diff = A − B on the 0-100 scale; 95 % paired bootstrap CI over tasks "
             f"({compare_mod.N_RESAMPLES} resamples, seed {compare_mod.BOOTSTRAP_SEED}); "
             "two-sided sign test (ties dropped).", "",
             tables.to_markdown(summary.assign(sign_p=summary["sign_p"].map(lambda p: f"{p:.4g}"))),
             "## Per task", "", tables.to_markdown(per_task)]
    atomic_write_text(out / "comparison.md", "\n".join(lines))


def run_report(args: argparse.Namespace) -> int:
    """Build every output; returns 0, or 1 with a message on stderr for bad input."""
    try:
        return _run(args)
    except (ResultFileError, FileNotFoundError, ValueError) as err:
        print(f"pairrel report: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    out: Path = args.out
    study = None
    if args.config:
        from pairrel.config import load_config
        from pairrel.study import Study

        study = Study(load_config(*args.config))
    coll = collect(list(args.results), benchmark=args.benchmark, skip_bad=args.skip_bad,
                   tasks=args.tasks, study=study)
    if coll.rows.empty:
        raise ValueError(f"no MTEB result files under {', '.join(map(str, args.results))}")
    notes_general: list[str] = []
    type_names = tables.type_columns(coll)
    refs = _references(args, coll.benchmark, type_names, notes_general)
    main = tables.main_table(coll, refs)
    n_total = len(coll.specs)

    table_notes = _incomplete_notes(main, n_total)
    citations = sorted({s.split(": ", 1)[1] for s in main["source"]
                        if s.startswith(tables.PUBLISHED_SOURCE_PREFIX)})
    table_notes += [f"(published): {c}" for c in citations]
    table_notes.append(f"Benchmark {coll.benchmark}: scores 0-100; Average = mean over all "
                       f"{n_total} tasks.")
    markdown = _write_table(out, "main_table", main, [*type_names, "Average"], table_notes)
    per_task = tables.per_task_table(coll)
    _write_table(out, "per_task", per_task, list(per_task.columns[2:]), [], bold_rows=True)

    heldout = tables.heldout_table(coll)
    if heldout is not None:
        task_cols = [c for c in heldout.columns if c not in ("model", *coll.grid_columns)]
        _write_table(out, "heldout", heldout, task_cols,
                     ["Held-out queries of K-fold sources: reranking of their judged documents, "
                      "nDCG@10 (graded gains), 0-100. Not part of any average."])

    seeds = tables.seed_table(main, coll.grid_columns)
    if seeds is not None:
        value_cols = [*type_names, "Average"]
        keys = [c for c in coll.grid_columns if c != "seed"]
        atomic_write_text(out / "main_table_seeds.csv", tables.to_csv(seeds))
        atomic_write_text(out / "main_table_seeds.md",
                            tables.seeds_markdown(seeds, value_cols, keys))

    pair = tuple(args.compare) if args.compare else compare_mod.automatic_loss_pair(coll.scores)
    if pair:
        _write_comparison(out, coll, pair)

    warnings = list(coll.warnings)
    figures.type_comparison(main, type_names, out / "type_scores")
    figures.ablation_plots(main, coll.grid_columns, type_names, out)
    if args.runs is not None:
        figures.training_curves(args.runs, out / "training_curves", skip_bad=args.skip_bad,
                                warnings=warnings)

    notes = ["# Report notes", "", f"benchmark: {coll.benchmark} ({n_total} tasks)", ""]
    for _, row in main[(main["source"] == "results") & (main["missing"] != "")].iterrows():
        notes.append(f"- incomplete: {row['model']} ({row['n_tasks']}/{n_total}); missing: "
                     f"{row['missing']}")
    for label, tasks in coll.unknown_tasks.items():
        notes.append(f"- not in {coll.benchmark} (not in any table): {label}: {', '.join(tasks)}")
    notes += [f"- {n}" for n in notes_general + warnings]
    atomic_write_text(out / "notes.md", "\n".join(notes) + "\n")
    for line in notes[4:]:
        print(f"pairrel report: {line.removeprefix('- ')}", file=sys.stderr)
    print(markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pairrel.report.cli report …`` (and tests) without the top-level CLI."""
    parser = argparse.ArgumentParser(prog="pairrel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
