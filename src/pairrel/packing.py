"""Padding-free encoding: a batch's texts packed into one sequence, each text attending to itself.

A padded batch of B texts, the longest L tokens, runs B x L positions through the model; a packed
one runs only the T = sum of the texts' lengths. The texts are laid end to end as one row
``[1, T]``, and three things keep each text's vector what it is in the padded batch:

* **attention**: block-diagonal and bidirectional -- token q may attend to token k iff both belong
  to the same text (``segment[q] == segment[k]``), so no text sees another;
* **positions**: restart at 0 for every text (``position_ids``), so BERT's absolute position
  embeddings and Llama's rotary ones see the positions the padded path gives (RoPE depends only
  on position differences, so a left-padded Llama text, whose padded positions start later,
  gets the same attention scores up to rounding);
* **pooling**: per text, the mean of its hidden states weighted by the tokeniser's pool mask
  (``sum_t w_t h_t / max(1, sum_t w_t)`` over the text's tokens t), exactly as
  :meth:`pairrel.encoder.Encoder.forward` pools a padded row.

The pool mask is the one the tokeniser produced (instruction, template and special-token rules
live in :mod:`pairrel.encoder`); packing never recomputes it, it only drops the padding columns.

Three ways to give the model the block-diagonal attention (``models.X.packing``):

``varlen``
    per-text attention: the backbone's attention becomes :func:`varlen_attention` (registered
    with transformers' ``AttentionInterface`` as ``pairrel_varlen``), which runs PyTorch's SDPA
    on the packed queries, keys and values of the texts, one batched call per distinct text
    length -- attention costs the sum of the texts' L^2 and no mask is built; everything else
    (projections, MLP, norms) runs on the T real tokens only. Runs on every device. Padded
    calls of such a model (no text groups) get transformers' own SDPA path.
``mask``
    a 4D additive float mask ``[1, 1, T, T]`` (0 inside a text's block, the dtype's minimum
    elsewhere). transformers 5.x passes a 4D mask through unchanged (``masking_utils``:
    "If the mask is already 4D, simply return as-is") to the eager and SDPA attention of both
    BertModel and LlamaModel. It runs on every device and is the reference; it costs T^2 mask
    entries (a 16,384-token chunk: 0.5 GB in bf16), and SDPA with a mask cannot use the flash kernel.
``flex``
    a FlexAttention ``BlockMask`` (``torch.nn.attention.flex_attention.create_block_mask``) with
    the model's ``attn_implementation = "flex_attention"``: blocks (128 x 128 tokens) that lie
    wholly outside every text are skipped, so attention costs about sum of the texts' L^2, not T^2.
    It is the path for CUDA: transformers compiles FlexAttention, and on a CPU torch 2.13's
    inductor fails to build the kernel, so ``flex`` without CUDA is refused (use ``mask``).

``none`` (the default) keeps today's padded path, which stays the fallback and the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pairrel.config import ConfigError

PACKING_MODES = ("none", "varlen", "mask", "flex")
VARLEN_ATTENTION = "pairrel_varlen"  # the attention implementation name of the varlen mode
GROUPS_KWARG = "pairrel_text_groups"  # forward kwarg: a LengthGroups of the packed row


@dataclass
class Packed:
    """One packed sequence: ``input_ids``, ``position_ids`` ``[1, T]``; per token its text's
    index (``segments``) and pool weight (``pool``) ``[T]``; ``n_texts`` texts."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor
    pool: torch.Tensor
    n_texts: int


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> Packed:
    """Pack a padded batch ``[B, L]`` (either padding side): the real tokens of row 0, then row 1, ...

    A text's positions count its real tokens from 0, whatever side its padding is on.
    """
    keep = attention_mask.bool()
    lengths = keep.sum(dim=1)
    positions = (keep.long().cumsum(dim=1) - 1)[keep]
    segments = torch.repeat_interleave(torch.arange(len(lengths), device=input_ids.device), lengths)
    return Packed(input_ids[keep].unsqueeze(0), positions.unsqueeze(0), segments, pool_mask[keep], len(lengths))


