"""``python -m bench``: every measurement, a table, and bench/results.json."""

import sys

from bench.run import main

sys.exit(main(sys.argv[1:]))
