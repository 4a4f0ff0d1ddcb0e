"""``pairrel plan`` (jobs, tokens, GPU-hours before running) and ``pairrel bench`` (this
machine's throughput); the figures are :mod:`pairrel.plan`'s."""

from __future__ import annotations

import json
from pathlib import Path

from pairrel.cli.options import EXIT_OK, add_config_option
from pairrel.config import ConfigError, load_config


def study_plan(cfg: dict, throughput: dict, input_order: bool, source: str):
    """The cost plan of a config's jobs (the one place this command enumerates them)."""
    from pairrel.plan import jobs_from_config, plan_jobs

    return plan_jobs(jobs_from_config(cfg, throughput), throughput, input_order, source)


def cmd_plan(args) -> int:
    from pairrel.plan import format_plan, load_throughput

    throughput, source = load_throughput(args.throughput)
    plan = study_plan(load_config(*args.config), throughput, args.input_order, source)
    if args.json:
        print(json.dumps({**plan.as_dict(), "device": throughput["device"], "input_order": args.input_order}, indent=2))
    else:
        print(format_plan(plan, f"{throughput['device']} ({source})" + (", input-order encoding" if args.input_order else "")))
    return EXIT_OK


def cmd_bench(args) -> int:
    import torch

    from pairrel.config import atomic_write_text
    from pairrel.plan import measure_model
    from pairrel.study import Study

    cfg = load_config(*args.config)
    keys = args.model or Study(cfg).models_used
    unknown = [k for k in keys if k not in cfg["models"]]
    if unknown:
        raise ConfigError(f"--model: not defined under 'models': {', '.join(unknown)}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    measured = {cfg["models"][k]["name_or_path"]: measure_model(cfg["models"][k], args.n_texts) for k in keys}
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    data = {**old, "device": f"{device} (pairrel bench)", "models": {**old.get("models", {}), **measured}}
    atomic_write_text(args.out, json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return EXIT_OK


def register(subparsers) -> None:
    """Add ``plan`` and ``bench``."""
    p = subparsers.add_parser("plan", help="jobs, tokens and estimated GPU-hours per rule, before running")
    add_config_option(p)
    p.add_argument("--throughput", type=Path, help="throughput file written by `pairrel bench` (default: H200 figures)")
    p.add_argument("--input-order", action="store_true", help="estimate encoding at the input-order (pre-embed) speed")
    p.add_argument("--json", action="store_true", help="one JSON object; total_gpu_hours is a number")
    p.set_defaults(func=cmd_plan)

    p = subparsers.add_parser("bench", help="measure encode/train tokens per second of the config's models on this GPU")
    add_config_option(p)
    p.add_argument("--model", action="append", help="models: key to measure (default: every model of the grid)")
    p.add_argument("--n-texts", type=int, default=2048, help="synthetic passages to encode (default 2048)")
    p.add_argument("--out", required=True, type=Path, help="throughput file to write (JSON; other models are kept)")
    p.set_defaults(func=cmd_bench)
