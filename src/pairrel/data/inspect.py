"""What a run trains on, one JSON object per step, on CPU in seconds (``pairrel batches``).

For the first N steps of a run it builds exactly the batches the trainer builds
(``pairrel.data.batching.batcher_from_run`` over the prepared sources) and prints, per step:

- ``step``, ``source``, ``n_queries``, ``n_docs``;
- ``judged_per_query``: mean over the batch's queries of the number of its documents in the
  batch that are judged for it (grade ≥ 0), in-batch documents of other queries included;
- ``target_values``: the sorted distinct targets y_ij of the batch (0 included);
- ``grade_counts``: {grade: number of (query, document) cells}, "-1" = unjudged;
- ``positives_per_query``: mean number of cells with y_ij > 0 per query;
- ``instruction``, ``doc_instruction`` (non-empty for symmetric sources); for a pooled source,
  whose texts carry their part's instruction, ``{instruction: number of texts}``.

The prepared sources are ``{source}.parquet`` + ``{source}.meta.json`` in the data mix's
folder (``results/{experiment}/data/{data}/`` in the Snakemake workflow); when one is missing,
the error names the Snakemake targets that write them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pairrel.data.batching import Batch, batcher_from_run, load_prepared_source


class PreparedSourcesMissing(FileNotFoundError):
    """Prepared source files a command needs are absent; the message says how to make them."""


def summarize_batch(batch: Batch) -> dict:
    """The JSON-able summary of one batch (keys in the module docstring)."""
    grades, targets = batch.grades, batch.targets
    values, counts = grades.unique(return_counts=True)
    return {
        "step": batch.step,
        "source": batch.source,
        "n_queries": len(batch.queries),
        "n_docs": len(batch.docs),
        "judged_per_query": round(float((grades >= 0).sum(dim=1).float().mean()), 4),
        "positives_per_query": round(float((targets > 0).sum(dim=1).float().mean()), 4),
        "target_values": sorted({round(float(v), 6) for v in targets.unique()}),
        "grade_counts": {str(int(v)): int(c) for v, c in zip(values, counts)},
        "instruction": _instructions(batch.instruction),
        "doc_instruction": _instructions(batch.doc_instruction),
    }


def _instructions(instruction: str | list[str]) -> str | dict[str, int]:
    """One instruction as it is; per-text instructions (a pooled source) counted."""
    if isinstance(instruction, str):
        return instruction
    return dict(sorted(Counter(instruction).items()))


def batch_summaries(run_cfg: dict, steps: int = 3) -> list[dict]:
    """Summaries of steps 0 … steps − 1 of the run ``run_cfg`` (:attr:`pairrel.study.Run.config`),
    read from its prepared sources (``run_cfg["prepared"]``)."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    sources = {name: load_prepared_source(files["parquet"], files["meta"]) for name, files in run_cfg["prepared"].items()}
    batcher = batcher_from_run(run_cfg, sources)
    return [summarize_batch(batcher.batch_at(step)) for step in range(steps)]


def in_folder(prepared: dict[str, dict[str, str]], folder: Path) -> dict[str, dict[str, str]]:
    """The same prepared files, looked up in another folder (``--prepared``)."""
    return {name: {kind: str(Path(folder) / Path(path).name) for kind, path in files.items()}
            for name, files in prepared.items()}


def require_prepared(prepared: dict[str, dict[str, str]], config_files) -> None:
    """Raise PreparedSourcesMissing naming the missing files and the snakemake command to run."""
    missing = [path for files in prepared.values() for path in files.values() if not Path(path).exists()]
    if not missing:
        return
    targets = sorted({files["parquet"] for files in prepared.values() if any(not Path(p).exists() for p in files.values())})
    configs = " ".join(f"--configfile {c}" for c in config_files)
    raise PreparedSourcesMissing(
        "prepared source file(s) missing: " + ", ".join(map(str, missing))
        + f"\nprepare them with: snakemake --cores 1 {configs} {' '.join(targets)}"
    )
