"""The command that runs ``pairrel train`` (or any pairrel subcommand) on N processes.

``training.gpus`` = N > 1 runs the trainer under ``torchrun --standalone --nproc-per-node N``:
one process per GPU, each told its rank by the environment (RANK, LOCAL_RANK, WORLD_SIZE),
which ``accelerate.Accelerator`` reads to join the process group (NCCL on CUDA, gloo on CPU)
and to pick the GPU ``cuda:LOCAL_RANK``. The trainer then shards every global batch over the
processes and weights the loss so that the weights equal those of one process
(``pairrel.distributed``). N = 1 is the plain ``pairrel`` command.

Why torchrun rather than ``accelerate launch``: ``--standalone`` starts its own rendezvous on a
free port, so several multi-process runs on one node (Snakemake jobs side by side) never
collide on a fixed port (``accelerate launch`` uses 29500 unless told otherwise), and it needs
no accelerate config file.

Each process runs ``python -m pairrel.cli.worker <args>`` (:data:`WORKER_MODULE`), which is
``python -m pairrel.cli <args>`` (no dependence on the ``pairrel`` script being on PATH) plus the
one decision that can only be made on the node that runs the job (CPU processes without CUDA).
This module only names the command line's modules; it never imports them.

Which GPUs a run gets is the scheduler's business: under SLURM the job sees its N GPUs
(``--gpus=N``, from Snakemake's ``resources: gpu=N``); on one machine without a scheduler a
run uses GPUs 0 … N−1 unless CUDA_VISIBLE_DEVICES says otherwise.
"""

from __future__ import annotations

from typing import Any, Sequence

GPUS_KEY = "training.gpus"
CLI_MODULE = "pairrel.cli"  # `python -m` of the `pairrel` command
WORKER_MODULE = "pairrel.cli.worker"  # one process of a multi-process run


def n_processes(training: dict[str, Any]) -> int:
    """``training.gpus`` of a filled training config (the schema's default is 1): processes,
    one per GPU, for one run."""
    if "gpus" not in training:
        raise ValueError(f"config key '{GPUS_KEY}' is missing (the training settings were not filled from the schema)")
    value = training["gpus"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config key '{GPUS_KEY}' must be an integer >= 1, got {value!r}")
    return value


def launch_argv(processes: int, cli_args: Sequence[str], python: str | None = None) -> list[str]:
    """argv that runs ``pairrel <cli_args>`` on ``processes`` processes.

    ``python``: an interpreter to run everything with (``sys.executable`` in tests); by default
    the ``pairrel`` and ``torchrun`` scripts of the environment on PATH. Examples::

        launch_argv(1, ["train", "--config", "c.yaml"])
            → ["pairrel", "train", "--config", "c.yaml"]
        launch_argv(4, ["train", "--config", "c.yaml"])
            → ["torchrun", "--standalone", "--nproc-per-node=4", "-m", "--", "pairrel.cli.worker",
               "train", "--config", "c.yaml"]
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
    args = [str(arg) for arg in cli_args]
    if processes == 1:
        return [python, "-m", CLI_MODULE, *args] if python else ["pairrel", *args]
    torchrun = [python, "-m", "torch.distributed.run"] if python else ["torchrun"]
    # "--" ends torchrun's own options: its parser would otherwise take an abbreviation of one
    # of them in the command's arguments (``--run`` is ambiguous with ``--run-path``).
    return [*torchrun, "--standalone", f"--nproc-per-node={processes}", "-m", "--", WORKER_MODULE, *args]


def launch_command(processes: int, cli_args: Sequence[str], python: str | None = None) -> str:
    """:func:`launch_argv` as one shell-quoted string (for a Snakemake ``shell:`` line)."""
    import shlex

    return shlex.join(launch_argv(processes, cli_args, python))
