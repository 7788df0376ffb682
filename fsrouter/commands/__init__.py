"""Operator commands behind ``fsrouter routes|agents|two-way|simulate|oncall``.

One module per command group; :mod:`fsrouter.cli` parses the arguments and calls the
``run_*`` functions here with the parsed :class:`argparse.Namespace`. Each returns an exit code
or raises :class:`fsrouter.commands.common.Failure` (message lines for stderr and a code).

Exit codes are the constants below (also in ``fsrouter.cli``'s docstring and the README).
"""

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected error (a bug)
EXIT_USAGE = 2  # usage error, invalid configuration or invalid input: nothing was changed
EXIT_STORE = 3  # the database cannot be opened, or its schema is not up to date
EXIT_BIND = 4  # the call listener cannot be bound
EXIT_GAPS = 5  # ``fsrouter oncall`` found times when an option has nobody to ring
