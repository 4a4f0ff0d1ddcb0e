"""``pairrel plan`` (jobs, tokens, GPU-hours before running) and ``pairrel bench`` (this
machine's throughput); the figures are :mod:`pairrel.plan`'s."""

from __future__ import annotations

import json
from pathlib import Path

from pairrel.cli.options import EXIT_OK, add_config_option
from pairrel.config import load_config


def cmd_plan(args) -> int:
    from pairrel.jobs import plan_config
    from pairrel.plan import format_plan, load_throughput

    throughput, source = load_throughput(args.throughput)
    plan = plan_config(load_config(*args.config), throughput, args.input_order, source)
    if args.json:
        print(json.dumps({**plan.as_dict(), "device": throughput["device"], "input_order": args.input_order}, indent=2))
    else:
        print(format_plan(plan, f"{throughput['device']} ({source})" + (", input-order encoding" if args.input_order else "")))
    return EXIT_OK


def cmd_bench(args) -> int:
    from pairrel.plan import bench_config

    data = bench_config(load_config(*args.config), args.model, args.n_texts, args.out)
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
