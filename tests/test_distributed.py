"""Two CPU processes (gloo) give the loss and gradients of one process on the concatenated batch.

Global batch: 5 queries, 7 documents, split 3/2 and 4/3 over the ranks (uneven on purpose), so
the gathered documents have different counts per rank; query 4 has no positive, so for the
softmax the ranks count different numbers of rows (3 and 1). The encoder is a small MLP over
fixed feature vectors; DDP's gradient average is done with ``average_gradients``.
"""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pairrel import distributed
from pairrel.gradcache import grad_cache_step
from pairrel.losses import PairRelevanceBCELoss, SoftmaxLoss

WORLD = 2
QUERIES = [str(i) for i in range(5)]
DOCS = [str(i) for i in range(5, 12)]
TARGETS = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],  # doc 1 shared with row 2
        [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1 / 3, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # no positive: softmax leaves it out
    ]
)
# chunks: none, 2 texts in arrival order, and explicit length-sorted-like permuted partitions
# (as token_chunks gives) of each rank's 3/2 queries and 4/3 documents.
PERMUTED = {0: ([[2], [0, 1]], [[3, 1], [0, 2]]), 1: ([[1, 0]], [[2], [1, 0]])}
CASES = [(loss, chunk) for loss in ("softmax", "bce") for chunk in (None, 2, "permuted")]


def make_model():
    torch.manual_seed(0)
    features = torch.randn(12, 8)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 6))
    return features, mlp


def make_loss(name):
    return SoftmaxLoss(0.1) if name == "softmax" else PairRelevanceBCELoss(5.0, -2.0)


def step(loss_name, chunk, queries, docs, targets, gather):
    """Loss and gradients (encoder, then loss parameters) of one grad_cache_step."""
    features, mlp = make_model()
    loss_fn = make_loss(loss_name)
    encode = lambda texts: mlp(features[[int(t) for t in texts]])  # noqa: E731
    loss = grad_cache_step(encode, encode, queries, docs, targets, loss_fn, chunk, gather=gather)
    distributed.average_gradients(mlp.parameters())  # what DDP does
    distributed.average_gradients(loss_fn.parameters())
    params = list(mlp.parameters()) + [p for p in loss_fn.parameters() if p.requires_grad]
    return loss, [p.grad.clone() for p in params]


def embedding_grads(loss_name, q, d, targets, gather):
    """Gradients w.r.t. raw embeddings (no DDP averaging for these: R × the global gradient)."""
    q, d = q.clone().requires_grad_(), d.clone().requires_grad_()
    loss_fn = make_loss(loss_name)
    loss = loss_fn(q, gather(d) if gather else d, targets)
    (loss * distributed.loss_weight(loss_fn.counted_rows(targets))).backward()
    return q.grad, d.grad


def _worker(rank, port, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        qs, ds = distributed.shard(5), distributed.shard(7)
        results = {"rank": distributed.rank(), "world": distributed.world_size()}
        sizes = distributed.shard_sizes(7)
        assert sizes == [4, 3]
        for loss_name, chunk in CASES:
            # the permuted case also passes the known sizes (no count gather)
            gather = (lambda t: distributed.all_gather_with_grad(t, sizes)) if chunk == "permuted" else distributed.all_gather_with_grad
            chunks = PERMUTED[rank] if chunk == "permuted" else chunk
            results[(loss_name, chunk)] = step(loss_name, chunks, QUERIES[qs], DOCS[ds], TARGETS[qs], gather)
        torch.manual_seed(1)
        q, d = torch.randn(5, 6), torch.randn(7, 6)
        for loss_name in ("softmax", "bce"):
            results[("embeddings", loss_name)] = embedding_grads(
                loss_name, q[qs], d[ds], TARGETS[qs], distributed.all_gather_with_grad
            )
        torch.save(results, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "results"
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(WORLD)]


def test_shard_splits_contiguously():
    assert [distributed.shard(7, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 7)]
    assert [distributed.shard(5, r, 3) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    # outside torch.distributed: one rank owning everything, and an identity gather
    assert distributed.shard(5) == slice(0, 5) and distributed.world_size() == 1 and distributed.rank() == 0
    t = torch.randn(3, 2)
    assert distributed.all_gather_with_grad(t) is t and distributed.loss_weight(3) == 1.0
    assert distributed.shard_sizes(7, 2) == [4, 3] and distributed.shard_sizes(5, 3) == [2, 2, 1]


@pytest.mark.parametrize("loss_name, chunk", CASES)
def test_two_processes_equal_one_process(two_process_results, loss_name, chunk):
    single_loss, single_grads = step(loss_name, None, QUERIES, DOCS, TARGETS, gather=None)
    assert any(g.abs().max() > 1e-3 for g in single_grads)
    for result in two_process_results:
        assert result["world"] == WORLD
        loss, grads = result[(loss_name, chunk)]
        assert loss.item() == pytest.approx(single_loss.item(), rel=1e-6)
        assert len(grads) == len(single_grads)
        for got, expected in zip(grads, single_grads):
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss_name", ["softmax", "bce"])
def test_embedding_gradients_are_the_global_ones(two_process_results, loss_name):
    torch.manual_seed(1)
    q, d = torch.randn(5, 6), torch.randn(7, 6)
    q_grad, d_grad = embedding_grads(loss_name, q, d, TARGETS, gather=None)
    for rank, result in enumerate(two_process_results):
        got_q, got_d = result[("embeddings", loss_name)]
        # each rank holds R × its slice of the global gradient; DDP's average divides by R
        torch.testing.assert_close(got_q / WORLD, q_grad[distributed.shard(5, rank, WORLD)], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got_d / WORLD, d_grad[distributed.shard(7, rank, WORLD)], atol=1e-6, rtol=1e-5)
