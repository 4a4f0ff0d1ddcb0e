"""Start-up cost of planning and of light commands, against the mteb registry they used to build.

Times, each as a fresh process (what a user, Snakemake or a SLURM job pays):

* ``snakemake -n`` on ``config.yaml`` (the paper's DAG, every job planned): user+sys CPU;
* ``pairrel --help``: wall;
* ``pairrel report`` on three copies of a published MTEB results folder (``--published DIR``,
  default the published files the tests ship, ``tests/data/mteb-results``): wall;
* baseline: a process that imports mteb and builds ``mteb.get_benchmark("MTEB(eng, v1)")``,
  which the Study and the report did before the generated task table: CPU and wall.

Prints seconds and each figure's ratio to the baseline (medians of ``--repeat`` runs). Usage:
    .venv/bin/python benchmarks/bench_startup.py [--repeat 3] [--published DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, user+sys CPU seconds of the child) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    runs = [timed(cmd, cwd) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--published", type=Path, default=REPO / "tests" / "data" / "mteb-results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_wall, base_cpu = median([sys.executable, "-c", "import mteb; mteb.get_benchmark('MTEB(eng, v1)')"], tmp, args.repeat)
        print(f"baseline  import mteb + get_benchmark:   {base_wall:6.2f} s wall, {base_cpu:6.2f} s CPU")
        wall, cpu = median([str(BIN / "snakemake"), "-n", "--cores", "1", "-s", str(REPO / "Snakefile"),
                            "--configfile", str(REPO / "config.yaml"), "-d", str(tmp / "dry")], tmp, args.repeat)
        print(f"snakemake -n config.yaml:                {cpu:6.2f} s CPU  ({cpu / base_cpu:.2f}x the baseline's CPU)")
        wall, _ = median([str(BIN / "pairrel"), "--help"], tmp, args.repeat)
        print(f"pairrel --help:                          {wall:6.2f} s wall ({wall / base_wall:.2f}x the baseline's wall)")
        if (args.published / "results").is_dir():
            for i in range(3):
                for model in (args.published / "results").iterdir():
                    shutil.copytree(model, tmp / "published" / "results" / f"{model.name}-{i}")
            wall, _ = median([str(BIN / "pairrel"), "report", "--results", str(tmp / "published"), "--out",
                              str(tmp / "report"), "--no-reference"], tmp, args.repeat)
            print(f"pairrel report, 3 published folders:     {wall:6.2f} s wall ({wall / base_wall:.2f}x the baseline's wall)")
        else:
            print(f"(no published results at {args.published}: report not timed)")


if __name__ == "__main__":
    main()
