"""A command opens only the data it reads: evaluating a base model on the user's own task
needs no quickstart corpus, though the quickstart preset configures one."""

import shutil

import pytest
from scipy.stats import spearmanr

from pairrel import cli
from pairrel.evaluate.user_tasks import read_sts_file
from tests.conftest import REPO_ROOT
from tests.test_user_tasks import STS_CSV, cosine, minilm  # noqa: F401 (a fixture)

OWN = """evaluation:
  local_tasks:
    - {name: MySTS, type: STS, path: sts.csv, min_score: 0, max_score: 5}
"""


def test_base_model_on_own_task_without_the_quickstart_corpus(minilm, tmp_path, monkeypatch, capsys):  # noqa: F811
    (tmp_path / "presets").mkdir()
    shutil.copy(REPO_ROOT / "config.yaml", tmp_path)
    shutil.copy(REPO_ROOT / "presets" / "quickstart.yaml", tmp_path / "presets")
    shutil.copy(STS_CSV, tmp_path / "sts.csv")
    (tmp_path / "own.yaml").write_text(OWN)
    monkeypatch.chdir(tmp_path)  # a fresh clone: results/quickstart/corpus was never generated
    code = cli.main(["evaluate", "--config", "config.yaml", "--config", "presets/quickstart.yaml",
                     "--config", "own.yaml", "--base", "minilm", "--tasks", "MySTS"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert not (tmp_path / "results" / "quickstart" / "corpus").exists()
    columns = read_sts_file(STS_CSV)
    cos = cosine(minilm, columns["sentence1"], columns["sentence2"]).diagonal().numpy()
    score = float(out.out[out.out.index('"MySTS":') + 8:].split("}")[0])
    assert score == pytest.approx(spearmanr(cos, columns["score"]).statistic, abs=1e-6)
