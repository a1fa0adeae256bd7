"""``python -m skyctl``: the same as the ``skyctl`` command."""

from skyctl.cli_exit import main

main()
