"""A sentence-transformers input module that embeds texts exactly as pairrel's encoder does.

``pairrel export --merge`` copies this file into the exported folder (as ``pairrel_text_pooling.py``)
and names its class in ``modules.json``, so the folder loads without pairrel::

    SentenceTransformer(DIR, trust_remote_code=True)

It imports only sentence-transformers (>= 6: prompts reach the input module separately).

pairrel's pooling: a text is wrapped as ``template prefix + prompt + text + template suffix``
(a query's prompt is ``"{instruction}; "``); every token is attended to, but the mean is taken
only over the tokens whose character span does not end inside ``prefix + prompt``; tokens the
tokenizer adds itself ([CLS]/BOS, [SEP]/EOS: empty spans) are pooled. Decoder models pool as
LLM2Vec does (``decoder_pooling``): the last n tokens, n = the tokens of text + template suffix
tokenised alone, so never the BOS. sentence-transformers'
own ``Pooling(include_prompt=False)`` also drops the leading [CLS]/BOS, which moves instructed
queries off pairrel's embeddings (cosine about 0.99 for all-MiniLM-L6-v2), and it knows no
template. So this module hands the standard ``Pooling`` a mask of exactly the pooled tokens.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers.base.modules.transformer import Transformer


class TextTokenTransformer(Transformer):
    """A ``Transformer`` whose features' ``attention_mask`` marks, after the forward pass, only
    the text's own tokens (prompt and template excluded), so mean ``Pooling`` averages those."""

    def __init__(self, *args: Any, text_template: str = "{text}", decoder_pooling: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "{text}" not in text_template:
            raise ValueError(f"text_template must contain '{{text}}', got {text_template!r}")
        self.text_template = text_template
        self.decoder_pooling = decoder_pooling

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "text_template": self.text_template,
                "decoder_pooling": self.decoder_pooling}

    def preprocess(self, inputs, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if not inputs or not all(isinstance(text, str) for text in inputs):
            return super().preprocess(inputs, prompt=prompt, **kwargs)
        prefix, _, suffix = self.text_template.partition("{text}")
        lead = prefix + (prompt or "")
        batch = self.tokenizer(
            [lead + text + suffix for text in inputs],
            return_token_type_ids=False,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = batch.pop("offset_mapping")
        features = dict(batch)
        if self.decoder_pooling:
            alone = self.tokenizer([text + suffix for text in inputs], add_special_tokens=False, truncation=True,
                                   max_length=self.max_seq_length)["input_ids"]
            mask = batch["attention_mask"].clone().zero_()
            for row, ids in enumerate(alone):
                attended = batch["attention_mask"][row].nonzero().squeeze(-1)
                if ids:
                    mask[row, attended[-len(ids):]] = 1
            features["text_token_mask"] = mask
        else:
            inside_lead = (offsets[..., 1] > 0) & (offsets[..., 1] <= len(lead))
            features["text_token_mask"] = batch["attention_mask"] * (~inside_lead).long()
        features["modality"] = "text"
        return features

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        text_token_mask = features.pop("text_token_mask", None)
        features = super().forward(features, **kwargs)
        if text_token_mask is not None:
            # Attention used the full mask above; pooling reads this one.
            features["attention_mask"] = text_token_mask
        return features
