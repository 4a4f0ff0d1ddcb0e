"""``python -m pairrel.cli ARGS``: the ``pairrel`` command without its script on PATH."""

import sys

from pairrel.cli import main

sys.exit(main())
