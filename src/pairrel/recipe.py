"""LLM2Vec's supervised recipe as data, and how configured runs differ from it (``pairrel recipe``).

``LLM2VEC_SUPERVISED`` holds the facts of LLM2Vec's supervised contrastive stage
(BehnamGhader et al. 2024, arXiv 2404.05961, App. G.2; McGill-NLP/llm2vec
``train_configs/supervised/MetaLlama3.json`` and ``Sheared-Llama.json`` — identical apart from
the model —, ``experiments/run_supervised.py``, ``llm2vec/dataset/E5Data.py``; settings the
configs leave out are transformers ``TrainingArguments`` defaults: AdamW, weight decay 0,
linear decay after warm-up, gradient clipping at norm 1.0).

``pairrel recipe sizes --config CFG --release DIR`` prints a preset that caps each ir_datasets
source (``max_queries``) at the number of distinct queries of its file in the release, so the
ir_datasets route prepares as many queries per dataset as the release holds (the dataset's first
N, not the release's sample; a release line is one example, and a query can have several).

``pairrel recipe instructions --config CFG [--json]`` prints, for every task the study evaluates,
the text the encoder sees for a sample text on the query and the document side (before the
model's template), under the evaluation protocol of the grid's models; ``pairrel recipe diff``
also lists how each model is evaluated unlike LLM2Vec (``evaluation_differences``).

``recipe_differences(run_cfg)`` compares one resolved run (``pairrel.config.resolve_run``) with
it and returns one line per difference, both values on the line. Things pairrel does one way
only are recorded in ``PAIRREL_FIXED`` and compared like configured values, so a fact that
pairrel cannot match would always be reported, never hidden. LLM2Vec pools the ``_split1`` /
``_split2`` files of a dataset into the same batches; a config matches that with one pooled
source (``parts:``, pairrel.data.parts) holding both files.
"""

from __future__ import annotations

from pathlib import Path

# One released file of the echo-data release: instruction, and whether the instruction also goes
# on the documents (LLM2Vec's symmetric tasks: allnli_split2, quora_duplicates_split1/2).
_ECHO_FILES = {
    "allnli_split1": ("Given a premise, retrieve a hypothesis that is entailed by the premise", False),
    "allnli_split2": ("Retrieve semantically similar text", True),
    "dureader": ("Given a Chinese search query, retrieve web passages that answer the question", False),
    "eli5_question_answer": ("Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum", False),
    "fever": ("Given a claim, retrieve documents that support or refute the claim", False),
    "hotpot_qa": ("Given a multi-hop question, retrieve documents that can help answer the question", False),
    "miracl": ("Given a question, retrieve Wikipedia passages that answer the question", False),
    "mrtydi": ("Given a question, retrieve Wikipedia passages that answer the question", False),
    "msmarco_passage": ("Given a web search query, retrieve relevant passages that answer the query", False),
    "msmarco_document": ("Given a web search query, retrieve relevant documents that answer the query", False),
    "nq": ("Given a question, retrieve Wikipedia passages that answer the question", False),
    "quora_duplicates_split1": ("Given a question, retrieve questions that are semantically equivalent to the given question", True),
    "quora_duplicates_split2": ("Find questions that have the same meaning as the input question", True),
    "squad": ("Retrieve Wikipedia passages that answer the question", False),
    "t2ranking": ("Given a Chinese search query, retrieve web passages that answer the question", False),
    "trivia_qa": ("Retrieve Wikipedia passages that answer the question", False),
}

LLM2VEC_SUPERVISED: dict = {
    # base model -> the MNTP adapter merged into it before the supervised LoRA is added
    "bases": {
        "meta-llama/Meta-Llama-3-8B-Instruct": "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp",
        "princeton-nlp/Sheared-LLaMA-1.3B": "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
    },
    "attention": "bidirectional decoder",
    "pooling": "mean over text tokens (instruction excluded)",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05,
             "target_modules": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]},
    "optimizer": "AdamW",
    "learning_rate": 2e-4,
    "weight_decay": 0.0,
    "schedule": "linear warm-up, then linear decay to 0",
    "warmup_steps": 300,
    "max_grad_norm": 1.0,
    "steps": 1000,
    "batch_size": 512,  # 64 per GPU x 8 GPUs, documents gathered across GPUs
    "negatives": "1 hard negative per query (the released file's 'negative')",
    "loss": "softmax over cosine / 0.02 (scale 50), query -> documents",
    "labels": "binary@1",  # one positive per query
    "max_length": 512,
    "precision": "bfloat16",
    "seed": 42,
    "batch_source": "one dataset per batch",
    "incomplete_batches": "dropped",
    # which files share batches: each its own, but the two halves of a split dataset pooled
    "files_batched_together": "each file alone, the halves of allnli and quora_duplicates pooled",
    "sampling": "proportional",
    "sources": {name: {"instruction": instr, "symmetric": sym} for name, (instr, sym) in _ECHO_FILES.items()},
}

