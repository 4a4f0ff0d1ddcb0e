"""pairrel recipe diff, the llm2vec-echo preset, and the offline check of JSONL sources with an origin."""

import json

from pairrel.config import load_config
from pairrel.study import Study
from pairrel.data.parts import source_parts
from pairrel.data.prefetch import check_available, jsonl_problems
from pairrel import cli
from pairrel.recipe import LLM2VEC_SUPERVISED, recipe_differences

from .conftest import REPO_ROOT

CONFIG, PRESET = REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "llm2vec-echo.yaml"
SPLIT_LINE = "files batched together: LLM2Vec each file alone, the halves of allnli and quora_duplicates pooled"


def runs(*files, data="echo-data"):
    study = Study.from_files(*files)
    return {r.loss: r.config for r in study.runs if r.model == "llama3-8b" and r.data == data}


def test_preset_is_llm2vecs_mix():
    cfg = load_config(CONFIG, PRESET)
    mix = cfg["data"]["echo-data"]
    assert mix["sampling"] == "proportional"
    parts = {part: spec for name, source in mix["sources"].items() for part, spec in source_parts(name, source).items()}
    assert sorted(parts) == sorted(LLM2VEC_SUPERVISED["sources"]) and len(parts) == 16
    # 14 datasets as LLM2Vec batches them: the split halves pooled
    assert len(mix["sources"]) == 14
    assert list(mix["sources"]["allnli"]["parts"]) == ["allnli_split1", "allnli_split2"]
    assert list(mix["sources"]["quora_duplicates"]["parts"]) == ["quora_duplicates_split1", "quora_duplicates_split2"]
    assert sorted(n for n, s in parts.items() if s.get("symmetric")) == [
        "allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2"]
    assert parts["quora_duplicates_split2"]["instruction"] == "Find questions that have the same meaning as the input question"
    assert {r.data for r in Study(cfg).runs} == {"echo-data"}


def test_softmax_runs_of_the_preset_have_no_differences(capsys):
    assert recipe_differences(runs(CONFIG, PRESET)["softmax"]) == []
    bce = recipe_differences(runs(CONFIG, PRESET)["bce"])
    assert [line.split(":")[0] for line in bce] == ["loss"]
    run = "model~llama3-8b/data~echo-data/loss~softmax/labels~binary@1/seed~42"
    assert cli.main(["recipe", "diff", "--config", str(CONFIG), "--config", str(PRESET), "--run", run]) == 0
    assert capsys.readouterr().out == f"{run}: no differences\n"


def test_files_batched_unlike_llm2vec_are_a_difference():
    """The split halves as two sources, or files of two datasets in one pool, batch unlike LLM2Vec."""
    run = runs(CONFIG, PRESET)["softmax"]
    sources = run["data"]["sources"]
    for part, spec in sources.pop("allnli")["parts"].items():
        sources[part] = {**spec, "weight": 1.0}
    assert recipe_differences(run) == [
        f"{SPLIT_LINE} | configured the halves of allnli in separate sources (allnli_split1, allnli_split2)"]

    run = runs(CONFIG, PRESET)["softmax"]
    sources = run["data"]["sources"]
    squad = sources.pop("squad")
    sources["quora_duplicates"]["parts"]["squad"] = {k: squad[k] for k in ("jsonl", "instruction")} | {"symmetric": False}
    assert recipe_differences(run) == [
        f"{SPLIT_LINE} | configured quora_duplicates pools quora_duplicates_split1 + quora_duplicates_split2 + squad"]


def test_config_yaml_differences_name_the_sampling_rule_and_missing_sources():
    lines = recipe_differences(runs(CONFIG, data="open-mix")["softmax"])
    assert "sampling rule: LLM2Vec proportional | configured weighted" in lines
    missing = next(line for line in lines if line.startswith("data sources missing:"))
    for name in ("dureader", "t2ranking", "allnli_split1", "allnli_split2", "quora_duplicates_split2"):
        assert name in missing
    assert "squad" not in missing and "eli5_question_answer" not in missing  # same released files


def test_recipe_differences_catch_each_setting():
    run = runs(CONFIG, PRESET)["softmax"]
    run["training"]["warmup_steps"] = 100
    run["model"]["lora"]["r"] = 8
    run["data"]["sources"]["allnli"]["parts"]["allnli_split2"]["symmetric"] = False
    run["data"]["sources"]["squad"]["instruction"] = "Find it"
    del run["data"]["sources"]["dureader"]
    lines = recipe_differences(run)
    assert "warm-up steps: LLM2Vec 300 | configured 100" in lines
    assert "LoRA r: LLM2Vec 16 | configured 8" in lines
    assert "symmetric allnli_split2: LLM2Vec True | configured False" in lines
    assert "instruction of squad: LLM2Vec Retrieve Wikipedia passages that answer the question | configured Find it" in lines
    assert "data sources missing: LLM2Vec dureader | configured none of these files" in lines


