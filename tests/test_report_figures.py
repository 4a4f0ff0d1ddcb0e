"""Figures at paper size: read back from the matplotlib Figures and the saved files.

Fixtures are report row tables and training-run folders as the harness writes them
(``run.yaml`` + ``metrics.jsonl``), with hand-chosen numbers; nothing is trained.
"""

import json
import math
import os
import re
import struct
import zlib

import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from pairrel.report import figures, style

GRID = ["grid_model", "data", "loss", "labels", "seed", "step"]
QS_TYPES = ["PairClassification", "Retrieval", "STS"]
MTEB_TYPES = ["Classification", "Clustering", "PairClassification", "Reranking", "Retrieval",
              "STS", "Summarization"]
DISPLAY = {"loss": {"bce": "BCE", "softmax": "InfoNCE"}, "model": {"minilm": "MiniLM-L6"}}


def frame(records: list[dict]) -> pd.DataFrame:
    """A report row table: grid columns kept as objects (None where a row has no value)."""
    table = pd.DataFrame(records)
    for column in GRID:
        table[column] = pd.Series([r.get(column) for r in records], dtype=object)
    return table


def quickstart_rows(seeds=(42,)) -> pd.DataFrame:
    """Base model + 2 losses × 2 labels at steps 30 and 60; scores = hand-set per run."""
    records = [{"model": "minilm", "PairClassification": 60.0, "Retrieval": 30.0, "STS": 70.0,
                "Average": 160 / 3, "source": "results"}]
    for i, (loss, labels) in enumerate([("softmax", "binary@2"), ("softmax", "graded-linear"),
                                        ("bce", "binary@2"), ("bce", "graded-linear")]):
        for step in (30, 60):
            for s, seed in enumerate(seeds):
                # step 60 scores 10 above step 30; a second seed 2 above the first
                values = [62.0 + i + step / 6 + 2 * s, 40.0 + 3 * i + step / 6 + 2 * s,
                          71.0 + i + step / 6 + 2 * s]
                records.append({"model": f"minilm ({loss}, {labels}, {seed}, {step})",
                                "grid_model": "minilm", "data": "quickstart", "loss": loss,
                                "labels": labels, "seed": seed, "step": step,
                                **dict(zip(QS_TYPES, values)), "Average": float(np.mean(values)),
                                "source": "results"})
    return frame(records)


def texts(fig) -> list[matplotlib.text.Text]:
    return [t for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip()]


def assert_paper_size(fig, width_in):
    assert fig.get_size_inches()[0] == pytest.approx(width_in)
    sizes = [t.get_fontsize() for t in texts(fig)]
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# ------------------------------------------------------------------------ naming


def test_run_name_from_grid_and_display_names():
    grids = [{"model": "minilm", "loss": "bce", "labels": "binary@2", "seed": 42, "step": 60},
             {"model": "minilm", "loss": "softmax", "labels": "binary@2", "seed": 7, "step": 30},
             {"model": "minilm", "loss": "bce", "labels": "binary@2", "bias_init": -4.0}]
    keys = style.naming_keys(grids)
    assert keys == ["loss", "bias_init"]  # model and labels equal; seed and step never
    assert style.run_name(grids[0], keys, DISPLAY) == "BCE"
    assert style.run_name(grids[2], keys, DISPLAY) == "BCE, bias_init=-4"
    assert style.run_name(grids[1], ["model", "loss", "labels"], DISPLAY) == \
        "MiniLM-L6, InfoNCE, binary@2"
    assert style.naming_keys([grids[0]]) == ["model"]  # a lone run is named by its model


def test_display_names_from_config():
    config = {"models": {"llama3-8b": {"display": "Llama-3-8B"}, "x": {}},
              "losses": {"softmax": {"type": "softmax", "display": "InfoNCE"}},
              "data": {"open-mix": {"display": "E5 open mix"}},
              "report": {"display": {"labels": {"binary@2": "binary (grade ≥ 2)"},
                                     "loss": {"softmax": "softmax"}}}}
    from pairrel.report.display import display_from_config

    assert display_from_config(config) == {
        "model": {"llama3-8b": "Llama-3-8B"}, "data": {"open-mix": "E5 open mix"},
        "loss": {"softmax": "softmax"},  # report.display wins over losses.X.display
        "labels": {"binary@2": "binary (grade ≥ 2)"}}