def block_diagonal_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[1, 1, T, T]`` additive mask: 0 where query and key tokens share a text, else the minimum."""
    same = segments.unsqueeze(0) == segments.unsqueeze(1)
    mask = torch.zeros(same.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill_(~same, torch.finfo(dtype).min)[None, None]


def flex_block_mask(segments: torch.Tensor):
    """A FlexAttention ``BlockMask`` for one packed row: token q attends to k iff same text."""
    from torch.nn.attention.flex_attention import create_block_mask

    def same_text(batch, head, q, k):
        return segments[q] == segments[k]

    n = segments.numel()
    return create_block_mask(same_text, B=None, H=None, Q_LEN=n, KV_LEN=n, device=segments.device)


def pool_per_text(hidden: torch.Tensor, packed: Packed) -> torch.Tensor:
    """``[n_texts, d]``: each text's pool-weighted mean hidden state (``hidden``: ``[T, d]``).

    The same formula as the padded path's masked mean; a text with no pooled token (truncated
    entirely away) gets a zero vector, not NaN. Sums are accumulated in float32 (``index_add``
    adds one token at a time; bf16 would round at every step), the result has ``hidden``'s dtype.
    """
    weights = packed.pool.to(torch.float32)
    sums = torch.zeros((packed.n_texts, hidden.shape[-1]), dtype=torch.float32, device=hidden.device)
    sums = sums.index_add(0, packed.segments, hidden.float() * weights[:, None])
    counts = torch.zeros(packed.n_texts, dtype=torch.float32, device=hidden.device).index_add(0, packed.segments, weights)
    return (sums / counts.clamp(min=1.0)[:, None]).to(hidden.dtype)


def packed_forward(model: torch.nn.Module, mode: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   pool_mask: torch.Tensor) -> torch.Tensor:
    """Embeddings ``[B, d]`` of a padded batch, computed packed (``mode``: ``varlen``, ``mask`` or ``flex``)."""
    packed = pack(input_ids, attention_mask, pool_mask)
    if mode == "varlen":
        groups = length_groups(attention_mask.sum(dim=1).tolist(), input_ids.device)
        hidden = model(input_ids=packed.input_ids, position_ids=packed.position_ids, **{GROUPS_KWARG: groups}).last_hidden_state
        return pool_per_text(hidden[0], packed)
    if mode == "flex":
        mask = flex_block_mask(packed.segments)
    elif mode == "mask":
        mask = block_diagonal_mask(packed.segments, _compute_dtype(model))
    else:
        raise ValueError(f"packing mode {mode!r}: expected one of {', '.join(PACKING_MODES)}")
    hidden = model(input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids).last_hidden_state
    return pool_per_text(hidden[0], packed)


@dataclass
class LengthGroups:
    """The texts of a packed row grouped by length, for one batched SDPA call per length.

    ``groups``: ``(L, n, index)`` -- n texts of L tokens, ``index`` their n x L token positions
    in the row, text after text; ``inverse``: the permutation that puts the groups' tokens,
    concatenated in group order, back in row order.
    """

    groups: list[tuple[int, int, torch.Tensor]]
    inverse: torch.Tensor


def length_groups(lengths: list[int], device: torch.device | str) -> LengthGroups:
    """:class:`LengthGroups` of texts of ``lengths`` laid end to end (zero-length texts dropped)."""
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        if n:
            by_length.setdefault(n, []).append(i)
    groups, order = [], []
    for n, texts in by_length.items():
        index = [starts[i] + t for i in texts for t in range(n)]
        order += index
        groups.append((n, len(texts), torch.tensor(index, dtype=torch.long, device=device)))
    inverse = torch.argsort(torch.tensor(order, dtype=torch.long)).to(device)
    return LengthGroups(groups, inverse)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Bidirectional attention of each text with itself, for transformers' attention layers.

    ``query`` ``[1, H, T, D]``, ``key``/``value`` ``[1, H_kv, T, D]`` (grouped-query heads are
    shared by ``enable_gqa``); ``kwargs[GROUPS_KWARG]`` the row's :class:`LengthGroups`: the n
    texts of each length L are gathered into one ``[n, H, L, D]`` SDPA call (no mask, no
    padding), and the outputs put back in row order. Returns ``([1, T, H, D], None)`` as
    transformers' attention functions do. Without groups (a padded call) it is transformers'
    SDPA attention, bidirectional (pairrel's encoders all are).
    """
    import torch.nn.functional as F

    row: LengthGroups | None = kwargs.pop(GROUPS_KWARG, None)
    if row is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        kwargs.pop("is_causal", None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=False, **kwargs)
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]

    def gather(x: torch.Tensor, h: int, index: torch.Tensor, n: int, length: int) -> torch.Tensor:
        return x[0].index_select(1, index).view(h, n, length, dim).transpose(0, 1)  # [n, h, L, D]

    parts = []
    for length, n, index in row.groups:
        out = F.scaled_dot_product_attention(gather(query, heads, index, n, length), gather(key, kv_heads, index, n, length),
                                             gather(value, kv_heads, index, n, length), dropout_p=dropout, scale=scaling,
                                             enable_gqa=heads != kv_heads)
        parts.append(out.transpose(0, 1).reshape(heads, n * length, dim))
    merged = torch.cat(parts, dim=1).index_select(1, row.inverse)  # [H, T, D] in row order
    return merged.transpose(0, 1).unsqueeze(0).contiguous(), None


def _register_varlen() -> None:
    """Make ``pairrel_varlen`` an attention implementation transformers accepts; its padded-call
    masks are SDPA's."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    AttentionMaskInterface.register(VARLEN_ATTENTION, sdpa_mask)


def _compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype attention scores are added to the mask in (the floating weights')."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32


def prepare_backbone(model: torch.nn.Module, mode: str) -> None:
    """Switch the backbone's attention for ``varlen`` (per-text SDPA) or ``flex`` (FlexAttention);
    ``none`` and ``mask`` need nothing.

    Called before LoRA wraps the model; raises :class:`ConfigError` for an unknown mode, for
    ``flex`` without CUDA, or a model whose transformers class has no FlexAttention support.
    """
    if mode not in PACKING_MODES:
        raise ConfigError(f"config key 'models.*.packing': packing mode {mode!r}: expected one of {', '.join(PACKING_MODES)}")
    if mode == "varlen":
        _register_varlen()
        model.set_attn_implementation(VARLEN_ATTENTION)
    if mode == "flex":
        if not torch.cuda.is_available():
            # transformers compiles flex_attention; on a CPU, torch 2.13's inductor emits C++
            # that does not build (CppCompileError), so the CPU path is the 4D mask.
            raise ConfigError("config key 'models.*.packing': packing 'flex' needs a CUDA GPU (FlexAttention does not compile on this CPU); "
                             "use packing: mask")
        try:
            model.set_attn_implementation("flex_attention")
        except (ValueError, ImportError) as err:
            raise ConfigError(f"config key 'models.*.packing': packing 'flex': {type(model).__name__} cannot use FlexAttention ({err}); "
                             "use packing: mask") from None