def test_cli_prints_no_differences_line_per_run_and_exits_0(capsys):
    run = "model~llama3-8b/data~open-mix/loss~softmax/labels~binary@1/seed~42"
    assert cli.main(["recipe", "diff", "--config", str(CONFIG), "--run", run]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all(line.startswith(run + ": ") for line in out)
    assert cli.main(["recipe", "diff", "--config", str(CONFIG), "--config", str(REPO_ROOT / "nowhere.yaml")]) == 1


def test_jsonl_check_presence_schema_and_checksum(tmp_path):
    origin = {"hub_dataset": "liuqi6777/echo-data", "revision": "58b045a", "file": "squad.jsonl"}
    path = tmp_path / "squad.jsonl"
    (problem,) = jsonl_problems("source squad", path, origin)
    assert "does not exist" in problem and "liuqi6777/echo-data@58b045a" in problem
    path.write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
    assert jsonl_problems("source squad", path, origin) == []
    import hashlib

    right = hashlib.sha256(path.read_bytes()).hexdigest()
    assert jsonl_problems("s", path, {**origin, "sha256": right, "size": path.stat().st_size}) == []
    wrong = jsonl_problems("s", path, {**origin, "sha256": "0" * 64, "size": 3})
    assert len(wrong) == 2 and "bytes" in wrong[0] and "SHA-256" in wrong[1]
    path.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n" + json.dumps({"positive": "p"}) + "\n")
    assert jsonl_problems("s", path, None) == [f"s: {path} line 2: expected an object with a non-empty string 'query'"]


def test_check_lists_every_missing_echo_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/echo-data/… relative to an empty folder
    problems = check_available(load_config(CONFIG, PRESET, validate=False), include_models=False, include_mteb=False)
    assert len(problems) == 16 and all("does not exist" in p for p in problems)
    assert sum("liuqi6777/echo-data" in p for p in problems) == 12
    assert sum("no public origin" in p for p in problems) == 4


def test_sizes_cap_each_ir_datasets_source_at_its_released_file(tmp_path, capsys):
    release = tmp_path / "echo-data"
    release.mkdir()
    lines = [{"query": "q1", "positive": "a", "negative": "b"}, {"query": "q1", "positive": "c", "negative": "b"},
             {"query": "q2", "positive": "a", "negative": "d"}, {"query": "q3", "positive": "e"}]
    (release / "msmarco_passage.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    (release / "fever.jsonl").write_text(json.dumps({"query": "claim", "positive": "doc"}) + "\n")
    assert cli.main(["recipe", "sizes", "--config", str(CONFIG), "--release", str(release)]) == 0
    out = capsys.readouterr().out
    assert "# open-mix/msmarco-passage: max_queries 3 (4 examples in msmarco_passage.jsonl)" in out
    assert "# open-mix/nq: nq.jsonl not in" in out
    preset = tmp_path / "sizes.yaml"
    preset.write_text(out)
    cfg = load_config(CONFIG, preset)
    sources = cfg["data"]["open-mix"]["sources"]
    assert sources["msmarco-passage"]["max_queries"] == 3 and sources["fever"]["max_queries"] == 1
    assert sources["nq"]["max_queries"] is None and sources["squad"]["max_queries"] is None  # JSONL: the release itself
    (release / "fever.jsonl").write_text("not json\n")
    assert cli.main(["recipe", "sizes", "--config", str(CONFIG), "--release", str(release)]) == 1
    assert "fever.jsonl: line 1: not valid JSON" in capsys.readouterr().err
    assert cli.main(["recipe", "sizes", "--config", str(CONFIG), "--release", str(tmp_path / "none")]) == 1


def test_jsonl_check_reports_unparsable_lines_by_file_and_line(tmp_path):
    path = tmp_path / "nq.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n" + "[1, 2]\n")
    assert jsonl_problems("s", path, None) == [f"s: {path}: line 2: expected a JSON object, got list"]
    path.write_bytes(b'{"query": "q", "positive": "p"}\n{"query": "\xff"}\n')
    assert jsonl_problems("s", path, None) == [f"s: {path}: line 2: not valid UTF-8; save the file as UTF-8"]
