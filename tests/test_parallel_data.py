"""Data preparation under parallelism, for real: the five fold jobs of one local K-fold source
share one ir_datasets document index, built by exactly one of them.

Each DAG run starts from a clean ``$IR_DATASETS_HOME`` and no results, runs ``snakemake data``
over ``config.yaml`` with a preset that narrows the grid to TREC-DL 2023 and serves that
source from a local folder, and returns the prepared files. Runs at ``--cores 2`` (twice), and
from a half-written index, must give the same bytes as a ``--cores 1`` run.
"""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_workflow

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DATASET_ID = "pairrel-test/judged"
N_DOCS, N_QUERIES, JUDGED_PER_QUERY = 20_000, 25, 12  # enough documents that index builds overlap
PRESET = f"""experiment: par
local_datasets: {{{DATASET_ID}: judged}}
data:
  trec-dl-2023:
    sources:
      trec-dl-2023: {{dataset: {DATASET_ID}}}
grid: {{data: [trec-dl-2023]}}
"""


def write_collection(folder: Path) -> None:
    """A graded collection in the local-dataset layout: every query judges 12 passages, 3 of
    each grade 0-3 (fixed seed, so every test builds the same bytes)."""
    rng = random.Random(0)
    words = ["harbor", "galaxy", "recipe", "compost", "pawn", "shutter", "anchor", "orbit", "sauce", "lens"]
    folder.mkdir()
    (folder / "docs.tsv").write_text("".join(f"p{i}\t{' '.join(rng.choices(words, k=12))} {i}\n" for i in range(N_DOCS)))
    (folder / "queries.tsv").write_text("".join(f"q{j}\twhat about {words[j % 10]} number {j}\n" for j in range(N_QUERIES)))
    qrels = []
    for j in range(N_QUERIES):
        for k, doc in enumerate(rng.sample(range(N_DOCS), JUDGED_PER_QUERY)):
            qrels.append(f"q{j} 0 p{doc} {k % 4}\n")
    (folder / "qrels.txt").write_text("".join(qrels))
    (folder / "meta.json").write_text('{"qrels_defs": {"0": "irrelevant", "1": "related", "2": "highly", "3": "perfect"}, "max_grade": 3}\n')


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    copy_workflow(root)
    (root / "five.yaml").write_text(PRESET)
    write_collection(root / "judged")
    return root


def prepare(root: Path, home: Path, cores: int) -> dict[str, bytes]:
    """Run `snakemake data` from no results with ``home`` as $IR_DATASETS_HOME; the prepared files."""
    shutil.rmtree(root / "results", ignore_errors=True)
    shutil.rmtree(root / ".snakemake", ignore_errors=True)
    home.mkdir(exist_ok=True)
    env = {**os.environ, "IR_DATASETS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([SNAKEMAKE, "--cores", str(cores), "--configfile", "five.yaml", "--", "data"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    logs = "\n".join(p.read_text() for p in sorted((root / "results").rglob("*.log")))
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}\n{logs[-3000:]}"
    data = root / "results" / "par" / "data"
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


def index_folder(home: Path) -> Path:
    (folder,) = (home / "pairrel-local").iterdir()  # one docs.tsv, one index
    return folder / "docs.tsv.pklz4"


@pytest.fixture(scope="module")
def serial(root, tmp_path_factory):
    return prepare(root, tmp_path_factory.mktemp("home-serial"), cores=1)


def test_serial_run_prepares_every_fold(serial):
    assert sorted(serial) == sorted(f"trec-dl-2023/trec-dl-2023.fold~{k}{suffix}" for k in range(5)
                                    for suffix in (".parquet", ".meta.json", ".folds.json"))


def test_two_jobs_at_once_build_one_index_and_the_same_files(root, serial, tmp_path):
    for attempt in range(2):  # twice in a row, each from a clean index cache
        home = tmp_path / f"home-{attempt}"
        assert prepare(root, home, cores=2) == serial
        index = index_folder(home)
        assert (index / "pairrel-complete.json").is_file()
        assert sorted(p.name for p in index.parent.iterdir()) == ["docs.tsv.pklz4", "docs.tsv.pklz4.lock"]  # no temp left


def test_a_half_written_index_is_named_and_rebuilt(root, serial, tmp_path):
    home = tmp_path / "home"
    prepare(root, home, cores=1)
    index = index_folder(home)
    # What a crash or an older version leaves: no manifest, a bin file cut mid-record.
    (index / "pairrel-complete.json").unlink()
    with open(index / "bin", "r+b") as handle:
        handle.truncate(handle.seek(0, os.SEEK_END) // 2 + 3)
    assert prepare(root, home, cores=2) == serial
    logs = "\n".join(p.read_text() for p in (root / "results" / "par" / "logs").rglob("*.log"))
    assert logs.count(f"document index {index}: no pairrel-complete.json") == 1  # one job rebuilt it
    assert "rebuilding it" in logs
