"""Shared test setup: nothing may reach a hub, and every test is deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The read-only public files in ../shared/data (skip where a checkout lacks them)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def ir_home(tmp_path, monkeypatch) -> Path:
    """A private, writable ir_datasets cache folder for one test."""
    home = tmp_path / "ir_datasets_home"
    home.mkdir()
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    return home
