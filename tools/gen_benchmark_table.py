"""Write src/pairrel/evaluate/benchmark_tasks.json from the installed mteb.

Run after upgrading mteb (tests/test_benchmark_table.py fails until the table matches):
    python tools/gen_benchmark_table.py
"""

from __future__ import annotations

import json

import mteb

from pairrel.evaluate.benchmark_table import TABLE_BENCHMARKS, TABLE_FILE, benchmark_from_mteb


def table() -> dict:
    return {"generated_by": "tools/gen_benchmark_table.py", "mteb_version": mteb.__version__,
            "benchmarks": [benchmark_from_mteb(name) for name in TABLE_BENCHMARKS]}


if __name__ == "__main__":
    TABLE_FILE.write_text(json.dumps(table(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TABLE_FILE}")
