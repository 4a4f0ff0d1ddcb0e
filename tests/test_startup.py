"""Start-up costs nothing a command does not use: planning a study, `pairrel --help` and the
report never import mteb's task registry, torch or plotting; their MTEB facts come from the
generated table, which must equal what mteb says."""

import json
import subprocess
import sys

import pytest

from pairrel import cli
from pairrel.evaluate.benchmark_table import TABLE_BENCHMARKS, TABLE_FILE, benchmark, benchmark_from_mteb
from tests.conftest import REPO_ROOT

HEAVY = ("mteb", "torch", "transformers", "scipy", "matplotlib", "sentence_transformers")


def loaded_after(code: str) -> set[str]:
    """Which HEAVY top-level modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_building_the_paper_study_imports_neither_mteb_nor_torch():
    code = ("from pairrel.config import load_config\nfrom pairrel.study import Study\n"
            "study = Study(load_config('config.yaml'))\nassert len(study.eval_plan.tasks_for('Retrieval')) == 15")
    assert loaded_after(code) == set()


def test_help_imports_no_subcommand_module():
    code = "from pairrel.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert loaded_after(code) == set()


def test_report_on_published_results_never_imports_mteb(public_data, tmp_path):
    code = (f"from pairrel.cli import main\nassert main(['report', '--results', {str(public_data / 'mteb-results')!r}, "
            f"'--out', {str(tmp_path / 'out')!r}, '--no-reference']) == 0")
    assert "mteb" not in loaded_after(code)
    assert "| 72.21 | 43.57 | 86.20 | 55.38 | 51.44 | 83.58 | 30.01 | 61.85 |" in (tmp_path / "out" / "main_table.md").read_text()


@pytest.mark.parametrize("name", TABLE_BENCHMARKS)
def test_generated_table_equals_mtebs_benchmark(name):
    """Regenerate with `python tools/gen_benchmark_table.py` when mteb changes."""
    table = json.loads(TABLE_FILE.read_text())
    assert benchmark(name) == benchmark_from_mteb(name), f"{TABLE_FILE} is stale (mteb {table['mteb_version']})"


def test_table_answers_aliases_and_holds_the_leaderboard_choices():
    v1 = benchmark("MTEB(eng, classic)")
    assert v1["name"] == "MTEB(eng, v1)" and len(v1["tasks"]) == 56
    tasks = {t["name"]: t for t in v1["tasks"]}
    assert (tasks["MSMARCO"]["split"], tasks["STS17"]["subset"], tasks["SciDocsRR"]["main_score"]) == ("dev", "en-en", "map_at_1000")
    assert [t["type"] for t in v1["tasks"]].count("Retrieval") == 15
    assert len(tasks["CQADupstackRetrieval"]["components"]) == 12


def test_lazy_command_help_is_the_modules_own():
    parser = cli.build_parser()  # every module registered in full
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    helps = {action.dest: action.help for action in commands._choices_actions}
    assert {name: helps[name] for name in cli.LAZY_COMMANDS} == {name: h for name, (_, h) in cli.LAZY_COMMANDS.items()}
