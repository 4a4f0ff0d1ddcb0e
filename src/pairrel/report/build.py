"""``pairrel report``: every table and figure from cached MTEB results, nothing recomputed.

Outputs in ``--out``:

==========================  ==================================================================
main_table.{csv,md,tex}     final checkpoints only: one row per variant (model × data × loss ×
                            labels × other axes; seeds and folds averaged, mean ± std), the
                            base models and published baselines, type averages, Average,
                            Δ to ``--reference-row``, best per column in bold
all_checkpoints.csv         every evaluated model and checkpoint, one row each, unaggregated
per_step.{csv,md,tex}       Average of every variant at every evaluated step (when several)
per_task.{csv,md,tex}       final variants × tasks, one table per task type (at most 6 task
                            columns per LaTeX tabular, so each fits a page)
comparison.{csv,md},        per-task differences A − B; n, exact sign and Wilcoxon signed-rank
comparison_summary.csv      tests, bootstrap CI only for n >= 20 (``--compare A B``, or
                            automatically for exactly two losses)
heldout*.{csv,md,tex}       held-out K-fold queries (nDCG@10, RR(rel=2)@10, P(rel=2)@10): per
                            fold, mean ± std over folds, pooled over queries, BCE − softmax
type_scores.{png,pdf}       per-task-type comparison of the rows
ablation_<axis>.{png,pdf}   score vs every numeric grid axis (bias_init, step, …)
training_curves.{png,pdf}   loss, temperature, bias vs step (``--runs``)
notes.md                    incomplete rows and their missing tasks, unknown tasks, warnings
==========================  ==================================================================

Every LaTeX file needs only ``\\usepackage{booktabs}`` in a standard ``article``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pairrel.config import atomic_write_text
from pairrel.layout import REPORT_FILES, report_file
from pairrel.report import compare as compare_mod
from pairrel.report import figures, final, heldout, render, tables
from pairrel.report.collect import FOUND_BENCHMARK, collect, read_sources
from pairrel.report.display import display_from_config, load_display

DEFAULT_REFERENCE_DIR = Path("results/reference")
# Published baselines (LLM2Vec, arXiv 2404.05961) are MTEB(eng, v1) numbers; never put them beside others.
REFERENCE_BENCHMARK = "MTEB(eng, v1)"
MAX_MISSING_SHOWN = 8


@dataclass
class ReportOptions:
    """What to build the report from and where to write it (``pairrel report``'s options)."""

    results: list[Path]  # MTEB result caches, every one read
    out: Path  # folder for tables and figures (created)
    config: list[Path] | None = None  # the study's config files: results mapped back to runs
    benchmark: str | None = None  # default: the config's evaluation.benchmark, else the tasks found
    runs: Path | None = None  # training runs: training curves and BCE's final t and b
    reference: Path | None = None  # published baselines (default: DEFAULT_REFERENCE_DIR)
    no_reference: bool = False
    tasks: list[str] | None = None  # restrict the tables to these tasks
    compare: tuple[str, str] | None = None  # default: the two losses when there are exactly two
    display: Path | None = None  # display names, over the config's
    reference_row: str | None = None  # the main table's Δ column (default: report.reference_row)
    skip_bad: bool = False  # skip corrupt result/metrics files with a warning


def _references(options, benchmark: str, type_names: list[str], notes: list[str]):
    if options.no_reference:
        return None
    if options.tasks:
        notes.append("published baselines left out: they average the whole benchmark, not this subset")
        return None
    if options.reference is not None:
        if not options.reference.exists():
            raise FileNotFoundError(f"--reference {options.reference}: no such file or directory")
        if benchmark != REFERENCE_BENCHMARK:
            notes.append(f"published baselines are {REFERENCE_BENCHMARK} numbers; this table "
                         f"is {benchmark}")
        return tables.load_references(options.reference, type_names)
    if benchmark == REFERENCE_BENCHMARK and DEFAULT_REFERENCE_DIR.is_dir():
        return tables.load_references(DEFAULT_REFERENCE_DIR, type_names)
    return None


def _benchmark_phrase(benchmark: str) -> str:
    """``Benchmark MTEB(eng, v1)``; the tasks found, grouped by type, when none was named."""
    if benchmark.startswith(FOUND_BENCHMARK):
        return f"No benchmark named; the {benchmark} in the results, grouped by type"
    return f"Benchmark {benchmark}"


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


def _scope_notes(study) -> list[str]:
    """What each table's cells were computed on, from the study's evaluation plan."""
    ev = study.evaluation
    n_full = len(study.eval_plan.eval_tasks(final=True))
    n_subset = len(study.eval_plan.eval_tasks(final=False))
    folded = [r for r in study.runs if r.fold is not None]
    full = [r for r in folded if r.full_benchmark(r.final_step)]
    notes = []
    if folded and len(full) < len(folded):
        folds = sorted({r.fold for r in full})
        notes.append(f"main_table, per_task: base models and final checkpoints on all {n_full} tasks; of the K-fold "
                     f"runs only fold {', '.join(map(str, folds))} (evaluation.full_benchmark: {ev['full_benchmark']}); "
                     f"the other folds' final checkpoints ran {n_subset} tasks (evaluation.intermediate_tasks) "
                     "and their held-out fold (heldout)")
    else:
        notes.append(f"main_table, per_task: base models and every run's final checkpoint on all {n_full} tasks")
    if n_subset < n_full:
        notes.append(f"per_step: checkpoints before the last on {n_subset} tasks (evaluation.intermediate_tasks)")
    return notes


def _file(out: Path, output: str, suffix: str) -> Path:
    """Where one output's file in one format goes (its name is pairrel.layout's)."""
    return out / report_file(output, suffix)


def _base(out: Path, output: str) -> Path:
    """A figure's path without its format suffix (figures.save_figure adds .png and .pdf)."""
    return out / Path(REPORT_FILES[output][0]).stem


def _write_paper_table(out: Path, output: str, table: final.PaperTable, notes=()) -> str:
    """CSV (everything, full precision), Markdown and LaTeX (what a reader sees)."""
    notes = [*notes, *table.notes]
    style = dict(stds=table.stds, signed=table.signed, headers=table.headers)
    markdown = render.to_markdown(table.shown, notes, bold=table.bold, **style)
    atomic_write_text(_file(out, output, ".csv"), render.to_csv(table.csv))
    atomic_write_text(_file(out, output, ".md"), markdown)
    atomic_write_text(_file(out, output, ".tex"), _latex(table, notes, "footnotesize"))
    return markdown


def _latex(table: final.PaperTable, notes=(), font_size: str = "small") -> str:
    """A paper table as LaTeX, in its page-width layout when it has one."""
    if table.latex_shown is None:
        return render.to_latex(table.shown, table.bold, notes=notes, font_size=font_size,
                               stds=table.stds, signed=table.signed, headers=table.headers)
    return render.to_latex(table.latex_shown, table.bold, notes=[*notes, *table.latex_notes],
                           font_size=font_size, stds=table.latex_stds, signed=table.signed,
                           headers=table.headers, groups=table.groups, column_sep_pt=3.0)


def _write_parts(out: Path, output: str, csv, parts: list, notes=()) -> None:
    """One CSV, and Markdown/LaTeX with one titled table per part (per_task: per type)."""
    markdown, latex = [], []
    for title, table in parts:
        style = dict(stds=table.stds, headers=table.headers)
        markdown += [f"### {title}", "", render.to_markdown(table.shown, bold=table.bold, **style)]
        latex += [rf"\par\medskip\noindent\textbf{{{render.latex_escape(title)}}}\par"
                  r"\nopagebreak\smallskip", _latex(table, (), "footnotesize")]
    shared = [*notes, *(parts[0][1].notes if parts else [])]
    latex_only = parts[0][1].latex_notes if parts else []
    markdown += [f"- {n}" for n in shared]
    latex += [rf"\par\noindent{{\footnotesize {render.latex_escape(n)}}}"
              for n in [*shared, *latex_only]]
    atomic_write_text(_file(out, output, ".csv"), render.to_csv(csv))
    atomic_write_text(_file(out, output, ".md"), "\n".join(markdown) + "\n")
    atomic_write_text(_file(out, output, ".tex"), "\n".join(latex) + "\n")


def _side_name(selector: str, display: dict) -> str:
    """A --compare side by its display names (``loss=softmax`` -> ``InfoNCE``)."""
    parsed = compare_mod.parse_selector(selector)
    if isinstance(parsed, str):
        return selector
    return ", ".join(display.get(k, {}).get(str(v)) or f"{k}={v}" for k, v in parsed.items())


def _write_comparison(out: Path, coll, pair: tuple[str, str], display: dict | None = None) -> None:
    per_task, summary = compare_mod.compare(coll.scores, coll.grid_columns, *pair)
    atomic_write_text(_file(out, "comparison", ".csv"), render.to_csv(per_task))
    atomic_write_text(_file(out, "comparison_summary", ".csv"), render.to_csv(summary))
    shown = summary.copy()
    for column in ("sign_p", "wilcoxon_p", "min_p"):
        shown[column] = shown[column].map(lambda p: f"{p:.3g}")
    if shown[["ci_low", "ci_high"]].isna().all().all():
        shown = shown.drop(columns=["ci_low", "ci_high"])
    replicates = ""
    if (summary[["n_runs_a", "n_runs_b"]] > 1).any().any():
        replicates = (" Each side's per-task score is the mean over its runs (n_runs_a, "
                      "n_runs_b: seeds × folds).")
    names = [_side_name(side, display or {}) for side in pair]
    title = f"# {names[0]} vs {names[1]}"
    if names != list(pair):
        title += f" ({pair[0]} vs {pair[1]})"
    lines = [title, "", compare_mod.describe_tests("task") + replicates, "",
             render.to_markdown(shown), "Columns:", "", compare_mod.describe_columns(shown.columns),
             "", "## Per task", "", "`a`, `b`: each side's score (0-100); `diff` = a − b.", "",
             render.to_markdown(per_task)]
    atomic_write_text(_file(out, "comparison", ".md"), "\n".join(lines))


def _write_heldout(out: Path, options, coll, display: dict, pair, notes: list[str],
                   study=None) -> None:
    """heldout.{csv,md,tex} and heldout_comparison.{csv,md,tex} from per-query scores."""
    # Per-query scores are not part of the collection: read the result files' own blocks.
    frame = heldout.per_query_frame(read_sources(list(options.results), skip_bad=options.skip_bad,
                                                 study=study))
    if frame.empty:
        table = tables.heldout_table(coll)
        note = ["Held-out tasks without per-query scores (evaluated before they were stored): "
                "nDCG@10 per fold only, 0-100; re-evaluate for pooled scores and paired tests."]
        notes.append(note[0])
        task_cols = [c for c in table.columns if c not in ("model", *coll.grid_columns)]
        atomic_write_text(_file(out, "heldout", ".csv"), render.to_csv(table))
        atomic_write_text(_file(out, "heldout", ".md"), render.to_markdown(table, note))
        atomic_write_text(_file(out, "heldout", ".tex"), render.to_latex(table, task_cols, notes=note))
        return
    grid_columns = [c for c in dict.fromkeys(["grid_model", *coll.grid_columns])
                    if c in frame.columns]
    _write_paper_table(out, "heldout", heldout.heldout_summary(frame, grid_columns, display))
    if not pair:
        return
    try:
        comparison = heldout.heldout_comparison(frame, grid_columns, *pair, display=display)
    except ValueError as err:  # a row label, not a grid selector: no per-query pairing
        notes.append(f"held-out comparison skipped: {err}")
        return
    if comparison is None:
        notes.append(f"held-out comparison {pair[0]} vs {pair[1]} skipped: one side has no "
                     "held-out per-query scores")
        return
    _write_paper_table(out, "heldout_comparison", comparison)


def build_report(options: ReportOptions) -> tuple[str, list[str]]:
    """Write every output to ``options.out``; returns the main table (Markdown) and the notes
    worth showing (incomplete rows, unknown tasks, warnings). Bad input raises ValueError,
    FileNotFoundError or ResultFileError, naming the file."""
    import time

    started = time.time()
    out: Path = options.out
    study = None
    if options.config:
        from pairrel.config import load_config
        from pairrel.study import Study

        study = Study(load_config(*options.config))
    else:  # a harness folder's own frozen config: the same provenance rule as with --config
        from pairrel.report.provenance import study_of_results

        study = study_of_results(list(options.results))
    coll = collect(list(options.results), benchmark=options.benchmark, skip_bad=options.skip_bad,
                   tasks=options.tasks, study=study)
    if coll.rows.empty:
        raise ValueError(f"no MTEB result files under {', '.join(map(str, options.results))}")
    display = display_from_config(study.cfg) if study is not None else {}
    if options.display:  # the file's names win over the config's
        for axis, names in load_display(options.display).items():
            display[axis] = {**display.get(axis, {}), **names}
    reference_row = options.reference_row or (
        (study.cfg.get("report") or {}).get("reference_row") if study is not None else None)
    notes_general: list[str] = _scope_notes(study) if study is not None else []
    type_names = tables.type_columns(coll)
    refs = _references(options, coll.benchmark, type_names, notes_general)
    main = tables.main_table(coll, refs)
    n_total = len(coll.specs)
    model_names = tables.model_names(coll)
    paper_main, paper_grid = tables.with_model_column(main, coll)

    table_notes = _incomplete_notes(main, n_total)
    citations = sorted({s.split(": ", 1)[1] for s in main["source"]
                        if s.startswith(tables.PUBLISHED_SOURCE_PREFIX)})
    table_notes += [f"(published): {c}" for c in citations]
    table_notes.append(f"{_benchmark_phrase(coll.benchmark)}: scores 0-100; Average = mean over all "
                       f"{n_total} tasks.")
    if coll.own_specs:
        table_notes.append(f"Own tasks ({', '.join(coll.own_specs)}) are outside {coll.benchmark} "
                           "and its Average: see per_task.md.")
    learned = None
    if options.runs is not None:  # BCE's final t and b per run, and any that barely moved
        from pairrel.report import loss_params

        learned = loss_params.final_loss_parameters(figures.load_runs(options.runs, skip_bad=options.skip_bad))
        notes_general += loss_params.stuck_notes(learned)
    paper = final.final_table(paper_main, paper_grid, type_names, display, reference_row,
                              model_names, learned)
    markdown = _write_paper_table(out, "main_table", paper, table_notes)
    atomic_write_text(_file(out, "all_checkpoints", ".csv"), render.to_csv(main))
    steps = final.per_step_table(paper_main, paper_grid, [*type_names, "Average"], display)
    if steps is not None:
        _write_paper_table(out, "per_step", steps)
    task_types = {name: spec.type for name, spec in sorted(
        coll.specs.items(), key=lambda kv: (type_names.index(kv[1].type), kv[0].lower()))}
    per_task_notes = [f"{_benchmark_phrase(coll.benchmark)}: main score of each task, 0-100."]
    per_task_scores = coll.scores
    if coll.own_specs:  # own tasks: a section of their own after the benchmark's types
        import pandas as pd

        own_section = f"own tasks, outside {coll.benchmark} and its averages"
        task_types |= {name: f"{spec.type} ({own_section})" for name, spec in sorted(
            coll.own_specs.items(), key=lambda kv: (kv[1].type, kv[0].lower()))}
        per_task_scores = pd.concat([coll.scores, coll.own_scores], ignore_index=True)
        per_task_notes.append(f"Sections marked '{own_section}' are not part of any Average.")
    per_task_csv, parts = final.per_task_tables(per_task_scores, paper_main, paper_grid, task_types,
                                                display, model_names)
    _write_parts(out, "per_task", per_task_csv, parts, per_task_notes)

    pair = tuple(options.compare) if options.compare else compare_mod.automatic_loss_pair(coll.scores)
    if not coll.extra_scores.empty:
        _write_heldout(out, options, coll, display, pair, notes_general, study)

    if pair:
        try:
            _write_comparison(out, coll, pair, display)
        except ValueError as err:  # a side absent (a study with one loss): say so, go on
            notes_general.append(f"comparison {pair[0]} vs {pair[1]} skipped: {err}")

    warnings = list(coll.warnings)
    figures.type_comparison(main, type_names, _base(out, "type_scores"), grid_columns=coll.grid_columns, display=display)
    figures.ablation_plots(main, coll.grid_columns, type_names, out, display=display)
    if options.runs is not None:
        figures.training_curves(options.runs, _base(out, "training_curves"), skip_bad=options.skip_bad,
                                warnings=warnings, display=display)

    for output in figures.ALWAYS_WRITTEN:
        png = out / REPORT_FILES[output][0]
        if not png.is_file() or png.stat().st_mtime < started:
            figures.placeholder(_base(out, output), f"{output.replace('_', ' ')}: nothing to plot\n(see notes.md)")

    notes = ["# Report notes", "", f"benchmark: {coll.benchmark} ({n_total} tasks)", ""]
    for _, row in main[(main["source"] == "results") & (main["missing"] != "")].iterrows():
        notes.append(f"- incomplete: {row['model']} ({row['n_tasks']}/{n_total}); missing: "
                     f"{row['missing']}")
    for label, tasks in coll.unknown_tasks.items():
        notes.append(f"- not in {coll.benchmark} (not in any table): {label}: {', '.join(tasks)}")
    notes += [f"- {n}" for n in notes_general + warnings]
    atomic_write_text(_file(out, "notes", ".md"), "\n".join(notes) + "\n")
    return markdown, [line.removeprefix("- ") for line in notes[4:]]
