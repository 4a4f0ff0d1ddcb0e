"""The files behind one training source: a plain source is its own single part; a *pooled*
source (``parts:``) is several JSONL files, each with its own instruction and symmetric flag,
batched as one dataset.

Pooling is how LLM2Vec treats the two halves of a split dataset (``allnli_split1`` +
``allnli_split2``, ``quora_duplicates_split1`` + ``quora_duplicates_split2``): its loader
(``llm2vec/dataset/E5Data.py``) renames both to one dataset before shuffling and cutting full
batches, so one batch mixes the halves and with them two instructions. Each module that needs a
source's files, instructions or origins asks :func:`source_parts` rather than reading ``jsonl``
or ``instruction`` off the source itself.
"""

from __future__ import annotations

# Keys that describe one file and how its texts are instructed: a plain source's own (dataset or
# jsonl), a pooled source's parts' (jsonl only). weight and max_queries belong to the source.
PART_KEYS = ("jsonl", "dataset", "instruction", "symmetric", "origin")


def is_pooled(source: dict) -> bool:
    """True when the source pools several JSONL parts into one dataset."""
    return "parts" in source


def source_parts(name: str, source: dict) -> dict[str, dict]:
    """``{part name: {jsonl or dataset, instruction, symmetric, origin}}`` of a configured source.

    A plain source gives ``{name: its own keys}``; a pooled source its ``parts`` in config order.
    """
    if is_pooled(source):
        return {part: {"symmetric": False, **spec} for part, spec in source["parts"].items()}
    return {name: {key: source[key] for key in PART_KEYS if key in source}}
