"""The exit status of every ``pairrel`` process, one owner for the library and the CLI.

The trainer returns :data:`EXIT_TERMINATED` after a SIGTERM (it has written a checkpoint; the
scheduler reruns the job and it resumes), the CLI maps errors onto the others
(:mod:`pairrel.cli.options` documents the table that ``pairrel --help`` prints).
"""

import signal

EXIT_OK = 0
EXIT_BAD_INPUT = 1  # a config key, file or line is wrong or missing (named on stderr), or a check failed
EXIT_USAGE = 2  # what argparse exits with
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: the shell's status of a job ended by SIGTERM
