"""Main scores from every MTEB result-file generation, and MTEB(eng, v1) averages over them.

Each test writes result files by hand in one of the documented layouts (see
pairrel.report.scores): pre-1.11 top-level splits with nested metric groups, 1.11-1.12
``scores`` lists with ``cos_sim_*`` keys, model-card exports on 0-100 with ``[value, 0.0]``
lists, and mteb 2.x files. Every file also carries decoys (other subsets, splits, similarity
functions, a wrong ``main_score``) so that reading the wrong number fails a test.
"""

import json
import math
from pathlib import Path

import pytest

from pairrel.report.collect import collect
from pairrel.report.tables import main_table
from pairrel.report.scores import (
    ResultFileError,
    ScoreValueError,
    TaskSpec,
    benchmark_specs,
    detect_scale,
    duplicate_conflict,
    metric_aliases,
    parse_result,
    read_result_file,
)

BENCH = "MTEB(eng, v1)"
# Hand-chosen scores per type (0-100). Type means are these values; the mean over the 56
# tasks is (12*70 + 11*40 + 3*80 + 4*50 + 15*45 + 10*75 + 1*30) / 56 = 3175 / 56.
TYPE_SCORE = {"Classification": 70.0, "Clustering": 40.0, "PairClassification": 80.0,
              "Reranking": 50.0, "Retrieval": 45.0, "STS": 75.0, "Summarization": 30.0}
AVERAGE_56 = 3175 / 56  # 56.6964…; the mean of type means would be 390/7 = 55.71
DECOY = 0.99


def _metrics(spec: TaskSpec, value: float, generation: str) -> dict:
    """Metric dict of one subset for ``spec`` holding ``value`` (0-1) as its main score."""
    kind = spec.type
    if kind == "Classification":
        return {"accuracy": value, "f1": DECOY, "main_score": value}
    if kind == "Clustering":
        return {"v_measure": value, "v_measure_std": 0.01, "main_score": value}
    if kind == "Retrieval":
        return {"ndcg_at_10": value, "map_at_1000": DECOY, "recall_at_1000": DECOY,
                "main_score": value}
    if kind == "Reranking":
        key = {"pre111": "map", "v1_12": "map", "card": "map"}.get(generation, spec.main_score)
        extra = {"map_at_1000": DECOY} if key == "max_over_subqueries_map_at_1000" else {}
        return {key: value, "mrr": DECOY, "main_score": value, **extra}
    if kind in ("STS", "Summarization"):
        if generation == "pre111":
            return {"cos_sim": {"spearman": value, "pearson": DECOY},
                    "euclidean": {"spearman": DECOY}}
        prefix = "cosine" if generation == "v2" else "cos_sim"
        return {f"{prefix}_spearman": value, f"{prefix}_pearson": DECOY,
                "euclidean_spearman": DECOY, "main_score": value}
    if kind == "PairClassification":
        if generation in ("pre111", "v1_12"):  # nested groups before mteb 1.12.48
            return {"cos_sim": {"ap": value - 0.1, "accuracy": DECOY},
                    "max": {"ap": value, "accuracy": DECOY},
                    "euclidean": {"ap": value - 0.2, "accuracy_threshold": 37.5}}
        prefix = "cosine" if generation == "v2" else "cos_sim"
        return {f"{prefix}_ap": value - 0.1, "max_ap": value, "max_accuracy": DECOY,
                "manhattan_accuracy_threshold": 212.0, "main_score": value}
    raise AssertionError(kind)


def _scale(metrics: dict, factor: float, as_list: bool) -> dict:
    out = {}
    for key, val in metrics.items():
        if isinstance(val, dict):
            out[key] = _scale(val, factor, as_list)
        elif "threshold" in key:
            out[key] = val
        else:
            out[key] = [val * factor, 0.0] if as_list else val * factor
    return out


