"""Evaluation protocols: which instruction each MTEB text gets, how it is joined and truncated.

The facts live in ``protocols.yaml`` beside this module (with their sources): ``llm2vec`` is how
LLM2Vec computed its published MTEB scores (its per-task instruction table, the format
``"{instruction}: {text}"``, texts cut to 400 tokens by words), ``mteb`` is mteb's own task
prompts in pairrel's training format ``"{instruction}; {text}"``. The config key
``evaluation.protocol`` picks one per model kind (schema default: decoders ``llm2vec``, encoders
``mteb``). Pooling is not part of a protocol: it is the model kind's (:mod:`pairrel.encoder`).

Sides, in both protocols: Retrieval and Reranking put the instruction on queries only (documents
are encoded bare); the task types in ``both_sides`` put it on every text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

# The protocol whose instructions come from each task's metadata (mteb's prompts).
TASK_METADATA = "task-metadata"


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: its name, join format, word truncation and instruction table
    (``None``: each task's mteb metadata prompt)."""

    name: str
    format: str
    doc_max_length: int | None
    instructions: dict[str, str] | None
    both_sides: frozenset[str]
    source: str | None = None

    def encoder_settings(self) -> dict[str, Any]:
        """The :class:`~pairrel.encoder.EncoderConfig` fields this protocol sets."""
        return {"instruction_format": self.format, "doc_max_length": self.doc_max_length}

    def task_instruction(self, task_metadata) -> str | dict | None:
        """The task's instruction before sides are applied: the table's entry (a subtask of an
        aggregate task such as CQADupstackRetrieval inherits the aggregate's), else the task's own
        metadata prompt (local tasks, tasks outside the table; LLM2Vec's wrapper falls back the same)."""
        if self.instructions is not None:
            name = task_metadata.name
            if name in self.instructions:
                return self.instructions[name]
            parent = _aggregate_parents(tuple(sorted(self.instructions))).get(name)
            if parent is not None:
                return self.instructions[parent]
        return task_metadata.prompt

    def instruction(self, task_metadata, prompt_type) -> str:
        """The instruction for one side (``prompt_type``: mteb's query/document, or None), or ""."""
        prompt = self.task_instruction(task_metadata)
        side = prompt_type.value if prompt_type is not None else None
        if side == "document":
            return ""
        if isinstance(prompt, dict):
            return prompt.get(side or "query", "") or ""
        if side == "query" or task_metadata.type in self.both_sides:
            return prompt or ""
        return ""

    def identity(self) -> dict[str, Any]:
        """What a result's revision records of the protocol: everything that changes vectors."""
        import hashlib
        import json

        table = json.dumps(self.instructions, sort_keys=True) if self.instructions is not None else TASK_METADATA
        return {"name": self.name, "format": self.format, "doc_max_length": self.doc_max_length,
                "instructions": hashlib.sha256(table.encode()).hexdigest()[:16], "both_sides": sorted(self.both_sides)}

    def join(self, instruction: str, text: str) -> str:
        """The text as the encoder sees it before the model's template."""
        return self.format.format(instruction=instruction, text=text) if instruction else text


@lru_cache(maxsize=1)
def _protocols_file() -> dict[str, Any]:
    return yaml.safe_load(resources.files("pairrel.evaluate").joinpath("protocols.yaml").read_text(encoding="utf-8"))


def protocol_names() -> list[str]:
    return sorted(_protocols_file()["protocols"])


@lru_cache(maxsize=None)
def load_protocol(name: str) -> Protocol:
    """The protocol ``name`` of ``protocols.yaml``."""
    data = _protocols_file()
    try:
        spec = data["protocols"][name]
    except KeyError:
        raise ValueError(f"evaluation protocol '{name}' is not one of {', '.join(protocol_names())}") from None
    table = spec["instructions"]
    return Protocol(
        name=name,
        format=spec["format"],
        doc_max_length=spec["doc_max_length"],
        instructions=None if table == TASK_METADATA else dict(table),
        both_sides=frozenset(data["both_sides"]),
        source=spec.get("source"),
    )


def protocol_for(evaluation: dict, kind: str) -> Protocol:
    """The protocol a model of ``kind`` (encoder/decoder) is evaluated with under the config's
    ``evaluation.protocol`` (one name for all models, or ``{encoder: …, decoder: …}``)."""
    chosen = evaluation["protocol"]
    return load_protocol(chosen if isinstance(chosen, str) else chosen[kind])


@lru_cache(maxsize=4)
def _aggregate_parents(names: tuple[str, ...]) -> dict[str, str]:
    """Subtask name -> aggregate task name, for the aggregate tasks among ``names``."""
    import mteb

    parents: dict[str, str] = {}
    for name in names:
        try:
            task = mteb.get_task(name)
        except (KeyError, ValueError):
            continue
        for sub in getattr(task, "tasks", []) or []:
            parents[sub.metadata.name] = name
    return parents


def sides(task) -> tuple:
    """mteb's prompt types of a task's two sides (query, document): Retrieval and Reranking
    encode queries and documents apart; other tasks pass their input prompt types (None for the
    symmetric tasks of MTEB(eng, v1), whose texts all play the query role)."""
    from mteb.types import PromptType

    if task.metadata.type in ("Retrieval", "Reranking"):
        return PromptType.query, PromptType.document
    return getattr(task, "input1_prompt_type", None), getattr(task, "input2_prompt_type", None)


def preview(protocol: Protocol, task, text: str = "TEXT") -> dict[str, str]:
    """``{"query": …, "document": …}``: what the encoder sees for ``text`` on each side of
    ``task`` (before the model's template; word truncation leaves a short text unchanged)."""
    query, document = sides(task)
    return {"query": protocol.join(protocol.instruction(task.metadata, query), text),
            "document": protocol.join(protocol.instruction(task.metadata, document), text)}