# What pairrel does one way only (not configurable), in the recipe's words.
PAIRREL_FIXED = {
    "pooling": "mean over text tokens (instruction excluded)",  # pairrel.encoder
    "optimizer": "AdamW",  # pairrel.train
    "schedule": "linear warm-up, then linear decay to 0",  # pairrel.train.linear_schedule
    "batch_source": "one dataset per batch",  # pairrel.data.batching
    "incomplete_batches": "dropped",  # batcher_from_run: drop_last
}


def _fmt(value) -> str:
    return "unset" if value is None else str(value)


def _source_key(name: str, source: dict) -> str | None:
    """The echo-data file a configured source (or part) reads: its JSONL file's stem or its name."""
    if source.get("jsonl"):
        stem = Path(source["jsonl"]).name.removesuffix(".jsonl")
        if stem in _ECHO_FILES:
            return stem
    return name if name in _ECHO_FILES and source.get("jsonl") else None


def _describe_loss(loss: dict) -> str:
    if loss.get("type") == "softmax":
        return f"softmax over cosine / {loss['temperature']:g} (scale {1 / loss['temperature']:g}), query -> documents"
    return "bce " + ", ".join(f"{k} {v}" for k, v in loss.items() if k != "type")


def recipe_differences(run_cfg: dict, recipe: dict = LLM2VEC_SUPERVISED) -> list[str]:
    """One line per difference between a resolved run config and the recipe: 'item: LLM2Vec X | configured Y'."""
    lines: list[str] = []

    def differ(item: str, expected, configured) -> None:
        if expected != configured:
            lines.append(f"{item}: LLM2Vec {_fmt(expected)} | configured {_fmt(configured)}")

    model, training, data = run_cfg["model"], run_cfg["training"], run_cfg["data"]
    base = model.get("name_or_path")
    differ("base model", base if base in recipe["bases"] else " or ".join(recipe["bases"]), base)
    differ("MNTP adapter", recipe["bases"].get(base), model.get("mntp_adapter"))
    differ("attention", recipe["attention"], "bidirectional decoder" if model.get("kind") == "decoder" else "encoder")
    differ("pooling", recipe["pooling"], PAIRREL_FIXED["pooling"])
    lora = dict(model["lora"])
    if "target_modules" in lora:
        lora["target_modules"] = sorted(lora["target_modules"])
    for key, value in recipe["lora"].items():
        differ(f"LoRA {key}", value, lora.get(key))
    differ("optimizer", recipe["optimizer"], PAIRREL_FIXED["optimizer"])
    differ("learning rate", recipe["learning_rate"], training["learning_rate"])
    differ("weight decay", recipe["weight_decay"], training["weight_decay"])
    differ("schedule", recipe["schedule"], PAIRREL_FIXED["schedule"])
    differ("warm-up steps", recipe["warmup_steps"], training["warmup_steps"])
    differ("gradient clipping (max norm)", recipe["max_grad_norm"], training["max_grad_norm"])
    differ("steps", recipe["steps"], training["steps"])
    differ("batch size (queries)", recipe["batch_size"], training["batch_size"])
    if training["docs_per_query"] is not None:
        negatives = f"{training['docs_per_query']} judged documents per query across grades"
    else:
        negatives = f"{training['n_negatives']} hard negative per query"
    differ("negatives", "1 hard negative per query", negatives)
    differ("loss", recipe["loss"], _describe_loss(run_cfg["loss"]))
    differ("labels", recipe["labels"], run_cfg.get("labels"))
    differ("max length (tokens)", recipe["max_length"], model.get("max_length"))
    differ("precision", recipe["precision"], model.get("dtype"))
    differ("seed", recipe["seed"], run_cfg.get("seed"))
    differ("per-batch source", recipe["batch_source"], PAIRREL_FIXED["batch_source"])
    differ("incomplete batches", recipe["incomplete_batches"], PAIRREL_FIXED["incomplete_batches"])
    differ("sampling rule", recipe["sampling"], data["sampling"])

    from pairrel.data.parts import source_parts

    matched: dict[str, dict] = {}  # echo-data file -> the configured part reading it
    pool_of: dict[str, str] = {}  # echo-data file -> the configured source batching it
    extra = []
    for name, source in (data.get("sources") or {}).items():
        for part_name, part in source_parts(name, source).items():
            key = _source_key(part_name, part)
            if key is None or key in matched:
                extra.append(f"{part_name} ({part.get('dataset') or part.get('jsonl')})")
            else:
                matched[key], pool_of[key] = part, name
    missing = [name for name in recipe["sources"] if name not in matched]
    if missing:
        lines.append(f"data sources missing: LLM2Vec {', '.join(missing)} | configured none of these files")
    if extra:
        lines.append(f"data sources extra: LLM2Vec none | configured {', '.join(extra)}")
    for key, source in matched.items():
        differ(f"instruction of {key}", recipe["sources"][key]["instruction"], source["instruction"])
        differ(f"symmetric {key}", recipe["sources"][key]["symmetric"], source["symmetric"])
    wrong = _wrong_pooling(pool_of)
    differ("files batched together", recipe["files_batched_together"],
           "; ".join(wrong) if wrong else recipe["files_batched_together"])
    return lines