def result_json(spec: TaskSpec, value: float, generation: str, decoy_main: bool = False) -> dict:
    """A result file of ``generation`` whose leaderboard main score is ``value`` (0-1).

    pre111: mteb < 1.11 (top-level splits, nested groups, subsets only for multilingual);
    v1_12:  mteb 1.11-1.12 (``scores`` lists, cos_sim_* keys, nested pair-classification);
    card:   model-card export (``scores`` lists, 0-100, values as [value, 0.0] lists);
    v2:     mteb 2.x (cosine_*, max_ap, map_at_1000, 0-1).
    """
    main = _metrics(spec, value, generation)
    decoy = _metrics(spec, DECOY, generation)
    if decoy_main:
        main = {**main, "main_score": DECOY}
    multilingual = spec.subset != "default"
    if generation == "card":
        main, decoy = _scale(main, 100.0, True), _scale(decoy, 100.0, True)
    if generation == "pre111":
        split_scores = {spec.subset: main, "de": decoy} if multilingual else dict(main)
        split_scores["evaluation_time"] = 12.5
        data = {"mteb_dataset_name": spec.name, "mteb_version": "1.1.1",
                "dataset_revision": "abc", spec.split: split_scores}
        if spec.split == "test":
            data["validation"] = {spec.subset: decoy} if multilingual else dict(decoy)
        return data
    entries = [{"hf_subset": spec.subset, "languages": ["eng-Latn"], **main}]
    if multilingual:
        entries.append({"hf_subset": "de", "languages": ["deu-Latn"], **decoy})
    scores = {spec.split: entries}
    if spec.split == "test":
        scores["validation"] = [{"hf_subset": spec.subset, "languages": ["eng-Latn"], **decoy}]
    version = {"v1_12": "1.12.10", "card": None, "v2": "2.26.24"}[generation]
    return {"dataset_revision": "abc", "task_name": spec.name, "mteb_version": version,
            "scores": scores, "evaluation_time": 3.0, "kg_co2_emissions": None}


GENERATIONS = ("pre111", "v1_12", "card", "v2")
CQA_SUBFORUM_VALUES = [0.40, 0.50] * 6  # mean 0.45 = the Retrieval value


def write_model(folder, generations=GENERATIONS, drop=(), cqa="subforums", meta_name=None):
    """One model folder with all 56 MTEB(eng, v1) tasks (minus ``drop``), generations cycling."""
    folder.mkdir(parents=True, exist_ok=True)
    if meta_name:
        (folder / "model_meta.json").write_text(json.dumps({"name": meta_name,
                                                            "revision": "rev1"}))
    _, specs = benchmark_specs(BENCH)
    for i, spec in enumerate(specs.values()):
        if spec.name in drop:
            continue
        generation = generations[i % len(generations)]
        value = TYPE_SCORE[spec.type] / 100
        if spec.components:  # CQADupstack
            subs = spec.components if cqa != "partial" else spec.components[:11]
            for j, sub in enumerate(subs):
                data = result_json(sub, CQA_SUBFORUM_VALUES[j], GENERATIONS[j % 4])
                (folder / f"{sub.name}.json").write_text(json.dumps(data))
            if cqa == "aggregate":  # the aggregate file wins over (different) subforums
                data = result_json(spec, value, generation)
                (folder / f"{spec.name}.json").write_text(json.dumps(data))
            continue
        data = result_json(spec, value, generation, decoy_main=(i % 5 == 0))
        (folder / f"{spec.name}.json").write_text(json.dumps(data))
    return folder


# ------------------------------------------------------------------ unit checks


def test_metric_aliases_cover_renamed_keys():
    assert metric_aliases("cosine_spearman") == ("cosine_spearman", "cos_sim_spearman")
    assert metric_aliases("map_at_1000") == ("map_at_1000", "map")
    assert metric_aliases("max_over_subqueries_map_at_1000") == (
        "max_over_subqueries_map_at_1000", "map_at_1000", "map")


