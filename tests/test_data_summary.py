"""`pairrel data summary`: local datasets, the real TREC-DL 2019 files, offline failures.

Built-in ids run in a subprocess: ir_datasets fixes its cache paths (IR_DATASETS_HOME) at import.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

from pairrel import cli
from pairrel.data.summary import summarize


def run_cli(args, ir_home):
    env = {**os.environ, "IR_DATASETS_HOME": str(ir_home)}
    return subprocess.run([sys.executable, "-m", "pairrel.cli", "data", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_real_trec_dl_2019_files(public_data, ir_home):
    target = ir_home / "msmarco-passage" / "trec-dl-2019"
    target.mkdir(parents=True)
    shutil.copy(public_data / "trec-dl-2019" / "qrels.dl19-passage.txt", target / "qrels")
    shutil.copy(public_data / "trec-dl-2019" / "topics.dl19-passage.txt", target / "queries.tsv")
    result = run_cli(["summary", "msmarco-passage/trec-dl-2019/judged"], ir_home)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # the counts of tests/data/README.md
    assert (summary["n_queries"], summary["n_judged_queries"], summary["n_qrels"]) == (43, 43, 9260)
    assert summary["qrels_per_grade"] == {"0": 5158, "1": 1601, "2": 1804, "3": 697}
    assert sorted(summary["qrels_defs"]) == ["0", "1", "2", "3"]
    assert summary["n_docs"] == 8_841_823  # MS MARCO v1 passages, from ir_datasets metadata: corpus not read


def test_offline_missing_files_named_with_paths(ir_home):
    result = run_cli(["summary", "msmarco-passage-v2/trec-dl-2023/judged"], ir_home)
    assert result.returncode == 1
    err = result.stderr
    assert "2 required file(s) missing" in err
    assert f"{ir_home}/msmarco-passage-v2/trec-dl-2023/queries.tsv" in err
    assert f"{ir_home}/msmarco-passage-v2/trec-dl-2023/qrels.withDupes.txt" in err
    assert "https://trec.nist.gov/data/deep/2023.qrels.pass.withDupes.txt" in err
    assert "Traceback" not in err


def test_check_command_lists_every_missing_file_of_a_config(tmp_path, ir_home):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  dl:\n    sources:\n      dl23: {dataset: msmarco-passage-v2/trec-dl-2023/judged,"
                      " folds: 5, fold: 0}\n      echo: {jsonl: /nonexistent/eli5.jsonl}\n")
    result = run_cli(["check", "--config", str(config), "--no-models", "--no-mteb"], ir_home)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, result.stderr
    assert any("(docs): missing https://msmarco.z22.web.core.windows.net/msmarcoranking/msmarco_v2_passage.tar"
               f" -- ir_datasets looks for it at {ir_home}/msmarco-passage-v2/msmarco_v2_passage.tar" in line
               for line in lines)
    assert any("JSONL file /nonexistent/eli5.jsonl does not exist" in line for line in lines)


def test_local_dataset_summary_by_hand(tmp_path, capsys):
    directory = tmp_path / "ds"
    directory.mkdir()
    (directory / "docs.tsv").write_text("d1\ta\nd2\tb\nd3\tc\n")
    (directory / "queries.tsv").write_text("q1\tx\nq2\ty\nq3\tz\n")
    (directory / "qrels.txt").write_text("q1 0 d1 2\nq1 0 d2 0\nq3 0 d1 0\nq3 0 d3 -1\n")
    (directory / "meta.json").write_text(json.dumps({"qrels_defs": {"2": "good", "0": "bad", "-1": "junk"}}))
    dataset_id = f"pairrel-test/{uuid.uuid4().hex[:8]}"
    assert cli.main(["data", "summary", dataset_id, "--register", f"{dataset_id}={directory}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == summarize(dataset_id)
    assert summary == {"dataset_id": dataset_id, "provides": ["docs", "queries", "qrels"], "n_queries": 3,
                       "n_judged_queries": 2, "n_docs": 3, "n_qrels": 4,
                       "qrels_per_grade": {"-1": 1, "0": 2, "2": 1},
                       "qrels_defs": {"-1": "junk", "0": "bad", "2": "good"}, "n_docpairs": None}
    assert cli.main(["data", "summary", "x", "--register", "nodir"]) == 1
    assert "--register expects ID=DIR" in capsys.readouterr().err


def test_summary_registers_the_configs_local_datasets(tmp_path, capsys):
    directory = tmp_path / "ds"
    directory.mkdir()
    (directory / "docs.tsv").write_text("d1\ta\nd2\tb\n")
    (directory / "queries.tsv").write_text("q1\tx\nq2\ty\n")
    (directory / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 0\n")
    (directory / "meta.json").write_text(json.dumps({"qrels_defs": {"1": "relevant", "0": "not"}}))
    dataset_id = f"pairrel-test/{uuid.uuid4().hex[:8]}"
    config = tmp_path / "c.yaml"
    config.write_text(f"local_datasets:\n  {dataset_id}: {directory}\n")
    assert cli.main(["data", "summary", dataset_id, "--config", str(config)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_queries"], summary["n_qrels"], summary["qrels_per_grade"]) == (2, 2, {"0": 1, "1": 1})
    assert cli.main(["data", "summary", f"{dataset_id}-absent", "--config", str(config)]) == 1
    assert "add it under 'local_datasets:'" in capsys.readouterr().err
