"""Check the evaluation against LLM2Vec's published checkpoints before training anything.

``pairrel baseline-check --config CFG --model KEY`` (``snakemake baseline_check`` runs it for
every grid model with a reference entry) loads LLM2Vec's published supervised checkpoint the way
LLM2Vec does — the config's base model, its MNTP adapter merged, the published supervised LoRA
on top — evaluates it with the study's protocol on the reference file's tasks, and writes a table
(Markdown and CSV): pairrel's score, the published one, their difference, each on 0-100. Any
difference beyond the file's ``tolerance`` fails the check (exit 1, the tasks named).

The reference file (``results/reference/per-task/llm2vec-supervised.yaml``) holds the published
per-task scores with their source: ``{citation, benchmark, tolerance, tasks: [...], models:
{model key: {adapter, scores: {task: score}}}}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from pairrel.config import ConfigError, atomic_write_text

REFERENCE_FILE = Path("results/reference/per-task/llm2vec-supervised.yaml")


class BaselineMismatch(ValueError):
    """pairrel's score of a published checkpoint is further than the tolerance from the published one."""


def load_reference(path: str | Path) -> dict[str, Any]:
    """The reference file, checked: every model's scores cover ``tasks``; errors name the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such reference file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    for key in ("citation", "benchmark", "tolerance", "tasks", "models"):
        if key not in data:
            raise ConfigError(f"{path}: missing key '{key}'")
    tolerance = data["tolerance"]
    if not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"{path}: 'tolerance' must be a positive number of points, got {tolerance!r}")
    for model, entry in data["models"].items():
        if not isinstance(entry, dict) or "adapter" not in entry or not isinstance(entry.get("scores"), dict):
            raise ConfigError(f"{path}: models.{model} needs 'adapter' and 'scores'")
        missing = [t for t in data["tasks"] if t not in entry["scores"]]
        if missing:
            raise ConfigError(f"{path}: models.{model}.scores lacks {', '.join(missing)}")
    return data


def baseline_models(study, reference: dict) -> list[str]:
    """The grid's models that have a published checkpoint in the reference file."""
    return [m for m in study.cfg["grid"]["models"] if m in reference["models"]]


def compare(scores: dict[str, float], published: dict[str, float], tasks: list[str], tolerance: float) -> list[dict]:
    """One row per task: ``pairrel`` (mteb's 0-1 score x 100), ``published``, ``diff`` = pairrel -
    published, ``ok`` = |diff| <= tolerance (a missing score is not ok)."""
    rows = []
    for task in tasks:
        ours = 100.0 * scores[task] if task in scores else math.nan
        diff = ours - float(published[task])
        rows.append({"task": task, "pairrel": ours, "published": float(published[task]), "diff": diff,
                     "ok": not math.isnan(diff) and abs(diff) <= tolerance})
    return rows


def render(rows: list[dict], model: str, adapter: str, tolerance: float, citation: str) -> tuple[str, str]:
    """(Markdown, CSV) of the comparison table."""
    lines = [f"# Baseline check: {model} ({adapter})", "",
             f"Published: {citation}. Tolerance: {tolerance:g} points per task.", "",
             "| task | pairrel | published | diff | within tolerance |", "|---|---:|---:|---:|---|"]
    csv = ["task,pairrel,published,diff,ok"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['pairrel']:.2f} | {r['published']:.2f} | {r['diff']:+.2f} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
        csv.append(f"{r['task']},{r['pairrel']:.4f},{r['published']:.4f},{r['diff']:.4f},{r['ok']}")
    failed = [r["task"] for r in rows if not r["ok"]]
    lines += ["", f"FAILED: {', '.join(failed)}" if failed else "All tasks within tolerance."]
    return "\n".join(lines) + "\n", "\n".join(csv) + "\n"


def run_baseline_check(study, model: str, out: Path, reference_path: str | Path | None = None,
                       cache_dir: Path | None = None) -> list[dict]:
    """Evaluate the published checkpoint of ``model`` and write ``out`` (.md) beside ``out``.csv.

    Raises :class:`BaselineMismatch` (after writing the table) when a task is off by more than
    the tolerance. Results go to mteb's cache under the name ``pairrel-baseline/<model>`` and a
    revision fingerprinting the model settings, the adapter id and the protocol, so a rerun
    recomputes nothing.
    """
    import torch

    from pairrel.encoder import EncoderConfig, build_encoder
    from pairrel.evaluate.protocol import protocol_for
    from pairrel.evaluate.run import benchmark_tasks, evaluate
    from pairrel.study import canonical_json, encoder_settings, sha256_text

    reference = load_reference(reference_path or study.root / REFERENCE_FILE)
    if model not in reference["models"]:
        raise ConfigError(f"--model {model}: no published checkpoint in the reference file "
                          f"(it has {', '.join(reference['models'])})")
    if model not in study.cfg["models"]:
        raise ConfigError(f"--model {model}: not under 'models' ({', '.join(study.cfg['models'])})")
    entry, model_cfg = reference["models"][model], study.cfg["models"][model]
    protocol = protocol_for(study.evaluation, model_cfg["kind"])
    ev = study.evaluation
    tasks = benchmark_tasks(reference["benchmark"], list(reference["tasks"]), ev["local_dataset"],
                            ev["local_instruction"], ev["local_tasks"], study.root)
    encoder = build_encoder(EncoderConfig.from_dict(model_cfg), adapter=entry["adapter"])
    if torch.cuda.is_available():
        encoder.to("cuda")
    revision = sha256_text(canonical_json({"model": encoder_settings(model_cfg), "adapter": entry["adapter"],
                                           "protocol": protocol.identity()}))[:12]
    scores = evaluate(encoder, tasks, cache_dir or study.mteb_cache, f"pairrel-baseline/{model}", revision, None,
                      ev["batch_size"], ev["max_batch_tokens"], protocol=protocol)
    rows = compare(scores, entry["scores"], list(reference["tasks"]), float(reference["tolerance"]))
    markdown, csv = render(rows, model, entry["adapter"], float(reference["tolerance"]), reference["citation"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".csv"), csv)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        atomic_write_text(out.with_suffix(".failed.md"), markdown)  # the table, but no target for Snakemake
        raise BaselineMismatch(
            f"{model}: {len(failed)} of {len(rows)} tasks beyond {reference['tolerance']:g} points of the published "
            "scores: " + ", ".join(f"{r['task']} {r['pairrel']:.2f} vs {r['published']:.2f}" for r in failed)
            + f" (table: {out.with_suffix('.failed.md')})")
    atomic_write_text(out, markdown)
    return rows
