"""Version, licence and citation metadata agree with each other."""

import re

import yaml

import pairrel
from tests.conftest import REPO_ROOT


def test_version_comes_from_the_installed_metadata_and_matches_pyproject_and_citation():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert pairrel.__version__ == declared == str(citation["version"])


def test_citation_file_has_the_required_fields_and_cites_the_study_and_llm2vec():
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "license", "abstract"):
        assert citation[key], key
    assert citation["license"] == "MIT"
    urls = [ref.get("url", "") for ref in citation["references"]]
    assert any("hbS1t37PGM" in url for url in urls)
    assert any("2404.05961" in url for url in urls)
    assert "MIT License" in (REPO_ROOT / "LICENSE").read_text()