def test_scale_is_decided_from_bounded_metrics_only():
    # thresholds and timings may exceed 1 in a 0-1 file
    assert detect_scale({"test": {"default": {"max_ap": 0.8, "euclidean_accuracy_threshold": 17.0,
                                              "evaluation_time": 300.0}}}) == 1.0
    # a 0-100 export: most values above 1, a tiny precision@1000 (0.3 %) does not change that
    assert detect_scale({"test": {"default": {"ndcg_at_10": 40.0, "recall_at_1000": 91.0,
                                              "precision_at_1000": 0.3}}}) == 100.0
    # a negative correlation beyond -1 can only be on the 0-100 scale
    assert detect_scale({"test": {"default": {"cosine_spearman": -12.0}}}) == 100.0
    # mteb 2.x retrieval files carry nAUC statistics that exceed 1 on the 0-1 scale
    assert detect_scale({"test": {"default": {"ndcg_at_10": 0.61845, "nauc_precision_at_1000_max": 3.0}}}) == 1.0


def _sts_file(tmp_path, **override):
    """A mteb 2.x STS result on 0-1 with 7 bounded metrics, some replaced by ``override``."""
    metrics = {"cosine_spearman": 0.81, "cosine_pearson": 0.8, "euclidean_spearman": 0.79,
               "euclidean_pearson": 0.78, "pearson": 0.8, "spearman": 0.81, "main_score": 0.81,
               **override}
    path = tmp_path / "STS12.json"
    path.write_text(json.dumps({"task_name": "STS12", "scores": {"test": [
        {"hf_subset": "default", **metrics}]}}))  # json writes inf/nan as Infinity/NaN
    return read_result_file(path)


STS12 = TaskSpec("STS12", "STS", "cosine_spearman", "test", "default")


def test_one_impossible_value_is_rejected_not_a_scale_flip(tmp_path):
    result = _sts_file(tmp_path, cosine_spearman=7.5)
    assert result.scale == 1.0  # 1 of 7 bounded values above 1: the file stays on 0-1
    with pytest.raises(ScoreValueError, match=r"STS12\.json: test/default cosine_spearman = 7\.5 "
                                              r"is outside \[-1, 1\].*0-1 scale"):
        result.main_score(STS12)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_main_score_is_rejected_with_file_and_key(tmp_path, bad):
    result = _sts_file(tmp_path, cosine_spearman=bad)
    with pytest.raises(ScoreValueError, match=r"STS12\.json: test/default cosine_spearman = "
                                              r".* is not a finite number"):
        result.main_score(STS12)


def test_bad_values_in_metrics_no_table_reads_are_harmless(tmp_path):
    # per metric, not per file: a NaN/inf decoy leaves the main score readable
    result = _sts_file(tmp_path, euclidean_pearson=math.nan, pearson=math.inf)
    assert result.main_score(STS12) == (pytest.approx(81.0), None)


def test_out_of_range_accuracy_and_negative_non_correlation(tmp_path):
    spec = TaskSpec("Banking77Classification", "Classification", "accuracy", "test", "default")
    data = {"task_name": spec.name, "scores": {"test": [
        {"hf_subset": "default", "accuracy": -0.2, "f1": 0.5, "main_score": 0.5}]}}
    with pytest.raises(ScoreValueError, match=r"accuracy = -0\.2 is outside \[0, 1\]"):
        parse_result(data, tmp_path / "B.json").main_score(spec)
    # a negative correlation is a possible score
    data = {"task_name": "STS12", "scores": {"test": [
        {"hf_subset": "default", "cosine_spearman": -0.25, "cosine_pearson": -0.2}]}}
    assert parse_result(data, tmp_path / "S.json").main_score(STS12)[0] == pytest.approx(-25.0)


