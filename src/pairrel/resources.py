"""Job sizes for the scheduler: host memory, run time and GPUs per job, from the model, the task
group and the job's price in the cost plan.

The workflow's rules ask :meth:`pairrel.jobs.JobCatalogue.resources`, which calls
:func:`job_resources` with the job's GPU-hours;
a profile's ``set-resources`` still overrides any value. All numbers are *requests*: too small
and SLURM kills the job, too large and it waits longer in the queue, so each is an estimate
times a safety factor (``SAFETY`` = 1.5 unless the caller passes another).

Parameter count (billions), :func:`params_b`: the model's ``params_b`` config key when set,
else counted from a Llama-style Hugging Face ``config.json`` (:func:`llama_param_count`).

Host memory, :func:`mem_mb` (MiB)::

    mem = safety * (bytes_per_param(dtype) * params + BASE_GB + EXTRA_GB[kind or group])

The weights pass through host memory while they are loaded and the MNTP adapter is merged
(bf16: 2 bytes a parameter, so 16 GB for an 8B model); BASE_GB covers Python, torch, the
tokenizer and the CUDA host context; the extra term is the job's own data: the prepared training
pairs (training), the corpora and their embeddings (Retrieval, the largest), the other task
groups' datasets.

Run time, :func:`runtime_minutes` (minutes)::

    runtime = attempt * (load_minutes + safety * 60 * gpu_hours / gpus),   capped at max_minutes
    load_minutes = LOAD_MINUTES_BASE + LOAD_MINUTES_PER_B * params_b

``gpu_hours`` is the job's price in the cost plan (:func:`pairrel.plan.price_job`, the
measured throughput model ``pairrel plan`` shows): its training tokens or the tokens of its
evaluation tasks (from mteb's statistics) over the model's tokens per second. A task the plan
cannot price (no mteb statistics: the user's local tasks, held-out folds, the quickstart's
tasks count zero tokens there) adds ``UNPRICED_TASK_GPU_HOURS`` (:func:`job_gpu_hours`): 6
GPU-minutes, 8.6 M tokens of the 8B model on an H200, some 100,000 passages; a held-out
TREC-DL fold reranks a few thousand.

A training job also asks for ``SIGTERM_LEAD_MINUTES`` on top (:func:`sigterm_lead`): SLURM is
told (``--signal=TERM@<seconds>``, the job's ``slurm_extra``) to send SIGTERM that long before
the limit, so the trainer can finish its step (one step of the 8B model can take minutes) and
write a checkpoint before SIGKILL. Added rather than carved out of the estimate, so the job's
own work always fits before the signal, however small the model::

    train runtime = runtime + SIGTERM_LEAD_MINUTES

Each retry (``attempt`` 2, 3, ...) asks for proportionally more time: a training job resumes
from its checkpoint anyway, and an evaluation job skips the tasks it has finished (MTEB's
``only-missing``), so a longer second attempt finishes what the first could not.

GPUs, :func:`gpus`: training takes ``training.gpus`` (default 1; a multi-GPU run takes several),
evaluation one.
"""

from __future__ import annotations

import math

SAFETY = 1.5
BASE_GB = 6.0
EXTRA_GB = {
    "train": 4.0,          # prepared pairs of the training mix (open mix: ~1.5M triples)
    "Retrieval": 24.0,     # corpora (MSMARCO: 8.8M passages) and chunked corpus embeddings
    "heldout": 2.0,
}
EXTRA_GB_DEFAULT = 4.0     # the other MTEB task groups
BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}
LOAD_MINUTES_BASE = 5.0
LOAD_MINUTES_PER_B = 1.0   # reading bf16 shards from a shared file system (~2 GB/min) and merging
# SIGTERM this long before a training job's time limit: finish the step, checkpoint, exit 143.
SIGTERM_LEAD_MINUTES = 10
# The longest job asked of SLURM (many clusters cap jobs at 48 h). A longer evaluation resumes on
# its retry from its shards and finished tasks, a longer training run from its last checkpoint.
MAX_JOB_MINUTES = 48 * 60

# GPU-hours a task without mteb statistics adds to its job's estimate (see the module docstring).
UNPRICED_TASK_GPU_HOURS = 0.1


class ResourceError(ValueError):
    """A model config from which no size can be worked out (names the key)."""


