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
    on each text's slice of the packed queries, keys and values -- attention costs the sum of
    the texts' L^2 and no mask is built; everything else (projections, MLP, norms) runs on the
    T real tokens only. Runs on every device (on a GPU each text is one small kernel launch
    per layer). Padded calls of such a model (no text bounds) get transformers' own SDPA path.
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
BOUNDS_KWARG = "pairrel_text_bounds"  # forward kwarg: ((start, end) of each text in the packed row)


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
    entirely away) gets a zero vector, not NaN.
    """
    weights = packed.pool.to(hidden.dtype)
    sums = hidden.new_zeros((packed.n_texts, hidden.shape[-1])).index_add(0, packed.segments, hidden * weights[:, None])
    counts = hidden.new_zeros(packed.n_texts).index_add(0, packed.segments, weights)
    return sums / counts.clamp(min=1.0)[:, None]


def packed_forward(model: torch.nn.Module, mode: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   pool_mask: torch.Tensor) -> torch.Tensor:
    """Embeddings ``[B, d]`` of a padded batch, computed packed (``mode``: ``mask`` or ``flex``)."""
    packed = pack(input_ids, attention_mask, pool_mask)
    if mode == "varlen":
        ends = torch.cumsum(torch.bincount(packed.segments.cpu(), minlength=packed.n_texts), 0).tolist()
        bounds = tuple((start, end) for start, end in zip([0, *ends[:-1]], ends) if end > start)
        hidden = model(input_ids=packed.input_ids, position_ids=packed.position_ids, **{BOUNDS_KWARG: bounds}).last_hidden_state
        return pool_per_text(hidden[0], packed)
    if mode == "flex":
        mask = flex_block_mask(packed.segments)
    elif mode == "mask":
        mask = block_diagonal_mask(packed.segments, _compute_dtype(model))
    else:
        raise ValueError(f"packing mode {mode!r}: expected one of {', '.join(PACKING_MODES)}")
    hidden = model(input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids).last_hidden_state
    return pool_per_text(hidden[0], packed)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Bidirectional attention of each text with itself, for transformers' attention layers.

    ``query`` ``[1, H, T, D]``, ``key``/``value`` ``[1, H_kv, T, D]`` (grouped-query heads are
    shared by ``enable_gqa``); ``kwargs[BOUNDS_KWARG]`` holds each text's ``(start, end)``. Returns
    ``([1, T, H, D], None)`` as transformers' attention functions do. Without bounds (a padded
    call) it is transformers' SDPA attention, bidirectional (pairrel's encoders all are).
    """
    import torch.nn.functional as F

    bounds = kwargs.pop(BOUNDS_KWARG, None)
    if bounds is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        kwargs.pop("is_causal", None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=False, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    parts = [F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                            dropout_p=dropout, scale=scaling, enable_gqa=gqa)
             for start, end in bounds]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


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
