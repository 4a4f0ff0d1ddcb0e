"""``pairrel batches``: what a run trains on, one JSON object per step, on CPU in seconds.

For the first N steps of a run it builds exactly the batches the trainer builds
(``pairrel.data.batching.batcher_from_run`` over the prepared sources) and prints, per step:

- ``step``, ``source``, ``n_queries``, ``n_docs``;
- ``judged_per_query``: mean over the batch's queries of the number of its documents in the
  batch that are judged for it (grade ≥ 0), in-batch documents of other queries included;
- ``target_values``: the sorted distinct targets y_ij of the batch (0 included);
- ``grade_counts``: {grade: number of (query, document) cells}, "-1" = unjudged;
- ``positives_per_query``: mean number of cells with y_ij > 0 per query;
- ``instruction``, ``doc_instruction`` (non-empty for symmetric sources).

The prepared sources are ``{source}.parquet`` + ``{source}.meta.json`` in the data mix's
folder (``results/{experiment}/data/{data}/`` in the Snakemake workflow); when one is missing,
the error names the Snakemake targets that write them.
"""

from __future__ import annotations

import argparse
import json
import sys
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
        "instruction": batch.instruction,
        "doc_instruction": batch.doc_instruction,
    }


def batch_summaries(run_cfg: dict, prepared: dict[str, tuple[Path, Path]], steps: int = 3) -> list[dict]:
    """Summaries of steps 0 … steps − 1 of the run ``run_cfg`` (``pairrel.config.resolve_run``).

    ``prepared`` maps each source of the run's data mix to its (parquet, meta JSON) paths.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sources = {name: load_prepared_source(parquet, meta) for name, (parquet, meta) in prepared.items()}
    batcher = batcher_from_run(run_cfg, sources)
    return [summarize_batch(batcher.batch_at(step)) for step in range(steps)]


def prepared_paths(source_names, folder: Path) -> dict[str, tuple[Path, Path]]:
    """{source: (folder/source.parquet, folder/source.meta.json)}."""
    return {name: (Path(folder) / f"{name}.parquet", Path(folder) / f"{name}.meta.json") for name in source_names}


def require_prepared(prepared: dict[str, tuple[Path, Path]], config_files) -> None:
    """Raise PreparedSourcesMissing naming the missing files and the snakemake command to run."""
    missing = [path for pair in prepared.values() for path in pair if not Path(path).exists()]
    if not missing:
        return
    targets = sorted({str(parquet) for parquet, meta in prepared.values() if not (parquet.exists() and meta.exists())})
    configs = " ".join(f"--configfile {c}" for c in config_files)
    raise PreparedSourcesMissing(
        "prepared source file(s) missing: " + ", ".join(map(str, missing))
        + f"\nprepare them with: snakemake --cores 1 {configs} {' '.join(targets)}"
    )


def cmd_batches(args) -> int:
    from pairrel.config import load_config, parse_run_id, resolve_run
    from pairrel.data.registry import register_from_config

    cfg = load_config(*args.config)
    register_from_config(cfg)
    run = parse_run_id(args.run)
    run_cfg = resolve_run(cfg, run)
    folder = args.prepared or Path("results") / cfg["experiment"] / "data" / run["data"]
    prepared = prepared_paths(run_cfg["data"]["sources"], folder)
    require_prepared(prepared, args.config)
    for summary in batch_summaries(run_cfg, prepared, args.steps):
        print(json.dumps(summary))
    return 0


def _guarded(args) -> int:
    try:
        return cmd_batches(args)
    except (FileNotFoundError, ValueError) as err:  # ConfigError is a ValueError
        print(f"pairrel batches: error: {err}", file=sys.stderr)
        return 2


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``pairrel batches`` to a ``pairrel`` sub-command parser set."""
    p = subparsers.add_parser("batches", help="print what a run trains on: one JSON object per step")
    p.add_argument("--config", action="append", required=True, type=Path,
                   help="config file; repeat to merge presets over it (later files win)")
    p.add_argument("--run", required=True, help="run id, e.g. model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42")
    p.add_argument("--steps", type=int, default=3, help="number of steps from step 0 (default 3)")
    p.add_argument("--prepared", type=Path, default=None,
                   help="folder of the data mix's prepared sources (default results/{experiment}/data/{data})")
    p.set_defaults(func=_guarded)
    return p


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pairrel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["batches", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
