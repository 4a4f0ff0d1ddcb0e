"""Evaluate a checkpoint (or the untrained base model) on MTEB tasks with ``mteb.evaluate``.

Results go to MTEB's own result cache under ``results/{experiment}/mteb/``: the base model at
``results/pairrel__<model>/base/<Task>.json``, a trained checkpoint at
``results/pairrel__<model>/lora/experiments/<kwargs>/<Task>.json`` with the run's grid values and
step as ``ModelMeta.experiment_kwargs``, so mteb's ``ResultCache`` loads them and published results
can sit beside them. ``overwrite_strategy="only-missing"``: completed results are never recomputed.

Instructions follow LLM2Vec: the task's instruction goes on the query side of asymmetric tasks
(retrieval, reranking) and on both sides of symmetric ones; documents never get one.
"""

from __future__ import annotations

import numpy as np
import torch

from pairrel.encoder import Encoder

# Task types where both texts of a pair play the query role.
_SYMMETRIC_TYPES = {"STS", "Classification", "Clustering", "PairClassification", "Summarization", "BitextMining"}


def _instruction(task_metadata, prompt_type) -> str:
    """The task's own instruction for this side, or "" (never mteb's generic fallback)."""
    prompt = task_metadata.prompt
    side = prompt_type.value if prompt_type is not None else None
    if isinstance(prompt, dict):
        if side == "document":
            return ""
        return prompt.get(side or "query", "") or ""
    if side == "document":
        return ""
    if side == "query" or task_metadata.type in _SYMMETRIC_TYPES:
        return prompt or ""
    return ""


class EmbeddingCache(dict):
    """Embeddings by (instruction, text), so a text repeated within or across tasks is encoded
    once (pair tasks repeat each query once per judged passage). Cleared when it would pass
    ``max_bytes``, which bounds memory on large benchmarks."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.n_bytes = 0

    def update(self, instruction: str, texts: list[str], embeddings: np.ndarray) -> None:
        if embeddings.nbytes > self.max_bytes:
            return  # larger than the whole cache: keep what is there
        if self.n_bytes + embeddings.nbytes > self.max_bytes:
            self.clear()
            self.n_bytes = 0
        for text, row in zip(texts, embeddings):
            self[(instruction, text)] = row
        self.n_bytes += embeddings.nbytes


def mteb_model(encoder: Encoder, name: str, revision: str, experiment_kwargs: dict | None, batch_size: int = 64):
    """Wrap ``encoder`` as an mteb model with the given name, revision and experiment kwargs."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    meta = ModelMeta.create_empty(
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

    class PairrelEncoder(AbsEncoder):
        mteb_model_meta = meta

        def __init__(self) -> None:
            self.model = encoder
            self.cache = EmbeddingCache()

        @torch.inference_mode()
        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
            instruction = _instruction(task_metadata, prompt_type)
            texts = [text for batch in inputs for text in batch["text"]]
            todo = list(dict.fromkeys(t for t in texts if (instruction, t) not in self.cache))
            fresh: dict[str, np.ndarray] = {}
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                emb = encoder.encode(chunk, instruction=instruction).float().cpu().numpy()
                fresh.update(zip(chunk, emb))
            if not texts:
                return np.zeros((0, 1), dtype=np.float32)
            # Assemble before caching: storing may clear the cache (memory bound).
            result = np.stack([fresh[t] if t in fresh else self.cache[(instruction, t)] for t in texts])
            if fresh:
                self.cache.update(instruction, list(fresh), np.stack(list(fresh.values())))
            return result

    return PairrelEncoder()


def select_tasks(
    benchmark: str,
    task_type: str | None = None,
    task_names: list[str] | None = None,
    local_dataset: str | None = None,
    local_instruction: str = "",
) -> list:
    """Tasks of a benchmark (or the local quickstart tasks), optionally one type or named ones."""
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK

    if benchmark == QUICKSTART_BENCHMARK:
        if not local_dataset:
            raise ValueError(f"benchmark '{benchmark}' needs config key 'evaluation.local_dataset'")
        from pairrel.evaluate.local_tasks import local_tasks

        tasks = local_tasks(local_dataset, instruction=local_instruction)
    else:
        import mteb

        tasks = list(mteb.get_benchmark(benchmark).tasks)
    if task_names:
        unknown = set(task_names) - {t.metadata.name for t in tasks}
        if unknown:
            raise ValueError(f"config key 'evaluation.tasks': not in {benchmark}: {', '.join(sorted(unknown))}")
        tasks = [t for t in tasks if t.metadata.name in task_names]
    if task_type and task_type not in ("local", "all"):
        tasks = [t for t in tasks if t.metadata.type == task_type]
    return tasks


def heldout_tasks(cfg: dict, data_names: list[str], prepared_root) -> list:
    """One reranking task per K-fold source of these data mixes: the run's held-out fold.

    The fold's test queries come from ``{prepared_root}/{data}/{source}.folds.json``, written
    when the source was prepared, so evaluation sees exactly the queries training left out.
    """
    import json
    from pathlib import Path

    from pairrel.evaluate.local_tasks import heldout_task

    tasks = []
    for data_name in data_names:
        for source, spec in cfg["data"][data_name]["sources"].items():
            if "folds" not in spec:
                continue
            folds_path = Path(prepared_root) / data_name / f"{source}.folds.json"
            if not folds_path.exists():
                raise FileNotFoundError(f"{folds_path}: fold split of source '{source}' missing (prepare the data first)")
            split = json.loads(folds_path.read_text())
            fold = int(spec.get("fold", 0))
            test_ids = next(f["test"] for f in split["folds"] if int(f["fold"]) == fold)
            tasks.append(heldout_task(spec["dataset"], test_ids, source, fold, spec.get("instruction", "")))
    return tasks


def evaluate(encoder: Encoder, tasks: list, cache_dir, name: str, revision: str, experiment_kwargs: dict | None, batch_size: int = 64) -> dict[str, float]:
    """Run ``mteb.evaluate`` and return ``{task: main score}`` (on mteb's 0–1 scale)."""
    import mteb

    model = mteb_model(encoder, name, revision, experiment_kwargs, batch_size)
    results = mteb.evaluate(model, tasks, cache=mteb.ResultCache(str(cache_dir)), overwrite_strategy="only-missing")
    return {r.task_name: float(r.get_score()) for r in results.task_results}
