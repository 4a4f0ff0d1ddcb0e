"""The mteb model wrapper: a pairrel :class:`~pairrel.encoder.Encoder` as an mteb ``AbsEncoder``.

Every text goes through :meth:`Encoder.embed` (sorted by length, batched by count or token
budget, input order restored). Which instruction a text gets, how it is joined and whether it is
cut by words first is the evaluation protocol's (:mod:`pairrel.evaluate.protocol`: LLM2Vec's
instruction table, or mteb's task prompts): the instruction goes on the query side of asymmetric
tasks (retrieval, reranking) and on both sides of symmetric ones; documents never get one, and
mteb's generic fallback prompts are never used.

Embeddings already computed are reused, from one of two stores with the same interface
(``lookup(instruction, texts) -> (found mask, embeddings)``, ``add(instruction, texts,
embeddings)``, ``piece_size``):

- :class:`EmbeddingCache` (default): in memory, bounded; pair tasks repeat each query once per
  judged passage, and several tasks share texts.
- :class:`~pairrel.evaluate.shards.ShardStore`: on disk, written a shard at a time, so a killed
  job resumes and a corpus shared by tasks is encoded once per checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from pairrel.encoder import Encoder
from pairrel.evaluate.protocol import Protocol, load_protocol
from pairrel.evaluate.shards import ShardStore


class EmbeddingCache:
    """Embeddings by (instruction, text) in memory, so a text repeated within or across tasks is
    encoded once. Cleared when it would pass ``max_bytes``, which bounds memory on large
    benchmarks (a corpus larger than the whole cache is not kept at all)."""

    piece_size = None  # everything missing is encoded in one embed() call

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.n_bytes = 0
        self._rows: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, instruction: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, embeddings)``: a mask over ``texts`` and the found rows, in order."""
        rows = [self._rows.get((instruction, text)) for text in texts]
        found = np.array([row is not None for row in rows], dtype=bool)
        hits = [row for row in rows if row is not None]
        return found, (np.stack(hits) if hits else None)

    def add(self, instruction: str, texts: list[str], embeddings: np.ndarray) -> None:
        if embeddings.nbytes > self.max_bytes:
            return  # larger than the whole cache: keep what is there
        if self.n_bytes + embeddings.nbytes > self.max_bytes:
            self._rows.clear()
            self.n_bytes = 0
        for text, row in zip(texts, embeddings):
            self._rows[(instruction, text)] = row
        self.n_bytes += embeddings.nbytes

    def release(self) -> int:
        """Nothing on disk to delete (the same call as :meth:`ShardStore.release`)."""
        return 0


def model_meta(encoder: Encoder, name: str, revision: str, experiment_kwargs: dict | None) -> ModelMeta:
    """mteb's description of the model: cosine similarity, instructions, the run's grid values."""
    return ModelMeta.create_empty(
        {
            "name": name,
            "revision": revision,
            "languages": ["eng-Latn"],
            "framework": ["PyTorch"],
            "similarity_fn_name": ScoringFunction.COSINE,
            "use_instructions": True,
            "experiment_kwargs": experiment_kwargs or None,
            "max_tokens": encoder.config.max_length,
            "open_weights": True,
        }
    )


class PairrelModel(AbsEncoder):
    """A pairrel encoder as an mteb model with the given name, revision and experiment kwargs.

    ``batch_size`` / ``max_batch_tokens`` are passed to :meth:`Encoder.embed`; ``shards`` (a
    :class:`ShardStore`) keeps embeddings on disk instead of in memory. ``protocol`` (default:
    mteb's prompts) picks each text's instruction and sets the encoder's join format and word
    truncation (the encoder's config is replaced accordingly, so its identity records them).
    """

    def __init__(
        self,
        encoder: Encoder,
        name: str,
        revision: str,
        experiment_kwargs: dict | None = None,
        *,
        batch_size: int | None = 64,
        max_batch_tokens: int | None = None,
        shards: ShardStore | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        self.protocol = protocol or load_protocol("mteb")
        encoder.config = replace(encoder.config, **self.protocol.encoder_settings())
        self.model = encoder
        self.mteb_model_meta = model_meta(encoder, name, revision, experiment_kwargs)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.cache: EmbeddingCache | ShardStore = shards if shards is not None else EmbeddingCache()

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        instruction = self.protocol.instruction(task_metadata, prompt_type)
        texts = [text for batch in inputs for text in batch["text"]]
        if not texts:
            return np.zeros((0, self.model.embedding_dim), dtype=np.float32)
        return self.embed(texts, instruction)

    def embed(self, texts: list[str], instruction: str) -> np.ndarray:
        """Embeddings of ``texts`` (float32 ``[n, d]``, in order), each distinct text computed at most once."""
        unique = list(dict.fromkeys(texts))
        found, hits = self.cache.lookup(instruction, unique)
        table = np.empty((len(unique), self.model.embedding_dim), dtype=np.float32)
        if hits is not None:
            table[found] = hits
        todo = np.flatnonzero(~found)
        step = self.cache.piece_size or max(len(todo), 1)
        for start in range(0, len(todo), step):
            rows = todo[start : start + step]
            piece = [unique[i] for i in rows]
            emb = self.model.embed(piece, instruction, self.batch_size, self.max_batch_tokens).numpy()
            table[rows] = emb
            # After filling the table: storing may clear the in-memory cache (its memory bound).
            self.cache.add(instruction, piece, emb)
        position = {text: i for i, text in enumerate(unique)}
        return table[[position[text] for text in texts]]


def mteb_model(
    encoder: Encoder,
    name: str,
    revision: str,
    experiment_kwargs: dict | None,
    batch_size: int | None = 64,
    max_batch_tokens: int | None = None,
    shards: ShardStore | None = None,
    protocol: Protocol | None = None,
) -> PairrelModel:
    """Wrap ``encoder`` as an mteb model (a :class:`PairrelModel`)."""
    return PairrelModel(
        encoder, name, revision, experiment_kwargs,
        batch_size=batch_size, max_batch_tokens=max_batch_tokens, shards=shards, protocol=protocol,
    )


def evaluate_model(model: PairrelModel, tasks: list, cache_dir: str | Path) -> dict[str, float]:
    """``mteb.evaluate`` into mteb's result cache at ``cache_dir``; returns ``{task: main score}``
    (mteb's 0–1 scale). Completed results are read, never recomputed (``only-missing``).

    Once every task has its result file, the model's on-disk shards are deleted (unless the
    store keeps them); after a failure they stay, so a rerun resumes from them.
    """
    import mteb

    results = mteb.evaluate(model, tasks, cache=mteb.ResultCache(str(cache_dir)), overwrite_strategy="only-missing")
    scores = {r.task_name: float(r.get_score()) for r in results.task_results}
    if set(scores) >= {task.metadata.name for task in tasks}:
        model.cache.release()
    return scores