def test_series_styles_encode_loss_by_colour_and_labels_by_dashes():
    grids = [{"loss": l, "labels": g} for l in ("bce", "softmax")
             for g in ("binary@2", "graded-linear")]
    looks = style.series_styles(grids, ["loss", "labels"])
    assert looks[0]["color"] == looks[1]["color"] != looks[2]["color"] == looks[3]["color"]
    assert looks[0]["linestyle"] == looks[2]["linestyle"] != looks[1]["linestyle"]
    # a third varying key the looks cannot show: every run its own colour
    grids3 = [{**g, "model": m} for g in grids for m in ("a", "b")]
    looks3 = style.series_styles(grids3, ["model", "loss", "labels"])
    assert len({lk["color"] for lk in looks3}) == 8


# ------------------------------------------------------------------- type scores


def test_heatmap_shows_final_checkpoints_mean_over_seeds_at_one_column():
    rows = quickstart_rows(seeds=(42, 43))
    fig = figures.type_scores_figure(rows, GRID, QS_TYPES, DISPLAY)
    assert_paper_size(fig, style.ONE_COLUMN_IN)  # 4 score columns fit one column
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["MiniLM-L6 (base)", "InfoNCE, binary@2", "InfoNCE, graded-linear",
                     "BCE, binary@2", "BCE, graded-linear"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*QS_TYPES, "Average"]
    cells = np.array([float(t.get_text()) for t in ax.texts]).reshape(len(names), 4)
    # run i=2 (bce, binary@2) at step 60: seeds give 62+2+10 and +2 -> mean 75.0
    assert cells[3, 0] == pytest.approx(75.0)
    assert cells[3, 1] == pytest.approx(40.0 + 6 + 10 + 1)
    assert cells[0].tolist() == pytest.approx([60.0, 30.0, 70.0, 53.3])
    assert not any("30" in n for n in names)  # no checkpoint row

    # one colour scale for every column, read back from the drawn image: the darker a cell,
    # the higher its score, whichever column it is in; a colour bar spans the scores shown
    assert ax.get_title() == "Score per task type (0-100)"
    (image,) = ax.images
    rgba = image.to_rgba(image.get_array())
    luminance = (rgba[..., :3] @ [0.299, 0.587, 0.114]).ravel()
    values = image.get_array().ravel()
    order = np.argsort(values)
    assert np.all(np.diff(luminance[order]) <= 1e-12)  # higher score, never lighter
    assert luminance[np.argmax(values)] < luminance[np.argmin(values)]
    (bar_ax,) = [a for a in fig.axes if a is not ax]
    assert bar_ax.get_ylabel() == "score (0-100)"
    assert bar_ax.get_ylim() == pytest.approx((30.0, values.max()))
    assert fig.pairrel_data["scale"] == pytest.approx((30.0, values.max()))


def test_heatmap_two_columns_for_mteb_types_and_dot_plot_beyond_twenty_rows():
    rng = np.random.default_rng(0)
    records = []
    for m in range(4):
        for data, labels in [("open-mix", "binary@1"), ("trec-dl-2023", "binary@2"),
                             ("trec-dl-2023", "graded-linear")]:
            for loss in ("softmax", "bce"):
                values = dict(zip(MTEB_TYPES, rng.uniform(30, 90, len(MTEB_TYPES)).round(2)))
                records.append({"model": "x", "grid_model": f"m{m}", "data": data, "loss": loss,
                                "labels": labels, "seed": 42, "step": 1000, **values,
                                "Average": 60.0, "source": "results"})
    few = frame(records[:12])
    fig = figures.type_scores_figure(few, GRID, MTEB_TYPES, DISPLAY)
    assert_paper_size(fig, style.TWO_COLUMN_IN)
    assert len(fig.axes[0].get_yticklabels()) == 12
    many = frame(records)  # 24 rows: a heatmap would be unreadable
    fig = figures.type_scores_figure(many, GRID, MTEB_TYPES, DISPLAY)
    assert_paper_size(fig, style.TWO_COLUMN_IN)
    ax = fig.axes[MTEB_TYPES.index("Retrieval")]
    lines = [t.get_text() for t in ax.get_yticklabels()]
    assert len(lines) == 12 and lines[0] == "m0, open-mix, binary@1"  # loss is the marker
    bce = next(line for line in ax.get_lines() if line.get_label() == "BCE")
    expected = [r["Retrieval"] for r in records if r["loss"] == "bce"]
    assert list(bce.get_xdata()) == pytest.approx(expected)
    assert legend_labels(fig) == ["BCE", "InfoNCE"]


# ---------------------------------------------------------------------- ablations


