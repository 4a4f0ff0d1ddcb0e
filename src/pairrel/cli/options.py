"""What every ``pairrel`` command shares: the ``--config`` option, the study it names, the exit
codes and which errors count as bad input.

Exit status of every command (``pairrel --help`` prints it as :data:`EPILOG`):

====  =========================================================================================
0     success
1     bad input: a config key, a file or a line is wrong or missing, named on stderr; or a
      check that found problems (``data check``, ``baseline-check`` beyond tolerance)
2     usage error (argparse: an unknown option, a missing argument)
143   ``train`` stopped by SIGTERM after writing a checkpoint (128 + SIGTERM; rerun to resume)
====  =========================================================================================

``gpu-run`` exits 1 when it cannot start the command (no slots, command not found); once it has
started the command it *is* that command (exec), so its status is the command's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pairrel.config import ConfigError, load_config

from pairrel.exit_status import EXIT_BAD_INPUT, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE  # noqa: F401 (the CLI's names)

EPILOG = ("exit status: 0 success; 1 bad input (the config key, file or line is named on stderr); "
          "2 usage error; 143 training stopped by SIGTERM after a checkpoint")

# Bad-input errors of modules a command may import: (module, class). A module that was never
# imported raised none, so the classes are looked up only in the modules loaded by then (looking
# them up eagerly would import each module, and with it torch or mteb, on every command).
BAD_INPUT_ERRORS = (("pairrel.data.prefetch", "DataUnavailableError"), ("pairrel.data.registry", "UnknownDatasetError"),
                    ("pairrel.data.sources", "SourceError"), ("pairrel.report.scores", "ResultFileError"),
                    ("pairrel.gpu_slots", "SlotError"))


def add_config_option(parser: argparse.ArgumentParser, required: bool = True, help: str | None = None) -> None:
    """``--config FILE``, repeatable: the files are deep-merged, later ones over earlier ones
    (:func:`pairrel.config.load_config`). ``help`` says what a command uses the config for."""
    parser.add_argument(
        "--config", action="append", required=required, type=Path, metavar="FILE",
        help=help or "config file; repeat to merge presets over it (later files win)",
    )


def study_from_args(args: argparse.Namespace):
    """The study of ``--config`` files, with its local datasets registered."""
    from pairrel.data.registry import register_from_config
    from pairrel.study import Study

    study = Study(load_config(*args.config))
    register_from_config(study.cfg)
    return study


def is_bad_input(err: BaseException) -> bool:
    """Whether ``err`` is the user's input at fault (exit 1 with its message), not a bug."""
    loaded = tuple(getattr(sys.modules[module], name) for module, name in BAD_INPUT_ERRORS if module in sys.modules)
    return isinstance(err, (ConfigError, FileNotFoundError, ValueError) + loaded)
