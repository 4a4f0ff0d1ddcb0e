"""``pairrel`` command line: ``data``, ``config``, ``train``, ``evaluate``, ``report``.

Every Snakemake rule calls one of these, so each stage also runs by hand, e.g.::

    pairrel config runs --config config.yaml
    pairrel train --config config.yaml --config presets/quickstart.yaml \\
        --run model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42 \\
        --prepared results/quickstart/data/quickstart --out results/quickstart/runs/…
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pairrel.config import ConfigError, expand_grid, load_config, parse_run_id, resolve_run, run_id


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", required=True, type=Path,
        help="config file; repeat to merge presets over it (later files win)",
    )


def _config(args) -> dict:
    from pairrel.data.registry import register_from_config

    cfg = load_config(*args.config)
    register_from_config(cfg)
    return cfg


def cmd_config(args) -> int:
    cfg = load_config(*args.config)
    if args.action == "validate":
        print(f"ok: {len(expand_grid(cfg))} runs")
    elif args.action == "runs":
        for run in expand_grid(cfg):
            print(run_id(run))
    else:
        json.dump(cfg, sys.stdout, indent=2)
        print()
    return 0


def _prepared_sources(cfg: dict, data_name: str, prepared_dir: Path) -> dict[str, tuple[Path, Path]]:
    prepared = {}
    for source in cfg["data"][data_name]["sources"]:
        parquet = prepared_dir / f"{source}.parquet"
        meta = prepared_dir / f"{source}.meta.json"
        for path in (parquet, meta):
            if not path.exists():
                raise FileNotFoundError(f"prepared source '{source}' of data '{data_name}' is missing: {path} (run `pairrel data prepare` first)")
        prepared[source] = (parquet, meta)
    return prepared


def cmd_train(args) -> int:
    from pairrel.train import Trainer

    cfg = _config(args)
    run = parse_run_id(args.run)
    run_cfg = resolve_run(cfg, run)
    prepared = _prepared_sources(cfg, run["data"], args.prepared)
    return Trainer(run_cfg, args.out, prepared, progress=not args.no_progress).run()


def cmd_evaluate(args) -> int:
    from pairrel.encoder import EncoderConfig, build_encoder
    from pairrel.evaluate.run import evaluate, heldout_tasks, select_tasks

    cfg = _config(args)
    eval_cfg = cfg["evaluation"]
    if args.base:
        model_key, adapter, revision, kwargs = args.base, None, "base", None
        if model_key not in cfg["models"]:
            raise ConfigError(f"--base '{model_key}' is not defined under 'models'")
    else:
        run = parse_run_id(args.run)
        model_key = run["model"]
        adapter = args.checkpoint
        if not (adapter / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter}: not a checkpoint (no adapter_config.json)")
        step = int(json.loads((adapter / "trainer_state.json").read_text())["step"])
        revision, kwargs = "lora", {**{k: run[k] for k in ("data", "loss", "labels", "seed")}, "step": step}
    import torch

    if cfg.get("training", {}).get("num_threads"):
        torch.set_num_threads(int(cfg["training"]["num_threads"]))
    if args.task_type == "heldout":
        # The run's own data mix; for the base model, every mix of the grid.
        data_names = [run["data"]] if not args.base else sorted({r["data"] for r in expand_grid(cfg)})
        if args.prepared is None:
            raise ConfigError("--task-type heldout needs --prepared (the folder of prepared data mixes)")
        tasks = heldout_tasks(cfg, data_names, args.prepared)
    else:
        tasks = select_tasks(
            eval_cfg["benchmark"], args.task_type, eval_cfg.get("tasks"),
            eval_cfg.get("local_dataset"), eval_cfg.get("local_instruction", ""),
        )
    if not tasks:
        # e.g. the held-out group of a run without a K-fold source: nothing to evaluate.
        print(f"no tasks of type {args.task_type} for this model", file=sys.stderr)
        print(json.dumps({}))
        return 0
    encoder = build_encoder(EncoderConfig.from_dict(cfg["models"][model_key]), adapter=adapter)
    if torch.cuda.is_available():
        encoder.to("cuda")
    scores = evaluate(encoder, tasks, args.out, f"pairrel/{model_key}", revision, kwargs, eval_cfg.get("batch_size", 64))
    print(json.dumps(scores, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pairrel.data import cli as data_cli
    from pairrel.report import cli as report_cli

    parser = argparse.ArgumentParser(prog="pairrel", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data_cli.register(commands)

    p = commands.add_parser("config", help="validate a config, list its runs, or print it merged")
    p.add_argument("action", choices=["validate", "runs", "show"])
    _add_config(p)
    p.set_defaults(func=cmd_config)

    p = commands.add_parser("train", help="train one run (resumes from its last checkpoint)")
    _add_config(p)
    p.add_argument("--run", required=True, help="run id, e.g. model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42")
    p.add_argument("--prepared", required=True, type=Path, help="folder of the data mix's prepared sources")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("evaluate", help="evaluate a checkpoint or a base model with mteb")
    _add_config(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", help="run id of the checkpoint")
    who.add_argument("--base", help="evaluate the untrained base model of this models: key")
    p.add_argument("--checkpoint", type=Path, help="checkpoint folder (with --run)")
    p.add_argument("--task-type", default=None, help="only tasks of this type ('local': all local tasks; 'heldout': K-fold held-out queries)")
    p.add_argument("--prepared", type=Path, help="folder of the prepared data mixes (for --task-type heldout)")
    p.add_argument("--out", required=True, type=Path, help="mteb result cache folder")
    p.set_defaults(func=cmd_evaluate)

    report_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) and args.command == "evaluate" and args.checkpoint is None:
        parser.error("evaluate --run needs --checkpoint")
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"pairrel {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