def test_ablation_over_steps_plots_the_means_and_claims_no_seeds_with_one():
    rows = quickstart_rows()
    figs = figures.ablation_figures(rows, GRID, QS_TYPES, DISPLAY)
    assert list(figs) == ["step"]
    fig = figs["step"]
    assert_paper_size(fig, style.TWO_COLUMN_IN)
    average = fig.axes[0]
    assert average.get_title() == "Average"
    series = next(c for c in average.containers if c.get_label() == "BCE, binary@2")
    line = series.lines[0]  # the data line of the error-bar container
    assert list(line.get_xdata()) == [30, 60]
    for ax in fig.axes:  # a tick, labelled, at each checkpoint evaluated (not at 32, 36, ...)
        if ax.get_visible():
            assert list(ax.get_xticks()) == [30, 60]
            assert [t.get_text() for t in ax.get_xticklabels()] == ["30", "60"]
    expected = [np.mean([62 + 2 + s / 6, 40 + 6 + s / 6, 71 + 2 + s / 6]) for s in (30, 60)]
    assert list(line.get_ydata()) == pytest.approx(expected)
    base = [l for l in average.get_lines() if l.get_label() == "MiniLM-L6 (base)"]
    assert base and base[0].get_ydata()[0] == pytest.approx(160 / 3)
    assert legend_labels(fig) == ["InfoNCE, binary@2", "InfoNCE, graded-linear",
                                  "BCE, binary@2", "BCE, graded-linear", "MiniLM-L6 (base)"]
    assert all(legend.get_title().get_text() == "" for legend in fig.legends)
    assert not any("seed" in t.get_text() for t in texts(fig))


def test_ablation_with_two_seeds_draws_sd_bars_and_says_so():
    fig = figures.ablation_figures(quickstart_rows(seeds=(1, 2)), GRID, QS_TYPES)["step"]
    assert fig.legends[0].get_title().get_text() == "mean ± s.d. over 2 seeds"
    ax = fig.axes[1]  # PairClassification: the two seeds differ by 2 -> s.d. sqrt(2)
    bars = [c for c in ax.collections if len(c.get_segments())]
    lengths = [seg[1][1] - seg[0][1] for c in bars for seg in c.get_segments()]
    assert len(lengths) == 4 * 2  # 4 series x 2 steps
    assert lengths == pytest.approx([2 * math.sqrt(2)] * 8)


# ---------------------------------------------------------------- training curves


def resolved_loss(loss_type):
    """A loss entry as a run.yaml holds it (resolved: every schema default filled), in YAML flow style."""
    if loss_type == "bce":
        return ("{type: bce, temperature_init: 10.0, bias_init: -4.0, learn_temperature: true, learn_bias: true, "
                "learning_rate: null}")
    return "{type: softmax, temperature: 0.02}"


def write_run(root, loss, labels, temperature, bias, losses):
    folder = root / "model~minilm" / "data~quickstart" / f"loss~{loss}" / f"labels~{labels}" / \
        "seed~42"
    folder.mkdir(parents=True)
    (folder / "run.yaml").write_text(
        f"grid: {{model: minilm, data: quickstart, loss: {loss}, labels: {labels}, seed: 42}}\n"
        f"loss: {resolved_loss('bce' if loss.startswith('bce') else 'softmax')}\n")
    lines = []
    for step, value in enumerate(losses, start=1):
        record = {"step": step, "loss": value, "lr": 2e-4, "temperature": temperature(step)}
        if bias is not None:
            record["bias"] = bias(step)
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "checkpoint-10").mkdir()
    return folder


def curves_runs(root, decades: bool):
    softmax_loss = [3.0 - 0.1 * s for s in range(10)]
    bce_loss = [5.0 - 0.3 * s for s in range(10)]
    scale = (lambda s: 10.0 * 1.5 ** s) if decades else (lambda s: 10.0 - 0.1 * s)
    for labels in ("binary@2", "graded-linear"):
        write_run(root, "softmax", labels, lambda s: 0.02, None, softmax_loss)
        write_run(root, "bce", labels, scale, lambda s: -4.0 - 0.05 * s, bce_loss)
    return root


