"""``pairrel gpu-run --gpus N -- CMD …``: CMD on N free GPU slots of this machine
(:mod:`pairrel.gpu_slots`).

Exit status: 1 when CMD cannot be started (no such slots, CMD not found), 2 usage error;
otherwise gpu-run becomes CMD (exec) and the status is CMD's own.
"""

from __future__ import annotations

import argparse

from pairrel.cli.options import EXIT_OK


def cmd_gpu_run(args) -> int:
    from pairrel import gpu_slots

    if args.status:
        for device, holder in gpu_slots.holders(gpu_slots.device_ids(), gpu_slots.lock_dir()).items():
            print(f"gpu {device}: {holder or 'free'}")
        return EXIT_OK
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    gpu_slots.run(args.gpus, command, poll_seconds=args.poll, timeout=args.timeout)
    return EXIT_OK  # not reached: run() becomes the command or raises


def register(subparsers) -> None:
    """Add ``gpu-run``."""
    p = subparsers.add_parser(
        "gpu-run", help="run a command on N free GPUs of this machine (sets CUDA_VISIBLE_DEVICES)",
        description="Take N free GPU slots (lock files in $PAIRREL_GPU_LOCK_DIR), export "
                    "CUDA_VISIBLE_DEVICES and exec CMD. Devices: $PAIRREL_GPUS (count or ids) or nvidia-smi -L.",
        epilog="exit status: 1 when CMD cannot be started (no slots, not found), 2 usage error; "
               "otherwise CMD's own (gpu-run becomes CMD)")
    p.add_argument("--gpus", type=int, default=1, help="slots to take (default 1; 0 runs CMD unchanged)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds of waiting")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between tries while all slots are taken")
    p.add_argument("--status", action="store_true", help="list the slots and their holders, then exit")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARG...")
    p.set_defaults(func=cmd_gpu_run)
