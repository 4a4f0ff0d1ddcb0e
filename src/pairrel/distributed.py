"""Cross-process pieces of the loss: gather documents with gradients, and scale so that the
distributed gradient equals the single-process gradient on the concatenated batch.

Layout per step with R ranks (``shard`` gives each rank a contiguous slice):
  rank r holds its queries q_r [Q_r, d], its documents d_r [D_r, d], and the rows of the
  targets for its queries over *all* documents, ``targets[shard(Q)]`` [Q_r, D] (columns in the
  global order, which is the rank order of the gathered slices).
Each rank computes ℓ_r = loss(q_r, all_gather_with_grad(d_r), targets_r): a mean over its
n_r counted rows (n_r = ``loss_fn.counted_rows(targets_r)``: Q_r for BCE, rows with a positive
for softmax — a pure function of the rank's targets).

The single-process loss on the concatenated batch is L = Σ_r n_r ℓ_r / N with N = Σ_r n_r.

Gradients. ``all_gather_with_grad``'s backward sums the incoming gradients over ranks and
returns each rank its own slice, so rank s receives Σ_r ∂(loss of rank r)/∂d_s: the gradient
through every rank's use of its documents, not only its own. DDP then *averages* parameter
gradients over ranks (divides by R). Hence each rank must backpropagate

    R · (n_r / N) · ℓ_r      (``loss_weight(n_r) * ℓ_r``),

giving (1/R) Σ_r R (n_r/N) ∇ℓ_r = ∇L. With equal rows per rank this is just ℓ_r. Parameters
outside the DDP module (the BCE loss's t′ and b) need the same averaging:
``average_gradients(loss_fn.parameters())`` after backward. ``global_mean`` gives L for logging.

In a training step (every rank builds the same global batch from the same SourceBatcher seed)::

    qs, ds = shard(len(batch.queries)), shard(len(batch.docs))
    gather = functools.partial(all_gather_with_grad, sizes=shard_sizes(len(batch.docs)))
    loss = grad_cache_step(encode_q, encode_d, batch.queries[qs], batch.docs[ds],
                           batch.targets[qs], loss_fn, chunks, gather=gather,
                           no_sync=ddp_model.no_sync)   # weights the loss, returns L
    average_gradients(loss_fn.parameters())

No value is read back to the host here: row counts, weights and the global loss stay tensors
(collectives are queued on the device stream), so a step never waits for the device.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def shard(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """Contiguous slice of ``range(n)`` for a rank; the first ``n % world`` ranks get one more."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))


def shard_sizes(n: int, world: int | None = None) -> list[int]:
    """Rows each rank holds of ``n`` under :func:`shard`, in rank order."""
    world = world_size() if world is None else world
    return [len(range(n)[shard(n, r, world)]) for r in range(world)]


def _comm_device(like: torch.Tensor | None = None) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU tensors.
    if like is not None:
        return like.device
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _as_tensor(value: int | float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """float64 0-dim tensor on ``device``; a tensor is moved without waiting for the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=torch.float64, non_blocking=True).reshape(())
    return torch.full((), float(value), dtype=torch.float64, device=device)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's rows (ranks may hold different numbers of rows).
    Backward: sum the gradient over ranks and return this rank's slice of it."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int] | None) -> torch.Tensor:
        world, me = dist.get_world_size(), dist.get_rank()
        if sizes is None:  # ask every rank (reads the counts back to the host: a device sync)
            count = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
            counts = [torch.zeros_like(count) for _ in range(world)]
            dist.all_gather(counts, count)
            sizes = [int(c.item()) for c in counts]
        elif len(sizes) != world or sizes[me] != local.shape[0]:
            raise ValueError(f"rank {me}: sizes {sizes} do not match {world} ranks holding {local.shape[0]} rows here")
        # all_gather needs equal shapes: pad to the largest slice, then cut the padding off.
        padded = local.new_zeros((max(sizes), *local.shape[1:]))
        padded[: local.shape[0]] = local
        pieces = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(pieces, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, me
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Rows of every rank concatenated in rank order; identity outside torch.distributed.

    Gradients flow back to each rank's own rows, summed over every rank's loss (module
    docstring). Every rank must call it, and later call backward, in the same order.
    ``sizes``: rows per rank when known in advance (``shard_sizes``), which saves gathering the
    counts and reading them back to the host.
    """
    if not is_distributed() or world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor, sizes)


def loss_weight(rows_local: int | torch.Tensor) -> float | torch.Tensor:
    """R · n_r / N: multiply the local mean loss by this before backward (module docstring).

    1.0 outside torch.distributed; else a float64 0-dim tensor (1 where N = 0, all rows of every
    rank left out, whose loss is 0 anyway), computed without reading anything back to the host.
    """
    if not is_distributed():
        return 1.0
    local = _as_tensor(rows_local, _comm_device())
    total = local.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return torch.where(total > 0, world_size() * local / total.clamp_min(1), torch.ones_like(total))


def global_mean(local_loss: torch.Tensor, rows_local: int | torch.Tensor) -> torch.Tensor:
    """L = Σ_r n_r ℓ_r / Σ_r n_r (detached), the loss of the concatenated batch, on every rank."""
    if not is_distributed():
        return local_loss.detach()
    device = _comm_device(local_loss)
    rows = _as_tensor(rows_local, device)
    packed = torch.stack([local_loss.detach().double() * rows, rows])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    mean = torch.where(packed[1] > 0, packed[0] / packed[1].clamp_min(1), packed[0] * 0)
    return mean.to(local_loss.dtype)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks, as DDP does for the parameters it wraps."""
    if not is_distributed():
        return
    world = world_size()
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world