def llama_param_count(hf_config: dict) -> int:
    """Parameters of a Llama-style decoder from its ``config.json`` values.

    embeddings V*h (+ an untied LM head V*h), per layer: attention q,o h*h each and k,v
    h*(h/heads*kv_heads) each, MLP 3*h*I, two RMSNorms 2*h; a final norm h.
    Meta-Llama-3-8B: V 128256, h 4096, 32 layers, I 14336, 32 heads, 8 KV heads -> 8,030,261,248.
    """
    try:
        h, layers, inter, vocab = (hf_config[k] for k in ("hidden_size", "num_hidden_layers",
                                                           "intermediate_size", "vocab_size"))
    except KeyError as err:
        raise ResourceError(f"hf config has no {err.args[0]} (needed to count parameters)") from None
    heads = hf_config.get("num_attention_heads", 1)
    kv_dim = h // heads * hf_config.get("num_key_value_heads", heads)
    per_layer = 2 * h * h + 2 * h * kv_dim + 3 * h * inter + 2 * h
    embeddings = vocab * h * (1 if hf_config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + h


def params_b(model_cfg: dict, hf_config: dict | None = None, name: str = "?") -> float:
    """Billions of parameters: ``models.<name>.params_b``, else counted from ``hf_config``."""
    if model_cfg["params_b"] is not None:
        value = model_cfg["params_b"]
        if not isinstance(value, (int, float)) or value <= 0:
            raise ResourceError(f"models.{name}.params_b must be a positive number, got {value!r}")
        return float(value)
    if hf_config is not None:
        return llama_param_count(hf_config) / 1e9
    raise ResourceError(f"models.{name}.params_b is not set (billions of parameters, e.g. 8.03), "
                        "and no config.json was given to count them")


def gpus(kind: str, training_cfg: dict | None = None) -> int:
    """GPUs of one job: ``training.gpus`` of the run's filled training settings for training,
    1 for evaluation."""
    if kind == "train":
        from pairrel.launch import n_processes

        if training_cfg is None:
            raise ResourceError("a training job's size needs its run's training settings (training.gpus)")
        return n_processes(training_cfg)
    return 1


def _groups(group) -> list:
    """One task group, several evaluated by one job (a list, or types joined by '+'): their names."""
    if group is None:
        return [group]
    return group.split("+") if isinstance(group, str) else list(group)


def mem_mb(kind: str, size_b: float, group=None, dtype: str = "bfloat16", safety: float = SAFETY) -> int:
    """Host memory in MiB (see the module docstring), rounded up to a whole GiB.

    ``group``: a task group, or a list of groups one job evaluates in turn (the largest counts).
    """
    if dtype not in BYTES_PER_PARAM:
        raise ResourceError(f"dtype {dtype!r} is not one of {', '.join(BYTES_PER_PARAM)}")
    extra = EXTRA_GB["train"] if kind == "train" else max(EXTRA_GB.get(g, EXTRA_GB_DEFAULT) for g in _groups(group))
    gigabytes = safety * (BYTES_PER_PARAM[dtype] * size_b + BASE_GB + extra)
    return 1024 * math.ceil(gigabytes * 1e9 / 2**30)


def job_gpu_hours(priced_hours: float, unpriced_tasks: int = 0) -> float:
    """GPU-hours of one job: the plan's price plus ``UNPRICED_TASK_GPU_HOURS`` per task it could not price."""
    return priced_hours + UNPRICED_TASK_GPU_HOURS * unpriced_tasks


def runtime_minutes(size_b: float, gpu_hours: float, n_gpus: int = 1, attempt: int = 1,
                    safety: float = SAFETY, max_minutes: int | None = None) -> int:
    """Wall-clock minutes to request (see the module docstring)."""
    load = LOAD_MINUTES_BASE + LOAD_MINUTES_PER_B * size_b
    minutes = math.ceil(attempt * (load + safety * 60.0 * gpu_hours / n_gpus))
    return min(minutes, max_minutes) if max_minutes else minutes


def sigterm_lead(kind: str) -> dict:
    """SLURM's early warning for ``kind``: ``{"minutes", "slurm_extra"}``.

    Training checkpoints on SIGTERM, so it asks for it ``SIGTERM_LEAD_MINUTES`` early (and has
    that time added to its limit, see :func:`job_resources`); other jobs take SLURM's default
    (SIGTERM at the limit) and add nothing.
    """
    if kind != "train":
        return {"minutes": 0, "slurm_extra": ""}
    return {"minutes": SIGTERM_LEAD_MINUTES, "slurm_extra": f"--signal=TERM@{SIGTERM_LEAD_MINUTES * 60}"}


def job_resources(kind: str, model_cfg: dict, gpu_hours: float, group=None, training_cfg: dict | None = None,
                  attempt: int = 1, safety: float = SAFETY, max_minutes: int | None = MAX_JOB_MINUTES,
                  model_name: str = "?") -> dict:
    """``{"mem_mb", "runtime", "gpu", "slurm_extra"}`` of one training (``kind="train"``) or
    evaluation job.

    ``gpu_hours``: this job's GPU-hours (:func:`job_gpu_hours`). ``runtime`` includes the SIGTERM
    lead of training jobs (:func:`sigterm_lead`); ``max_minutes`` caps the whole request, the lead
    inside it.
    """
    if kind not in ("train", "evaluate"):
        raise ResourceError(f"kind must be 'train' or 'evaluate', got {kind!r}")
    size = params_b(model_cfg, name=model_name)
    n_gpus = gpus(kind, training_cfg)
    lead = sigterm_lead(kind)
    runtime = runtime_minutes(size, gpu_hours, n_gpus, attempt, safety) + lead["minutes"]
    return {
        "mem_mb": mem_mb(kind, size, group, model_cfg["dtype"], safety),
        "runtime": min(runtime, max_minutes) if max_minutes else runtime,
        "gpu": n_gpus,
        "slurm_extra": lead["slurm_extra"],
    }