def test_training_curves_separate_loss_axes_and_same_names_as_ablation(tmp_path):
    runs = figures.load_runs(curves_runs(tmp_path, decades=False))
    fig = figures.training_curves_figure(runs, DISPLAY)
    assert_paper_size(fig, style.TWO_COLUMN_IN)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["InfoNCE (softmax) loss", "BCE (pair relevance) loss",
                      "BCE scale t = exp(t′)", "BCE bias b"]
    infonce, bce, scale, bias = fig.axes
    assert {l.get_label() for l in infonce.get_lines()} == {"InfoNCE, binary@2",
                                                            "InfoNCE, graded-linear"}
    line = next(l for l in bce.get_lines() if l.get_label() == "BCE, binary@2")
    assert list(line.get_ydata()) == pytest.approx([5.0 - 0.3 * s for s in range(10)])
    assert {l.get_label() for l in scale.get_lines()} == {"BCE, binary@2", "BCE, graded-linear"}
    assert scale.get_yscale() == "linear"  # 10 -> 9.1: less than a decade
    assert list(bias.get_lines()[0].get_ydata()) == pytest.approx(
        [-4.0 - 0.05 * s for s in range(1, 11)])
    # the same runs carry the same names in the ablation figure
    ablation = figures.ablation_figures(quickstart_rows(), GRID, QS_TYPES, DISPLAY)["step"]
    assert set(legend_labels(fig)) == set(legend_labels(ablation)) - {"MiniLM-L6 (base)"}


def test_scale_over_decades_gets_a_log_axis_with_plain_tick_labels(tmp_path):
    runs = figures.load_runs(curves_runs(tmp_path, decades=True))
    fig = figures.training_curves_figure(runs)
    scale = fig.axes[2]
    assert scale.get_yscale() == "log"
    fig.canvas.draw()
    labels = [t.get_text() for t in scale.get_yticklabels() if t.get_text()]
    # t from 15 to 577: 1-2-5 ticks written as plain numbers (no "2×10¹")
    assert {"20", "50", "100", "200", "500"} <= set(labels), labels
    assert all(re.fullmatch(r"[0-9.]+", label) for label in labels), labels


def test_bad_run_yaml_is_named(tmp_path):
    folder = write_run(tmp_path, "bce", "binary@2", lambda s: 10.0, lambda s: -4.0, [1.0])
    (folder / "run.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match=re.escape(str(folder / "run.yaml"))):
        figures.load_runs(tmp_path)


# ------------------------------------------------------------------------ saving


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as handle:
        header = handle.read(24)
    return struct.unpack(">II", header[16:24])


def pdf_media_box(path) -> list[float]:
    data = path.read_bytes()
    boxes = re.findall(rb"/MediaBox\s*\[([^\]]+)\]", data)
    if not boxes:  # inside a compressed object stream
        for stream in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
            try:
                boxes += re.findall(rb"/MediaBox\s*\[([^\]]+)\]", zlib.decompress(stream))
            except zlib.error:
                continue
    return [float(v) for v in boxes[0].split()]


def test_saved_files_have_print_width_and_group_readable_mode(tmp_path):
    old = os.umask(0o022)
    try:
        written = figures.type_comparison(quickstart_rows(), QS_TYPES, tmp_path / "type_scores",
                                          grid_columns=GRID, display=DISPLAY)
    finally:
        os.umask(old)
    png, pdf = written
    assert png_size(png)[0] == round(style.ONE_COLUMN_IN * style.DPI)
    x0, _, x1, _ = pdf_media_box(pdf)
    assert x1 - x0 == pytest.approx(style.ONE_COLUMN_IN * 72, abs=0.5)
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}
    assert not list(tmp_path.glob(".*.tmp"))
    # no creation date in the PDF: the same input gives the same bytes
    first = pdf.read_bytes()
    figures.type_comparison(quickstart_rows(), QS_TYPES, tmp_path / "type_scores",
                            grid_columns=GRID, display=DISPLAY)
    assert pdf.read_bytes() == first


# ------------------------------------------------- a harness results folder, no training

QS_TASKS = {"PairrelQuickstartRetrieval": "ndcg_at_10", "PairrelQuickstartSTS": "cosine_spearman",
            "PairrelQuickstartPairClassification": "max_ap"}
QS_RUNS = [("softmax", "binary@2"), ("softmax", "graded-linear"), ("bce", "binary@2"),
           ("bce", "graded-linear")]


def _mteb_result(task: str, value: float) -> dict:
    entry = {QS_TASKS[task]: value, "main_score": value, "hf_subset": "default",
             "languages": ["eng-Latn"]}
    return {"dataset_revision": "local", "task_name": task, "mteb_version": "2.26.24",
            "scores": {"test": [entry]}, "evaluation_time": 1.0}