def test_per_query_scores_are_kept_apart_from_metrics(tmp_path):
    data = {"task_name": "PairrelHeldOut-x-fold0", "scores": {"test": [
        {"hf_subset": "default", "ndcg_at_10": 0.5, "main_score": 0.5,
         "per_query": {"nDCG@10": {"q1": 0.25, "q2": 0.75}, "RR(rel=2)@10": {"q1": 1, "q2": 0}}}]}}
    result = parse_result(data, tmp_path / "h.json")
    assert result.per_query == {"test": {"default": {"nDCG@10": {"q1": 0.25, "q2": 0.75},
                                                     "RR(rel=2)@10": {"q1": 1.0, "q2": 0.0}}}}
    assert not any("q1" in k for k in result.scores["test"]["default"])
    data["scores"]["test"][0]["per_query"]["nDCG@10"]["q2"] = 1.5
    with pytest.raises(ScoreValueError, match=r"h\.json: test/default per_query 'nDCG@10' of "
                                              r"query 'q2' = 1\.5"):
        parse_result(data, tmp_path / "h.json")


def test_duplicate_files_agree_or_conflict(tmp_path):
    (tmp_path / "a").mkdir()
    same = _sts_file(tmp_path / "a")
    # the same scores exported on 0-100 (as model cards do) agree with the 0-1 file
    card = {"task_name": "STS12", "scores": {"test": [{"hf_subset": "default",
            "cosine_spearman": 81.0, "cosine_pearson": 80.0, "main_score": 81.0}]}}
    assert duplicate_conflict(same, parse_result(card, tmp_path / "card.json")) is None
    (tmp_path / "b").mkdir()
    other = _sts_file(tmp_path / "b", cosine_spearman=0.82)
    message = duplicate_conflict(same, other)
    assert str(same.path) in message and str(other.path) in message
    assert "test/default cosine_spearman = 0.81 vs 0.82" in message
    disjoint = parse_result({"task_name": "STS12", "scores": {"test": [
        {"hf_subset": "default", "manhattan_spearman": 0.7}]}}, tmp_path / "d.json")
    assert "share no metric" in duplicate_conflict(same, disjoint)


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("task", ["STS17", "SprintDuplicateQuestions", "MindSmallReranking",
                                  "AmazonCounterfactualClassification", "MSMARCO"])
def test_each_generation_gives_the_leaderboard_main_score(tmp_path, generation, task):
    _, specs = benchmark_specs(BENCH)
    spec = specs[task]
    path = tmp_path / f"{task}.json"
    path.write_text(json.dumps(result_json(spec, 0.6125, generation, decoy_main=True)))
    result = read_result_file(path)
    score, _ = result.main_score(spec)
    assert score == pytest.approx(61.25, abs=1e-9)
    assert result.task_name == task


def test_leaderboard_split_and_subset_choices():
    _, specs = benchmark_specs(BENCH)
    assert len(specs) == 56
    assert (specs["MSMARCO"].split, specs["AmazonReviewsClassification"].split) == ("dev", "test")
    assert specs["AmazonCounterfactualClassification"].subset == "en"
    assert specs["STS17"].subset == "en-en"
    assert specs["STS22"].subset == "en"
    assert len(specs["CQADupstackRetrieval"].components) == 12


def test_max_ap_from_per_similarity_values_and_main_score_fallback(tmp_path):
    spec = TaskSpec("TwitterURLCorpus", "PairClassification", "max_ap", "test", "default")
    data = {"task_name": "TwitterURLCorpus", "scores": {"test": [
        {"hf_subset": "default", "cos_sim_ap": 0.80, "dot_ap": 0.84, "euclidean_ap": 0.79}]}}
    assert parse_result(data, tmp_path / "t.json").main_score(spec) == (pytest.approx(84.0), None)
    data = {"task_name": "STS12", "scores": {"test": [{"hf_subset": "default",
                                                        "main_score": 0.5}]}}
    spec = TaskSpec("STS12", "STS", "cosine_spearman", "test", "default")
    score, warning = parse_result(data, tmp_path / "STS12.json").main_score(spec)
    assert score == pytest.approx(50.0) and "used the file's main_score" in warning


