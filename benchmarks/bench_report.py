"""Speed of ``pairrel report`` on a 40-run × 56-task MTEB(eng, v1) result cache.

Generates (in a temp folder, or --keep DIR) a mteb 2.x ResultCache with 40 grid runs
(loss × labels × seed × step) under ``experiments/`` plus the base model, each with all 56
MTEB(eng, v1) task files carrying full metric sets (retrieval: ~100 metrics per subset;
classification: 10 per-experiment score dicts), as ``mteb.evaluate`` writes them. Then times,
in one process:

* baseline  ``mteb.ResultCache(dir).load_results(tasks=benchmark, load_experiments="match_name")``
            followed by ``.get_benchmark_result()`` (mteb's own loader and summary table);
* pairrel   ``pairrel report`` in-process (``pairrel.cli.main``: read, tables, seeds,
            loss comparison, figures), and as a fresh subprocess (imports included: what a
            user waits for).

Prints seconds and ratios against the mteb baseline. Usage:
    .venv/bin/python benchmarks/bench_report.py [--runs 40] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARK = "MTEB(eng, v1)"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _metrics(spec, rng: random.Random) -> dict:
    """A realistic mteb 2.x metric dict for one subset, main score included."""
    base = rng.uniform(0.3, 0.9)
    if spec.type == "Retrieval" or spec.type == "Reranking":
        m = {}
        for name in ("ndcg", "map", "recall", "precision", "mrr"):
            for k in (1, 3, 5, 10, 20, 100, 1000):
                m[f"{name}_at_{k}"] = round(rng.uniform(0, 1), 5)
        for k in (1, 3, 5, 10, 20, 100, 1000):
            for stat in ("max", "std", "diff1"):
                m[f"nauc_ndcg_at_{k}_{stat}"] = round(rng.uniform(-1, 1), 5)
        m[spec.main_score] = base
    elif spec.type == "Classification":
        m = {"accuracy": base, "f1": base - 0.02, "f1_weighted": base - 0.01,
             "scores_per_experiment": [{"accuracy": base + rng.uniform(-0.01, 0.01),
                                        "f1": base, "f1_weighted": base} for _ in range(10)]}
    elif spec.type == "PairClassification":
        m = {}
        for fn in ("cosine", "euclidean", "manhattan", "dot", "max"):
            for stat in ("accuracy", "f1", "precision", "recall", "ap"):
                m[f"{fn}_{stat}"] = base - rng.uniform(0, 0.05)
            m[f"{fn}_accuracy_threshold"] = rng.uniform(0, 300)
        m["max_ap"] = base
    elif spec.type == "Clustering":
        m = {"v_measure": base, "v_measure_std": 0.01,
             "v_measures": {"Level 0": [base] * 10}}
    else:  # STS, Summarization
        m = {f"{fn}_{c}": base for fn in ("cosine", "euclidean", "manhattan")
             for c in ("pearson", "spearman")}
        m[spec.main_score] = base
    m["main_score"] = m[spec.main_score]
    return m


def generate(root: Path, n_runs: int, seed: int = 0) -> Path:
    """Write the base model and ``n_runs`` grid runs with every task of the benchmark."""
    import mteb

    from pairrel.report.scores import benchmark_specs

    _, specs = benchmark_specs(BENCHMARK)
    rng = random.Random(seed)
    meta = mteb.get_model_meta(MODEL)
    grid = itertools.product(["bce", "softmax"], ["binary@2", "graded-linear"], [42, 43],
                             [200, 400, 600, 800, 1000])
    kwargs_list = [None] + [{"model": "minilm", "data": "open-mix", "loss": loss,
                             "labels": labels, "seed": s, "step": step}
                            for loss, labels, s, step in itertools.islice(grid, n_runs)]
    for kwargs in kwargs_list:
        run_meta = meta.model_copy(update={"experiment_kwargs": kwargs}) if kwargs else meta
        folder = root / "results" / run_meta.model_name_as_path() / run_meta.revision
        if kwargs:
            folder = folder / "experiments" / run_meta.experiment_name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model_meta.json").write_text(
            json.dumps(run_meta.to_dict(), default=str, indent=4))
        for spec in specs.values():
            entry = {**_metrics(spec, rng), "hf_subset": spec.subset, "languages": ["eng-Latn"]}
            data = {"dataset_revision": "x", "task_name": spec.name, "mteb_version": "2.26.24",
                    "scores": {spec.split: [entry]}, "evaluation_time": 10.0,
                    "kg_co2_emissions": None, "date": None}
            (folder / f"{spec.name}.json").write_text(json.dumps(data, indent=2))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="write the results folder here and keep it")
    args = parser.parse_args()

    import mteb  # imported once, shared by baseline and pairrel

    from pairrel import cli

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    started = time.perf_counter()
    generate(workdir / "cache", args.runs)
    n_files = sum(1 for p in (workdir / "cache").rglob("*.json") if p.name != "model_meta.json")
    print(f"generated {n_files} result files ({args.runs} runs + base model) in "
          f"{time.perf_counter() - started:.1f} s under {workdir}")

    t0 = time.perf_counter()
    cache = mteb.ResultCache(workdir / "cache")
    loaded = cache.load_results(tasks=BENCHMARK, include_remote=False,
                                load_experiments="match_name")
    summary = loaded.get_benchmark_result()
    baseline = time.perf_counter() - t0
    print(f"baseline  mteb load_results + get_benchmark_result: {baseline:.2f} s "
          f"({len(summary)} rows)")

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the printed table is not the point here
        code = cli.main(["report", "--results", str(workdir / "cache"), "--benchmark",
                         BENCHMARK, "--no-reference", "--out", str(workdir / "out_inproc")])
    in_process = time.perf_counter() - t0
    assert code == 0
    print(f"pairrel   report in-process (tables + figures):      {in_process:.2f} s "
          f"= {in_process / baseline:.2f} x baseline")

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pairrel.cli", "report", "--results",
                    str(workdir / "cache"), "--benchmark", BENCHMARK, "--no-reference",
                    "--out", str(workdir / "out_cli")], check=True, stdout=subprocess.DEVNULL)
    fresh = time.perf_counter() - t0
    print(f"pairrel   report fresh process (imports included):   {fresh:.2f} s "
          f"= {fresh / baseline:.2f} x baseline")


if __name__ == "__main__":
    main()
