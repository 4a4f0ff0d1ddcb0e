"""Benchmark: prepare a 2-million-line docpairs source; peak memory and pairs per second.

Generates a local ir_datasets dataset shaped like MS MARCO's triples (docs.tsv, queries.tsv,
docpairs.tsv: query, positive, negative; one positive per query repeated on each of its lines),
then runs, each in a fresh subprocess so that peak RSS (VmHWM) is its own:

* ``pairrel``  pairrel.data.sources.prepare_source (streams docpairs, docs_store().get_many per
  chunk; the docs index is built from scratch in the run);
* ``naive-pandas`` (the named baseline): read_csv of all three files into memory, melt, dedupe,
  merge the texts, one to_parquet.

Both write the same rows. Prints one line per run and the ratios pairrel / baseline.

    .venv/bin/python benchmarks/bench_prepare.py [--lines 2000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("river stone garden light window music paper silver forest market engine valley cloud "
         "harbor winter letter bridge candle mirror orchard signal meadow lantern compass").split()

PAIRREL_RUN = r"""
import json, sys, time, logging
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
directory, out = sys.argv[1:3]
register_local_dir("bench/docpairs", directory)
start = time.perf_counter()
meta = prepare_source("bench", {"dataset": "bench/docpairs"}, out, log=lambda m: None)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "rows": meta["n_pairs"], "lines": None}))
"""

PANDAS_RUN = r"""
import csv, json, sys, time
import pandas as pd
directory, out = sys.argv[1:3]
start = time.perf_counter()
read = dict(sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
pairs = pd.read_csv(f"{directory}/docpairs.tsv", names=["query_id", "pos", "neg"], **read)
docs = pd.read_csv(f"{directory}/docs.tsv", names=["doc_id", "doc"], **read)
queries = pd.read_csv(f"{directory}/queries.tsv", names=["query_id", "query"], **read)
pos = pairs[["query_id", "pos"]].rename(columns={"pos": "doc_id"}).assign(grade=1)
neg = pairs[["query_id", "neg"]].rename(columns={"neg": "doc_id"}).assign(grade=0)
rows = pd.concat([pos, neg]).drop_duplicates(["query_id", "doc_id"])
rows = rows.merge(queries, on="query_id").merge(docs, on="doc_id")
rows["grade"] = rows["grade"].astype("int16")
rows[["query_id", "query", "doc_id", "doc", "grade"]].to_parquet(out, compression="zstd", index=False)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(rows), "lines": len(pairs)}))
"""

MEASURE = r"""
import runpy, sys, json, io, contextlib
code = sys.argv[1]
sys.argv = sys.argv[1:]
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    exec(compile(code, "<bench>", "exec"), {"__name__": "__main__"})
result = json.loads(buffer.getvalue().strip().splitlines()[-1])
status = open("/proc/self/status").read()
result["peak_rss_mib"] = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps(result))
"""


def generate(directory: Path, n_lines: int, seed: int = 0) -> None:
    """Docs, queries and docpairs of an MS MARCO-like triples source (20 lines per query,
    one positive per query, 30-word passages; n_lines / 10 docs, n_lines / 20 queries)."""
    rng = np.random.default_rng(seed)
    n_queries, n_docs = max(1, n_lines // 20), max(10, n_lines // 10)
    directory.mkdir(parents=True)
    words = np.array(WORDS)

    def texts(n, length):
        picks = words[rng.integers(len(words), size=(n, length))]
        return [" ".join(row) for row in picks]

    with open(directory / "docs.tsv", "w") as f:
        for start in range(0, n_docs, 100_000):
            n = min(100_000, n_docs - start)
            f.writelines(f"d{start + i}\t{t}\n" for i, t in enumerate(texts(n, 30)))
    with open(directory / "queries.tsv", "w") as f:
        f.writelines(f"q{i}\t{t}\n" for i, t in enumerate(texts(n_queries, 6)))
    positives = rng.integers(n_docs, size=n_queries)
    shifts = rng.integers(n_docs - 21, size=n_queries)
    with open(directory / "docpairs.tsv", "w") as f:
        for start in range(0, n_lines, 500_000):
            n = min(500_000, n_lines - start)
            index = np.arange(start, start + n)
            q = (index // 20) % n_queries
            # the 20 negatives of a query are distinct and differ from its positive, so the
            # baseline's global dedupe and pairrel's streaming rule keep the same rows
            neg = (positives[q] + 1 + shifts[q] + index % 20) % n_docs
            f.writelines(f"q{a}\td{positives[a]}\td{b}\n" for a, b in zip(q.tolist(), neg.tolist()))
    (directory / "meta.json").write_text(json.dumps({"qrels_defs": {"0": "negative", "1": "positive"}, "max_grade": 1}))


def measure(code: str, directory: Path, out: Path) -> dict:
    for index in directory.glob("*.pklz4"):
        shutil.rmtree(index)  # cold: each run builds what it needs
    result = subprocess.run([sys.executable, "-c", MEASURE, code, str(directory), str(out)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_prepare_", dir=args.work))
    try:
        start = time.perf_counter()
        generate(work / "data", args.lines)
        print(f"generated {args.lines:,} docpairs lines in {time.perf_counter() - start:.1f} s ({work / 'data'})")
        results = {}
        for name, code in (("naive-pandas", PANDAS_RUN), ("pairrel", PAIRREL_RUN)):
            r = measure(code, work / "data", work / f"{name}.parquet")
            r["lines_per_s"] = args.lines / r["seconds"]
            r["pairs_per_s"] = r["rows"] / r["seconds"]
            results[name] = r
            print(f"{name:13s} {r['seconds']:7.1f} s  {r['rows']:,} rows  {r['lines_per_s']:,.0f} docpairs lines/s  "
                  f"{r['pairs_per_s']:,.0f} pairs/s  peak RSS {r['peak_rss_mib']:,.0f} MiB")
        ours, base = results["pairrel"], results["naive-pandas"]
        assert ours["rows"] == base["rows"], "the two implementations disagree on the rows"
        print(f"ratio pairrel/naive-pandas: throughput {ours['pairs_per_s'] / base['pairs_per_s']:.2f}x, "
              f"peak memory {ours['peak_rss_mib'] / base['peak_rss_mib']:.2f}x; "
              f"pairrel peak {'under' if ours['peak_rss_mib'] < 1024 else 'OVER'} 1 GiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
