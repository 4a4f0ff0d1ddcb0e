"""GradCache: the gradient of a large batch computed in chunks that fit in memory.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"
(arXiv 2101.06983). The loss couples every query with every document, so it cannot be split,
but the encoder can: with e = f_θ(x) the embeddings of all texts,

    ∂L/∂θ = Σ_chunks (∂L/∂e_chunk)ᵀ ∂e_chunk/∂θ.

1. Embed every chunk without a graph (no activations kept), remembering the RNG state before
   each chunk so that dropout can be replayed exactly.
2. On the full batch of (detached, grad-requiring) embeddings: loss, and its gradient with
   respect to every embedding — and, in the same backward, with respect to the loss module's
   own parameters (BCE's t′ and b), which therefore get their gradient exactly once.
3. Re-embed each chunk with a graph, restoring its RNG state, and backpropagate ∂L/∂e_chunk
   through it: ``emb.backward(grad_chunk)`` accumulates into the encoder parameters.

The result equals the full-batch gradient up to floating-point summation order.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

import torch

from pairrel import distributed

Encode = Callable[[list[str]], torch.Tensor]


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def _loss_and_backward(loss_fn, query_emb, doc_emb, targets, gather) -> torch.Tensor:
    """Loss on the full batch, backward with the distributed weight; returns the loss to log."""
    if gather is not None:
        doc_emb = gather(doc_emb)
    loss = loss_fn(query_emb, doc_emb, targets)
    if gather is None:
        loss.backward()
        return loss.detach()
    # rows the loss averaged over (SoftmaxLoss leaves rows without a positive out); look
    # through a DDP/accelerate wrapper, which does not forward plain attributes.
    rows = getattr(getattr(loss_fn, "module", loss_fn), "rows_used", query_emb.shape[0])
    (loss * distributed.loss_weight(rows)).backward()
    return distributed.global_mean(loss, rows)


def grad_cache_step(
    encode_queries: Encode,
    encode_docs: Encode,
    queries: Sequence[str],
    docs: Sequence[str],
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    chunk_size: int | None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    no_sync: Callable[[], ContextManager] | None = None,
) -> torch.Tensor:
    """Forward and backward of one training step; returns the (detached) loss.

    Args:
        encode_queries / encode_docs: texts → embeddings [n, d] (e.g. ``lambda t:
            encoder.encode(t, instruction)``), with gradients into the encoder parameters.
        queries, docs: this process's texts; targets: [len(queries), D] over the documents
            after ``gather`` (all ranks' documents in rank order), else [len(queries), len(docs)].
        loss_fn: ``loss(query_emb, doc_emb, targets) -> scalar`` (pairrel.losses).
        chunk_size: texts per chunk; None (or ≥ both batch sizes) = plain forward + backward.
        gather: ``distributed.all_gather_with_grad`` when training on several processes: the
            loss is then weighted so that DDP's gradient average equals the gradient of the
            loss on the concatenated batch, and the returned loss is that global loss
            (``pairrel.distributed``). Parameters of ``loss_fn`` still need
            ``distributed.average_gradients`` unless DDP wraps them.
        no_sync: DDP's ``model.no_sync`` (or accelerate's equivalent): the chunk backwards but
            the last run inside it, so gradients are all-reduced once per step, not per chunk.

    Gradients accumulate into ``.grad`` (zero them before, step the optimiser after).
    """
    queries, docs = list(queries), list(docs)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    if chunk_size is None or (chunk_size >= len(queries) and chunk_size >= len(docs)):
        return _loss_and_backward(loss_fn, encode_queries(queries), encode_docs(docs), targets, gather)

    # 1. embeddings without a graph, with the RNG state each chunk started from
    plan = []  # (encode, texts, rng state)
    cached = {"queries": [], "docs": []}
    for side, encode, texts in (("queries", encode_queries, queries), ("docs", encode_docs, docs)):
        for chunk in _chunks(texts, chunk_size):
            state = _rng_state()
            with torch.no_grad():
                cached[side].append(encode(chunk))
            plan.append((encode, chunk, state))

    # 2. loss and ∂L/∂embeddings on the full batch (loss parameters get their gradient here)
    query_emb = torch.cat(cached["queries"]).requires_grad_()
    doc_emb = torch.cat(cached["docs"]).requires_grad_()
    loss = _loss_and_backward(loss_fn, query_emb, doc_emb, targets, gather)
    grads = list(torch.split(query_emb.grad, chunk_size)) + list(torch.split(doc_emb.grad, chunk_size))

    # 3. re-embed each chunk with a graph (same dropout) and push its gradient through
    after = _rng_state()
    for index, ((encode, chunk, state), grad) in enumerate(zip(plan, grads)):
        last = index == len(plan) - 1
        with no_sync() if no_sync is not None and not last else nullcontext():
            _set_rng_state(state)
            encode(chunk).backward(grad)
    _set_rng_state(after)  # leave the RNG where the graph-free pass left it
    return loss