def test_missing_metric_names_the_file(tmp_path):
    spec = TaskSpec("STS12", "STS", "cosine_spearman", "test", "default")
    data = {"task_name": "STS12", "scores": {"test": [{"hf_subset": "default",
                                                        "euclidean_spearman": 0.5}]}}
    result = parse_result(data, tmp_path / "STS12.json")
    with pytest.raises(KeyError, match=r"STS12\.json.*cosine_spearman"):
        result.main_score(spec)


def test_truncated_file_error_names_file_and_line(tmp_path):
    path = tmp_path / "STS12.json"
    path.write_text('{"task_name": "STS12",\n "scores": {"test": [{"hf_sub')
    with pytest.raises(ResultFileError, match=r"STS12\.json: corrupt or truncated JSON at line 2"):
        read_result_file(path)


# ------------------------------------------------------------------ a whole benchmark


def _row(coll, label):
    return coll.scores[coll.scores["label"] == label]


def test_mixed_generations_average_like_the_published_tables(tmp_path):
    write_model(tmp_path / "results" / "org__mixed" / "no_revision_available")
    coll = collect([tmp_path], benchmark=BENCH)
    assert list(coll.rows["label"]) == ["mixed"]
    assert coll.rows.loc[0, "n_tasks"] == 56 and coll.rows.loc[0, "missing"] == []
    scores = _row(coll, "mixed").set_index("task")["score"]
    for task, score in scores.items():
        assert score == pytest.approx(TYPE_SCORE[coll.specs[task].type], abs=1e-9), task
    by_type = _row(coll, "mixed").groupby("type")["score"].mean()
    assert by_type.to_dict() == pytest.approx(TYPE_SCORE)
    assert scores.mean() == pytest.approx(AVERAGE_56)
    table = main_table(coll).iloc[0]
    assert table["Average"] == pytest.approx(AVERAGE_56)  # over tasks, not over type means
    assert {t: table[t] for t in TYPE_SCORE} == pytest.approx(TYPE_SCORE)
    assert coll.unknown_tasks == {}  # CQADupstack subforums are parts, not unknown tasks


def test_cqadupstack_aggregate_file_is_preferred(tmp_path):
    # subforums average 45.0 as well, so shift them: aggregate says 0.45, subforums 0.40/0.50
    write_model(tmp_path / "m" / "rev", cqa="aggregate")
    coll = collect([tmp_path / "m" / "rev"], benchmark=BENCH)
    row = coll.scores.set_index("task")["score"]
    assert row["CQADupstackRetrieval"] == pytest.approx(45.0)


def test_incomplete_model_lists_missing_tasks(tmp_path):
    write_model(tmp_path / "results" / "org__partial" / "rev", drop=("NQ", "STS22"), cqa="partial")
    coll = collect([tmp_path / "results"], benchmark=BENCH)
    row = coll.rows.iloc[0]
    assert row["n_tasks"] == 53
    assert set(row["missing"]) == {"NQ", "STS22", "CQADupstackRetrieval (11 of 12 sub-tasks)"}


def test_task_outside_the_benchmark_is_an_own_task_or_listed_as_unknown(tmp_path):
    folder = write_model(tmp_path / "org__x" / "rev")
    spec = TaskSpec("MyPrivateSTS", "STS", "cosine_spearman", "test", "default")
    (folder / "MyPrivateSTS.json").write_text(json.dumps(result_json(spec, 0.5, "v2")))
    # a file whose metrics name no type pairrel can score (accuracy only): unknown
    (folder / "MyPrivateClassification.json").write_text(json.dumps(
        {"task_name": "MyPrivateClassification", "scores": {"test": [{"hf_subset": "default", "accuracy": 0.7,
                                                                      "main_score": 0.7}]}}))
    coll = collect([folder], benchmark=BENCH)
    assert coll.unknown_tasks == {"x": ["MyPrivateClassification"]}
    # the STS file says its type (cosine_spearman): scored as pairrel scores a user's STS task,
    # outside the benchmark's 56 tasks
    assert coll.own_specs == {"MyPrivateSTS": spec}
    assert coll.own_scores.set_index("task")["score"].to_dict() == pytest.approx({"MyPrivateSTS": 50.0})
    assert coll.rows.iloc[0]["n_tasks"] == 56


