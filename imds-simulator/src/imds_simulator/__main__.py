"""``python -m imds_simulator``: the same as the ``imds-simulator`` command."""

import sys

from imds_simulator.simulator import main

raise SystemExit(main(sys.argv[1:]))
