"""pairrel.layout: the rules' patterns and the study's paths are the same files.

Each concrete path a Study builds must be matched by the rule pattern of that artifact under the
rules' wildcard constraints, with the wildcards read back as the values it was built from (else
Snakemake would not find the rule that makes the file a job asks for).
"""

import re
import string

import pytest

from pairrel import layout
from pairrel.study import Study
from tests.conftest import REPO_ROOT

RUN_ID = "model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~1/seed~42"


@pytest.fixture(scope="module")
def paper():
    return Study.from_files(REPO_ROOT / "config.yaml")


def wildcards(pattern: str, path: str) -> dict[str, str]:
    """The wildcard values of ``path`` under ``pattern``, as Snakemake reads them (constraints
    applied); AssertionError when the pattern does not match."""
    regex = ""
    for literal, field, _, _ in string.Formatter().parse(pattern):
        regex += re.escape(literal)
        if field is not None:
            regex += f"(?P<{field}>{layout.WILDCARD_CONSTRAINTS[field]})"
    match = re.fullmatch(regex, path)
    assert match, f"{path} does not match {pattern}"
    return match.groupdict()


def test_each_path_of_a_run_is_matched_by_its_rule_pattern(paper):
    run = paper.run(RUN_ID)
    lay = paper.layout
    assert wildcards(lay.pattern(layout.RUN_DONE), str(run.done_file)) == {"run": RUN_ID}
    assert wildcards(lay.pattern(layout.RUN_YAML), str(run.config_file)) == {"run": RUN_ID}
    resolved = wildcards(lay.pattern(layout.RESOLVED_RUN), str(run.resolved_file))
    assert resolved["run"] == RUN_ID and run.resolved_file.name == f"{resolved['hash']}.yaml"
    assert wildcards(lay.pattern(layout.EVAL_MARKER), str(run.eval_marker(100, "STS"))) == \
        {"run": RUN_ID, "step": "100", "group": "STS"}
    assert wildcards(lay.pattern(layout.BASE_MARKER), str(paper.base_marker("llama3-8b", "Retrieval"))) == \
        {"model": "llama3-8b", "group": "Retrieval"}
    assert wildcards(lay.prepared_pattern(folds=True, suffix=layout.FOLDS),
                     str(paper.folds_file("trec-dl-2023", "trec-dl-2023", 1))) == \
        {"data": "trec-dl-2023", "source": "trec-dl-2023", "fold": "1"}
    # A source without folds is not taken for a fold of another source (source has no dot).
    with pytest.raises(AssertionError):
        wildcards(lay.prepared_pattern(folds=False), str(paper.prepared("trec-dl-2023", "trec-dl-2023", 1)))


def test_every_wildcard_of_a_pattern_is_constrained():
    patterns = [getattr(layout, name) for name in dir(layout) if name.isupper()
                and isinstance(getattr(layout, name), str)] + list(layout.JOB_FILES.values())
    fields = {f for p in patterns for _, f, _, _ in string.Formatter().parse(p) if f}
    assert fields == {"run", "hash", "step", "group", "model", "data", "source", "fold"}
    assert fields <= set(layout.WILDCARD_CONSTRAINTS)


def test_logs_and_benchmarks_of_jobs(paper):
    lay = paper.layout
    assert str(lay.log("evaluate_checkpoint", run=RUN_ID, step=100, group="STS")) == \
        f"results/paper/logs/evaluate/{RUN_ID}/step~100/STS.log"
    assert str(lay.benchmark("prepare_fold", data="trec-dl-2023", source="trec-dl-2023", fold=1)) == \
        "results/paper/benchmarks/data/trec-dl-2023/trec-dl-2023.fold~1.tsv"
    assert lay.log_pattern("train_run") == "results/paper/logs/train/{run}.log"
    assert lay.report_files("main_table") == [f"paper_figures/paper/main_table.{e}" for e in ("csv", "md", "tex")]


def test_mteb_names_and_their_cache_folders():
    name = layout.checkpoint_model_name("model-minilm.data-quickstart.loss-bce.labels-binary@2.seed-42", 8)
    assert name == "pairrel/model-minilm.data-quickstart.loss-bce.labels-binary@2.seed-42.step-8"
    assert layout.cache_folder_name(name) == "pairrel__model-minilm.data-quickstart.loss-bce.labels-binary@2.seed-42.step-8"
    assert layout.model_name_of_cache_folder(layout.cache_folder_name(name)) == name
    assert str(layout.result_folder("results/x/mteb", layout.base_model_name("minilm"), "base-0123456789")) == \
        "results/x/mteb/results/pairrel__minilm/base-0123456789"


def test_checkpoint_step_inverts_checkpoint_dir(tmp_path):
    from pairrel.layout import checkpoint_dir, checkpoint_step

    assert checkpoint_step(checkpoint_dir(tmp_path, 250)) == 250
    assert checkpoint_step("runs/x/checkpoint-0") == 0
    for other in (".checkpoint-25.tmp-1", "checkpoint-best", "checkpoint-", "ckpt-25"):
        assert checkpoint_step(other) is None
