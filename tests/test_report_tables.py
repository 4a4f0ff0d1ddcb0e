"""`pairrel report` on harness-style results (mteb 2.x cache with experiment folders).

The results are written as ``mteb.evaluate(..., cache=ResultCache(DIR))`` lays them out:
``DIR/results/<org>__<model>/<revision>/experiments/<kwargs-name>/<Task>.json`` with the real
``ModelMeta.to_dict()`` as model_meta.json, and the base model without experiments.
"""

import json
import math

import mteb
import pandas as pd
import pytest

from pairrel.report import cli
from pairrel.report.collect import collect
from pairrel.report.tables import main_table, to_latex

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


def write_run(cache_dir, kwargs: dict | None, values, tasks=tuple(TASK_KEYS)):
    """Write one model/experiment folder of a ResultCache at ``cache_dir``; returns it."""
    meta = mteb.get_model_meta(MODEL)
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


def test_seed_table_mean_and_sample_std(tmp_path):
    coll = collect([write_grid(tmp_path)], benchmark=QS)
    seeds = seed_table(main_table(coll), coll.grid_columns).set_index("model")
    bce = seeds.loc["minilm (loss=bce)"]
    assert bce["n_seeds"] == 2
    assert bce["Retrieval_mean"] == pytest.approx(41.0)
    assert bce["Retrieval_std"] == pytest.approx(math.sqrt(2))  # (40, 42), ddof=1
    assert bce["PairClassification_std"] == pytest.approx(math.sqrt(8))  # (70, 74)
    assert bce["Average_mean"] == pytest.approx(64.0)
    assert bce["Average_std"] == pytest.approx((194 / 3 - 190 / 3) / math.sqrt(2))


def test_incomplete_run_has_no_average(tmp_path):
    write_run(tmp_path, {"loss": "bce", "seed": 1}, RUNS[("bce", 1)])
    write_run(tmp_path, {"loss": "softmax", "seed": 1}, RUNS[("softmax", 1)],
              tasks=("PairrelQuickstartRetrieval", "PairrelQuickstartPairClassification"))
    main = main_table(collect([tmp_path], benchmark=QS)).set_index("model")
    row = main.loc["all-MiniLM-L6-v2 (loss=softmax)"]
    assert math.isnan(row["Average"]) and math.isnan(row["STS"])
    assert row["Retrieval"] == pytest.approx(38.0)
    assert (row["n_tasks"], row["missing"]) == (2, "PairrelQuickstartSTS")


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
    code = cli.main(["report", "--results", str(results), "--benchmark", QS,
                     "--out", str(out), "--runs", str(runs)])
    assert code == 0
    for name in ["main_table.csv", "main_table.md", "main_table.tex", "per_task.csv",
                 "per_task.md", "per_task.tex", "main_table_seeds.csv", "main_table_seeds.md",
                 "comparison.csv", "comparison.md", "comparison_summary.csv", "notes.md",
                 "type_scores.png", "type_scores.pdf", "training_curves.png",
                 "training_curves.pdf"]:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))
    printed = capsys.readouterr().out
    assert ("| minilm (loss=bce, seed=2) | minilm | bce | binary@2 | 2 | 60 | 74.00 | 42.00 "
            "| 78.00 | 64.67 | 3 |") in printed
    assert "Classification" not in printed.replace("PairClassification", "")
    assert (out / "main_table.md").read_text() in printed + "\n"
    seeds_md = (out / "main_table_seeds.md").read_text()
    assert ("| minilm (loss=bce) | minilm | bce | binary@2 | 60 | 72.00 ± 2.83 | 41.00 ± 1.41"
            in seeds_md)
    summary = pd.read_csv(out / "comparison_summary.csv")  # automatic: two losses in the grid
    assert (summary.loc[0, "a"], summary.loc[0, "b"]) == ("loss=bce", "loss=softmax")
    assert summary.loc[0, "mean_diff"] == pytest.approx(5.0)  # seed means: diffs 4, 3, 8
    per_task = pd.read_csv(out / "per_task.csv")
    assert list(per_task["task"]) == ["PairrelQuickstartPairClassification",
                                      "PairrelQuickstartRetrieval", "PairrelQuickstartSTS"]
    assert per_task.set_index("task").loc["PairrelQuickstartSTS", "all-MiniLM-L6-v2"] == \
        pytest.approx(70.0)


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
    assert not (out / "training_curves.png").exists()
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