@pytest.mark.parametrize("metrics, task_type", [
    ({"cosine_spearman": 0.8, "cosine_pearson": 0.7, "main_score": 0.8}, "STS"),
    ({"cos_sim_spearman": 0.8}, "STS"),
    ({"max_ap": 0.6, "cosine_ap": 0.6, "main_score": 0.6}, "PairClassification"),
    ({"ndcg_at_10": 0.5, "map_at_1000": 0.4, "main_score": 0.5}, "Retrieval"),
    ({"ndcg_at_10": 0.5, "map_at_1000": 0.4, "main_score": 0.4}, "Reranking"),
])
def test_infer_task_spec_reads_the_type_from_the_metrics(metrics, task_type):
    from pairrel.report.scores import infer_task_spec, parse_result

    result = parse_result({"task_name": "Mine", "scores": {"dev": [{"hf_subset": "x", **metrics}]}}, Path("Mine.json"))
    main = {"STS": "cosine_spearman", "PairClassification": "max_ap", "Retrieval": "ndcg_at_10",
            "Reranking": "map_at_1000"}[task_type]
    assert infer_task_spec(result) == TaskSpec("Mine", task_type, main, "dev", "x")


def test_without_a_benchmark_the_table_is_the_tasks_found(tmp_path):
    # MTEB(eng, v1) tasks keep their benchmark scoring (CQADupstack from its subforums), the
    # user's STS file is read by its metrics; the average is over the tasks found
    folder = write_model(tmp_path / "org__x" / "rev")
    spec = TaskSpec("MyPrivateSTS", "STS", "cosine_spearman", "test", "default")
    (folder / "MyPrivateSTS.json").write_text(json.dumps(result_json(spec, 0.5, "v2")))
    coll = collect([folder])
    assert coll.benchmark == "tasks found" and len(coll.specs) == 57
    assert coll.specs["CQADupstackRetrieval"].components and coll.unknown_tasks == {}
    assert main_table(coll).iloc[0]["Average"] == pytest.approx((56 * AVERAGE_56 + 50.0) / 57)
    # exactly the benchmark's tasks: the benchmark itself (so its published rows may sit beside)
    (folder / "MyPrivateSTS.json").unlink()
    assert collect([folder]).benchmark == BENCH


def test_corrupt_file_raises_or_is_skipped_with_flag(tmp_path):
    folder = write_model(tmp_path / "org__x" / "rev")
    bad = folder / "SciFact.json"
    bad.write_text(bad.read_text()[:50])
    with pytest.raises(ResultFileError, match="SciFact.json"):
        collect([folder], benchmark=BENCH)
    coll = collect([folder], benchmark=BENCH, skip_bad=True)
    assert coll.rows.iloc[0]["missing"] == ["SciFact"]
    assert any("SciFact.json" in w for w in coll.warnings)
    assert math.isnan(coll.scores.set_index("task")["score"].get("SciFact", math.nan))


def test_mteb_task_spec_reads_mtebs_metadata_and_answers_none_for_an_unknown_task():
    from pairrel.report.scores import TaskSpec, mteb_task_spec

    assert mteb_task_spec("STS12") == TaskSpec(name="STS12", type="STS", main_score="cosine_spearman",
                                               split="test", subset="default", components=())
    assert mteb_task_spec("MSMARCO").split == "dev"  # the one MTEB(eng, v1) task published on dev
    assert mteb_task_spec("NoSuchTask") is None
