"""`pairrel data check` on MTEB task data: aggregate tasks are checked through their sub-tasks.

Real mteb task metadata (enumerated offline) against a private, empty Hugging Face cache.
"""

import huggingface_hub.constants
import pytest

from pairrel.data.prefetch import _mteb_tasks, check_available

CQADUPSTACK_SUBFORUMS = ["Android", "English", "Gaming", "Gis", "Mathematica", "Physics", "Programmers",
                         "Stats", "Tex", "Unix", "Webmasters", "Wordpress"]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def config(tasks):
    return {"evaluation": {"benchmark": "MTEB(eng, v1)", "tasks": tasks}}


def test_aggregate_tasks_expand_to_their_subtasks():
    names = [t.metadata.name for t in _mteb_tasks(config(["CQADupstackRetrieval", "STS12"]))]
    assert sorted(names) == sorted([f"CQADupstack{s}Retrieval" for s in CQADUPSTACK_SUBFORUMS] + ["STS12"])


def test_the_english_benchmark_has_no_pathless_task():
    tasks = _mteb_tasks({"evaluation": {"benchmark": "MTEB(eng, v1)"}})
    assert len(tasks) == 56 - 1 + 12  # CQADupstackRetrieval is 12 subforum tasks
    assert all("/" in t.metadata.dataset["path"] for t in tasks)


def test_check_names_missing_subtask_data_and_accepts_cached_data(hub_cache):
    problems = check_available(config(["CQADupstackRetrieval"]), include_models=False)
    assert len(problems) == 12
    assert not any("do not have a path" in p for p in problems)
    android = next(p for p in problems if "CQADupstackAndroidRetrieval" in p)
    assert android == ("MTEB task CQADupstackAndroidRetrieval (part of CQADupstackRetrieval): dataset "
                       "mteb/CQADupstackAndroidRetrieval@9be4c0e46342e8e3aff577a89b9a1ec9bc6b4af3 "
                       "is not in the Hugging Face cache")
    # The snapshot of that revision in the cache: no longer reported.
    snapshot = hub_cache / "datasets--mteb--CQADupstackAndroidRetrieval" / "snapshots" / \
        "9be4c0e46342e8e3aff577a89b9a1ec9bc6b4af3"
    snapshot.mkdir(parents=True)
    (snapshot / "README.md").write_text("cached\n")
    problems = check_available(config(["CQADupstackRetrieval"]), include_models=False)
    assert len(problems) == 11
    assert not any("CQADupstackAndroidRetrieval" in p for p in problems)
