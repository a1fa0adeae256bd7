"""``python -m skyctl``: the same as the ``skyctl`` command."""

from skyctl.cli import main

main()
