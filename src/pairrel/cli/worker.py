"""One of the N processes of a multi-process run: ``python -m pairrel.cli.worker ARGS``.

:func:`pairrel.launch.launch_argv` starts N of these under torchrun. Each is ``pairrel ARGS``
plus one decision that can only be made on the node that runs the job: without CUDA,
accelerate must be told to use CPU processes (``ACCELERATE_USE_CPU``), or it silently runs N
independent single-process trainings that race on the same run directory.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def worker_main(argv: Sequence[str] | None = None) -> int:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    from pairrel.cli import main

    return main(list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(worker_main())
