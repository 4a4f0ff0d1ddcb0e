"""Every file pairrel writes gets the mode the umask gives an ordinary open() (0644 under 022,
0640 under 027), checkpoints included: safetensors writes its files 0600 through mkstemp."""

import os
import stat
import uuid

import numpy as np
import pytest

from pairrel.config import load_config
from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.data.sources import prepare_source
from pairrel.evaluate.shards import _atomic_savez
from pairrel.study import Study
from pairrel.train import Trainer
from tests.conftest import REPO_ROOT

RUN = "model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42"


@pytest.fixture(params=[0o022, 0o027], ids=["umask-022", "umask-027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(root):
    """Relative path -> permission bits of every file and folder under ``root`` (itself too)."""
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def expected(root, mask):
    return {name: (0o777 if (root.parent / name).is_dir() else 0o666) & ~mask for name in modes(root)}


def test_checkpoint_files_and_folders_follow_the_umask(umask, tmp_path):
    corpus = quickstart.generate(tmp_path / "corpus", seed=5, n_topics=4, n_passages=40, n_queries=24)
    assert modes(tmp_path / "corpus") == expected(tmp_path / "corpus", umask)  # results/<exp>/corpus/
    dataset_id = f"pairrel-test/modes-{uuid.uuid4().hex[:8]}"
    register_local_dir(dataset_id, corpus["train"])
    out = tmp_path / "prepared" / "quickstart.parquet"
    prepare_source("quickstart", {"instruction": "", "dataset": dataset_id}, out)
    study = Study(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml"))
    run_cfg = study.run(RUN).config | {"prepared": {"quickstart": {"parquet": str(out), "meta": str(out.with_name("quickstart.meta.json"))}}}
    run_cfg["training"].update(steps=1, batch_size=4, checkpoint_every=1, warmup_steps=1, num_threads=1)
    assert Trainer(run_cfg, tmp_path / "run", progress=False).run() == 0
    checkpoint = tmp_path / "run" / "checkpoint-1"
    got = modes(checkpoint)
    assert {"checkpoint-1/adapter_model.safetensors", "checkpoint-1/trainer_state.safetensors"} <= set(got)
    assert got == expected(checkpoint, umask)
    assert stat.S_IMODE((tmp_path / "prepared" / "quickstart.parquet").stat().st_mode) == 0o666 & ~umask


def test_embedding_shards_follow_the_umask(umask, tmp_path):
    _atomic_savez(tmp_path / "shard.npz", keys=np.arange(3))
    assert stat.S_IMODE((tmp_path / "shard.npz").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["shard.npz"]