def write_quickstart_results(results, steps=(30, 60), n_logged=60):
    """``results/{experiment}`` as the quickstart DAG leaves it, with made-up numbers.

    MTEB caches as ``pairrel evaluate`` writes them (``pairrel/minilm``, revision ``base`` and
    ``lora`` with the run's grid as experiment kwargs), and one run folder per grid run with
    ``run.yaml`` and ``metrics.jsonl`` (``n_logged`` steps). Returns the scores written,
    ``{(loss, labels, step) or "base": [retrieval, sts, pair classification]}`` on 0-1.
    """
    rng = np.random.default_rng(0)
    written = {}

    def write(folder, meta, values):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model_meta.json").write_text(json.dumps(meta))
        for task, value in zip(QS_TASKS, values):
            (folder / f"{task}.json").write_text(json.dumps(_mteb_result(task, value)))

    cache = results / "mteb" / "results" / "pairrel__minilm"
    written["base"] = [0.30, 0.70, 0.60]
    write(cache / "base", {"name": "pairrel/minilm", "revision": "base"}, written["base"])
    for i, (loss, labels) in enumerate(QS_RUNS):
        grid = {"data": "quickstart", "loss": loss, "labels": labels, "seed": 42}
        for step in steps:
            values = [round(0.4 + 0.02 * i + step / 1000, 4), round(0.72 + 0.01 * i, 4),
                      round(0.62 + 0.015 * i + step / 2000, 4)]
            kwargs = {**grid, "step": step}
            name = "__".join(f"{k}_{v}" for k, v in kwargs.items())
            write(cache / "lora" / "experiments" / name,
                  {"name": "pairrel/minilm", "revision": "lora", "experiment_kwargs": kwargs},
                  values)
            written[(loss, labels, step)] = values
        run = results / "runs" / "model~minilm" / "data~quickstart" / f"loss~{loss}" / \
            f"labels~{labels}" / "seed~42"
        run.mkdir(parents=True, exist_ok=True)
        (run / "run.yaml").write_text(
            f"grid: {{model: minilm, data: quickstart, loss: {loss}, labels: {labels}, "
            f"seed: 42}}\nloss: {resolved_loss(loss)}\n")
        t, b, lines = 10.0, -4.0, []
        for step in range(1, n_logged + 1):
            record = {"step": step, "lr": 2e-4,
                      "loss": (4.0 if loss == "bce" else 3.0) * math.exp(-step / 25) + 1.0
                      + float(rng.normal(0, 0.2))}
            if loss == "bce":
                t *= math.exp(-0.01)
                b -= 0.03
                record.update(temperature=t, bias=b)
            else:
                record["temperature"] = 0.02
            lines.append(json.dumps(record))
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return written


def test_report_figures_from_a_harness_results_folder(tmp_path):
    """collect -> main table -> figures: final checkpoints, base row named without revision."""
    from pairrel import cli
    from pairrel.report.collect import collect
    from pairrel.report.tables import main_table, type_columns

    written = write_quickstart_results(tmp_path / "results")
    coll = collect([tmp_path / "results" / "mteb"], benchmark="pairrel-quickstart")
    main = main_table(coll)
    fig = figures.type_scores_figure(main, coll.grid_columns, type_columns(coll), DISPLAY)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[0] == "MiniLM-L6 (base)" and len(names) == 1 + len(QS_RUNS)
    row = names.index("BCE, graded-linear")
    retrieval, sts, pair = written[("bce", "graded-linear", 60)]
    cells = [t.get_text() for t in ax.texts][4 * row: 4 * row + 4]
    assert cells == [f"{100 * pair:.1f}", f"{100 * retrieval:.1f}", f"{100 * sts:.1f}",
                     f"{100 * (pair + retrieval + sts) / 3:.1f}"]
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert cli.main(["report", "--results", str(tmp_path / "results" / "mteb"),
                         "--runs", str(tmp_path / "results" / "runs"),
                         "--benchmark", "pairrel-quickstart", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    for name, width in (("type_scores", style.ONE_COLUMN_IN), ("ablation_step", style.TWO_COLUMN_IN),
                        ("training_curves", style.TWO_COLUMN_IN)):
        assert png_size(out / f"{name}.png")[0] == round(width * style.DPI), name
        assert (out / f"{name}.png").stat().st_mode & 0o777 == 0o644


def test_placeholder_stands_in_when_there_is_nothing_to_plot(tmp_path):
    from pairrel.report.figures import placeholder

    written = placeholder(tmp_path / "training_curves", "training curves: nothing to plot")
    assert sorted(p.name for p in written) == ["training_curves.pdf", "training_curves.png"]
    from PIL import Image

    assert Image.open(tmp_path / "training_curves.png").size[0] == round(3.3 * 300)