def _dataset_of(echo_file: str) -> str:
    """LLM2Vec's dataset of a released file: the file without its ``_split1``/``_split2``."""
    return echo_file.removesuffix("_split1").removesuffix("_split2")


def _wrong_pooling(pool_of: dict[str, str]) -> list[str]:
    """How the configured sources batch the released files unlike LLM2Vec (one dataset per
    batch, a split dataset's halves together): a source pooling files of two datasets, or the
    halves of one dataset in two sources. ``pool_of``: released file -> configured source."""
    files_of: dict[str, set[str]] = {}
    for echo_file, source in pool_of.items():
        files_of.setdefault(source, set()).add(echo_file)
    wrong = [f"{source} pools {' + '.join(sorted(files))}" for source, files in sorted(files_of.items())
             if len({_dataset_of(f) for f in files}) > 1]
    for dataset in sorted({_dataset_of(f) for f in pool_of}):
        sources = sorted({s for f, s in pool_of.items() if _dataset_of(f) == dataset})
        if len(sources) > 1:
            wrong.append(f"the halves of {dataset} in separate sources ({', '.join(sources)})")
    return wrong


# The released file behind each ir_datasets source of config.yaml's open mix (``pairrel recipe
# sizes``). The mix's JSONL sources are released files already and need no cap.
RELEASE_FILE_OF_DATASET = {
    "msmarco-passage/train": "msmarco_passage",
    "msmarco-passage/train/triples-small": "msmarco_passage",
    "msmarco-document/train": "msmarco_document",
    "dpr-w100/natural-questions/train": "nq",
    "dpr-w100/trivia-qa/train": "trivia_qa",
    "beir/hotpotqa/train": "hotpot_qa",
    "beir/fever/train": "fever",
    "miracl/en/train": "miracl",
    "mr-tydi/en/train": "mrtydi",
}


def release_file_sizes(path: Path) -> dict[str, int]:
    """``{"examples": lines with a query, "queries": distinct query texts}`` of one released JSONL file."""
    import hashlib

    from pairrel.io import iter_json_objects

    examples, queries = 0, set()
    for _, record in iter_json_objects(path):
        query = record.get("query")
        if isinstance(query, str) and query.strip():
            examples += 1
            queries.add(hashlib.sha1(query.encode("utf-8")).digest())  # 20 bytes a query, not its text
    return {"examples": examples, "queries": len(queries)}


def release_caps(cfg: dict, release_dir: Path) -> tuple[dict, list[str]]:
    """``max_queries`` for every ir_datasets source of the grid's data mixes that has a released
    file in ``release_dir``: the number of distinct queries of that file, so the source is
    prepared at the release's size (its first N queries, not the release's sample). Returns (a config fragment ``{"data": {mix: {"sources": {name:
    {"max_queries": N}}}}}``, notes: one line per capped source and per file not found)."""
    release_dir = Path(release_dir)
    if not release_dir.is_dir():
        raise ValueError(f"--release {release_dir}: not a folder (the echo-data release's JSONL files)")
    counted: dict[Path, dict[str, int]] = {}  # a file shared by two sources is read once
    fragment: dict = {"data": {}}
    notes: list[str] = []
    for mix_name in cfg["grid"]["data"]:
        for name, source in (cfg["data"][mix_name].get("sources") or {}).items():
            stem = RELEASE_FILE_OF_DATASET.get(source.get("dataset") or "")
            if stem is None:
                continue
            path = release_dir / f"{stem}.jsonl"
            if not path.is_file():
                notes.append(f"{mix_name}/{name}: {path.name} not in {release_dir}")
                continue
            if path not in counted:
                counted[path] = release_file_sizes(path)
            n = counted[path]
            fragment["data"].setdefault(mix_name, {"sources": {}})["sources"][name] = {"max_queries": n["queries"]}
            notes.append(f"{mix_name}/{name}: max_queries {n['queries']} ({n['examples']} examples in {path.name})")
    return fragment, notes


