"""GradCache: the gradient of a large batch computed in chunks that fit in memory.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"
(arXiv 2101.06983). The loss couples every query with every document, so it cannot be split,
but the encoder can: with e = f_θ(x) the embeddings of all texts,

    ∂L/∂θ = Σ_chunks (∂L/∂e_chunk)ᵀ ∂e_chunk/∂θ.

1. Embed every chunk without a graph (no activations kept), remembering the RNG state before
   each chunk so that dropout can be replayed exactly.
2. On the full batch of (detached, grad-requiring) embeddings, put back in the batch's order:
   loss, and its gradient with respect to every embedding — and, in the same backward, with
   respect to the loss module's own parameters (BCE's t′ and b), which therefore get their
   gradient exactly once.
3. Re-embed each chunk with a graph, restoring its RNG state, and backpropagate ∂L/∂e_chunk
   through it: ``emb.backward(grad_chunk)`` accumulates into the encoder parameters.

The result equals the full-batch gradient up to floating-point summation order, for any
partition of the texts into chunks (with dropout, the reference is the same chunks' forward
kept with a graph: the masks depend on which texts share a forward).

Chunking. The cost of a chunk is its padded size, count × longest text. Fixed counts in arrival
order (:func:`count_chunks`, the old ``training.gradcache_chunk``) pad every chunk to its
longest text and give short texts (queries) tiny, inefficient forwards. :func:`token_chunks`
sorts the texts longest first and fills each chunk up to a token budget (count × longest ≤
budget): padding nearly vanishes, every chunk has about the same cost and memory, the longest
chunk runs first (an out-of-memory error shows at once), and when the whole batch fits in
the budget there is one chunk and no second forward at all.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Sequence

import torch

from pairrel import distributed

Encode = Callable[[list[Any]], torch.Tensor]
Chunks = list[list[int]]  # a partition of range(n) into the index lists of the forwards


def count_chunks(n: int, size: int) -> Chunks:
    """``size`` items per chunk in arrival order: [[0..size-1], [size..], …]."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def token_chunks(lengths: Sequence[int], budget: int) -> Chunks:
    """Length-sorted chunks of at most ``budget`` padded tokens each.

    Items are taken longest first (ties in arrival order); a chunk whose first (longest) item
    has L tokens takes max(1, ⌊budget / L⌋) items, so count × L ≤ budget unless a single item
    is longer than the budget, which then forms a chunk of its own.
    """
    if budget < 1:
        raise ValueError(f"token budget must be >= 1, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: -int(lengths[i]))
    chunks: Chunks = []
    start = 0
    while start < len(order):
        take = max(1, budget // max(1, int(lengths[order[start]])))
        chunks.append(order[start : start + take])
        start += take
    return chunks


def row_encoder(
    tokens: dict[str, torch.Tensor], forward: Callable[..., torch.Tensor], device: torch.device | str
) -> tuple[list[int], Encode]:
    """Texts tokenized once per step, embedded in chunks of rows.

    ``tokens``: the padded tokenizer output of all texts (``attention_mask`` among the keys);
    ``forward(**tensors)`` → embeddings. Returns (token count of each text, ``encode(rows)``).
    A chunk keeps only the columns that are real tokens in at least one of its rows (so
    length-sorted chunks carry almost no padding) and is copied to ``device`` without waiting for
    the work queued there (pinned host memory on CUDA). Tokenizing once also spares GradCache's
    replay pass a second tokenization.
    """
    lengths = tokens["attention_mask"].sum(dim=1).tolist()
    device = torch.device(device)
    pin = device.type == "cuda"

    def encode(rows: list[int]) -> torch.Tensor:
        index = torch.tensor(rows, dtype=torch.long)
        chunk = {key: value[index] for key, value in tokens.items()}
        used = chunk["attention_mask"].any(dim=0)  # padding is contiguous (one side): cut it
        chunk = {key: value[:, used] for key, value in chunk.items()}
        chunk = {key: (value.pin_memory() if pin else value).to(device, non_blocking=True) for key, value in chunk.items()}
        return forward(**chunk)

    return lengths, encode


def _check_partition(chunks: Chunks, n: int, side: str) -> None:
    seen = sorted(i for chunk in chunks for i in chunk)
    if seen != list(range(n)) or any(not chunk for chunk in chunks):
        raise ValueError(f"{side} chunks must cover each of the {n} items exactly once, without empty chunks")


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _loss_and_backward(loss_fn, query_emb, doc_emb, targets, gather) -> torch.Tensor:
    """Loss on the full batch, backward with the distributed weight; returns the loss to log.

    ``loss_fn.counted_rows(targets)`` (pairrel.losses) is the number of rows the loss averages
    over; it is only needed on several processes, where it weights this rank's loss.
    """
    if gather is not None:
        doc_emb = gather(doc_emb)
    loss = loss_fn(query_emb, doc_emb, targets)
    if gather is None:
        loss.backward()
        return loss.detach()
    rows = loss_fn.counted_rows(targets)
    (loss * distributed.loss_weight(rows)).backward()
    return distributed.global_mean(loss, rows)


def _plans(chunks, n_queries: int, n_docs: int) -> tuple[Chunks, Chunks] | None:
    """(query chunks, doc chunks), or None when one forward per side is all it takes."""
    if chunks is None:
        return None
    if isinstance(chunks, int):
        if chunks < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunks}")
        plans = count_chunks(n_queries, chunks), count_chunks(n_docs, chunks)
    else:
        plans = tuple(chunks)
        _check_partition(plans[0], n_queries, "query")
        _check_partition(plans[1], n_docs, "document")
    return None if len(plans[0]) <= 1 and len(plans[1]) <= 1 else plans


def _in_batch_order(parts: list[torch.Tensor], chunks: Chunks) -> torch.Tensor:
    """Concatenate the chunks' rows and put them back in item order."""
    stacked = torch.cat(parts)
    order = [i for chunk in chunks for i in chunk]
    if order == list(range(len(order))):
        return stacked
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return stacked[inverse.to(stacked.device, non_blocking=True)]


def _chunk_grads(grad: torch.Tensor, chunks: Chunks) -> list[torch.Tensor]:
    """Rows of ``grad`` (item order) for each chunk, in the chunk's own order."""
    order = [i for chunk in chunks for i in chunk]
    if order != list(range(len(order))):
        grad = grad[torch.tensor(order).to(grad.device, non_blocking=True)]
    return list(torch.split(grad, [len(chunk) for chunk in chunks]))


def grad_cache_step(
    encode_queries: Encode,
    encode_docs: Encode,
    queries: Sequence[Any],
    docs: Sequence[Any],
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    chunks: int | tuple[Chunks, Chunks] | None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    no_sync: Callable[[], ContextManager] | None = None,
) -> torch.Tensor:
    """Forward and backward of one training step; returns the (detached) loss, as a tensor.

    Args:
        encode_queries / encode_docs: items → embeddings [n, d] (e.g. ``lambda t:
            encoder.encode(t, instruction)`` on texts), with gradients into the encoder
            parameters. Items are whatever the encoders take (texts, or rows of a batch
            tokenized once).
        queries, docs: this process's items; targets: [len(queries), D] over the documents
            after ``gather`` (all ranks' documents in rank order), else [len(queries), len(docs)].
        loss_fn: ``loss(query_emb, doc_emb, targets) -> scalar`` (pairrel.losses).
        chunks: None = plain forward + backward; an int = that many items per chunk in arrival
            order; or (query chunks, doc chunks), each a partition of the item indices
            (:func:`token_chunks`). One chunk per side is the plain forward + backward.
        gather: ``distributed.all_gather_with_grad`` when training on several processes: the
            loss is then weighted so that DDP's gradient average equals the gradient of the
            loss on the concatenated batch, and the returned loss is that global loss
            (``pairrel.distributed``). Parameters of ``loss_fn`` still need
            ``distributed.average_gradients`` unless DDP wraps them.
        no_sync: DDP's ``model.no_sync`` (or accelerate's equivalent): the chunk backwards but
            the last run inside it, so gradients are all-reduced once per step, not per chunk.

    Gradients accumulate into ``.grad`` (zero them before, step the optimiser after). Nothing
    is read back to the host, so the caller decides when to wait for the device (``float``).
    """
    queries, docs = list(queries), list(docs)
    plans = _plans(chunks, len(queries), len(docs))
    if plans is None:
        return _loss_and_backward(loss_fn, encode_queries(queries), encode_docs(docs), targets, gather)

    # 1. embeddings without a graph, with the RNG state each chunk started from
    replay = []  # (encode, items, rng state)
    embedded = []
    for encode, items, plan in ((encode_queries, queries, plans[0]), (encode_docs, docs, plans[1])):
        parts = []
        for chunk in plan:
            chunk_items = [items[i] for i in chunk]
            state = _rng_state()
            with torch.no_grad():
                parts.append(encode(chunk_items))
            replay.append((encode, chunk_items, state))
        embedded.append(_in_batch_order(parts, plan).requires_grad_())

    # 2. loss and ∂L/∂embeddings on the full batch (loss parameters get their gradient here)
    query_emb, doc_emb = embedded
    loss = _loss_and_backward(loss_fn, query_emb, doc_emb, targets, gather)
    grads = _chunk_grads(query_emb.grad, plans[0]) + _chunk_grads(doc_emb.grad, plans[1])

    # 3. re-embed each chunk with a graph (same dropout) and push its gradient through
    after = _rng_state()
    for index, ((encode, chunk_items, state), grad) in enumerate(zip(replay, grads)):
        last = index == len(replay) - 1
        with no_sync() if no_sync is not None and not last else nullcontext():
            _set_rng_state(state)
            encode(chunk_items).backward(grad)
    _set_rng_state(after)  # leave the RNG where the graph-free pass left it
    return loss


def chunks_from_config(training: dict, query_lengths: Sequence[int], doc_lengths: Sequence[int]) -> int | tuple[Chunks, Chunks] | None:
    """The ``chunks`` argument of :func:`grad_cache_step` from a run's ``training`` section.

    ``training.gradcache_tokens`` (padded tokens per forward, :func:`token_chunks` on the texts'
    token counts) or the older ``training.gradcache_chunk`` (texts per forward in arrival
    order); both null: no GradCache. Setting both is an error naming the keys.
    """
    tokens, count = training.get("gradcache_tokens"), training.get("gradcache_chunk")
    if tokens is not None and count is not None:
        raise ValueError(
            f"training.gradcache_tokens ({tokens}) and training.gradcache_chunk ({count}) are both set: "
            "keep training.gradcache_tokens and set training.gradcache_chunk to null (it is the older, "
            "fixed-count chunking)"
        )
    if tokens is not None:
        return token_chunks(query_lengths, int(tokens)), token_chunks(doc_lengths, int(tokens))
    return None if count is None else int(count)