def diff_report(study, run_ids: list[str] | None = None) -> list[str]:
    """Lines of ``pairrel recipe diff``: for each run, 'RUN: no differences' or 'RUN: <difference>'."""
    runs = [study.run(r) for r in run_ids] if run_ids else study.runs
    out = []
    evaluated: dict[str, list[str]] = {}  # model -> its evaluation differences (one per model)
    for run in runs:
        if run.model not in evaluated:
            evaluated[run.model] = evaluation_differences(study, run.model)
        differences = recipe_differences(run.config) + evaluated[run.model]
        out += [f"{run.id}: {line}" for line in differences] or [f"{run.id}: no differences"]
    return out


# LLM2Vec's evaluation (experiments/mteb_eval.py through llm2vec/llm2vec.py), in the words of
# ``evaluation_differences``; the instruction table itself is pairrel/evaluate/protocols.yaml.
LLM2VEC_EVALUATION = {
    "protocol": "llm2vec",
    "pooling": "the text's own tokens and the template's trailing ones (embed_mask), no BOS",
}


def _pooling_of(kind: str) -> str:
    """pairrel's pooling of a model kind, in LLM2VEC_EVALUATION's words (pairrel.encoder)."""
    if kind == "decoder":
        return LLM2VEC_EVALUATION["pooling"]
    return "every attended token but the instruction's ([CLS], [SEP] too), sentence-transformers' mean"


def evaluation_differences(study, model: str) -> list[str]:
    """One line per way the study evaluates ``model`` unlike LLM2Vec: the protocol (instruction
    table, format, word truncation), each task whose instruction differs from LLM2Vec's table,
    and the pooling."""
    from pairrel.evaluate.protocol import load_protocol, protocol_for, sides

    kind = study.cfg["models"][model]["kind"]
    ours, theirs = protocol_for(study.evaluation, kind), load_protocol(LLM2VEC_EVALUATION["protocol"])
    lines = []

    def differ(item: str, expected, configured) -> None:
        if expected != configured:
            lines.append(f"evaluation {item}: LLM2Vec {_fmt(expected) or 'none'} | configured {_fmt(configured) or 'none'}")

    differ("protocol", theirs.name, ours.name)
    differ("format", theirs.format, ours.format)
    differ("word truncation (doc_max_length)", theirs.doc_max_length, ours.doc_max_length)
    differ("pooling", LLM2VEC_EVALUATION["pooling"], _pooling_of(kind))
    if ours.instructions != theirs.instructions:
        import mteb

        tasks = {t.metadata.name: t for t in mteb.get_benchmark("MTEB(eng, v1)").tasks}
        names = [n for n in study.eval_plan.eval_tasks(final=True) if n in tasks]
        for name in names:  # the query side's (documents: bare in both protocols)
            side = sides(tasks[name])[0]
            differ(f"instruction of {name}", theirs.instruction(tasks[name].metadata, side),
                   ours.instruction(tasks[name].metadata, side))
    return lines


def instruction_preview(study, model: str | None = None, text: str = "TEXT") -> dict[str, dict[str, str]]:
    """``{task: {"query": …, "document": …}}`` for every task the study evaluates (final and
    intermediate checkpoints, the user's own tasks): the text the encoder sees for ``text`` on
    each side, before the model's template. ``model`` picks the protocol (by its kind); without
    it the grid's models must share one."""
    from pairrel.config import ConfigError
    from pairrel.evaluate.protocol import preview, protocol_for
    from pairrel.evaluate.run import benchmark_tasks

    models = [model] if model else list(study.cfg["grid"]["models"])
    if model and model not in study.cfg["models"]:
        raise ConfigError(f"--model {model}: not under 'models' ({', '.join(study.cfg['models'])})")
    protocols = {protocol_for(study.evaluation, study.cfg["models"][m]["kind"]).name: m for m in models}
    if len(protocols) > 1:
        raise ConfigError(f"the grid's models are evaluated with protocols {', '.join(sorted(protocols))}: "
                          "pick one with --model")
    protocol = protocol_for(study.evaluation, study.cfg["models"][models[0]]["kind"])
    names = list(dict.fromkeys(study.eval_plan.eval_tasks(final=True) + study.eval_plan.eval_tasks(final=False)))
    ev = study.evaluation
    tasks = benchmark_tasks(ev["benchmark"], names, ev["local_dataset"], ev["local_instruction"], ev["local_tasks"],
                            study.root)
    return {task.metadata.name: preview(protocol, task, text) for task in tasks}
