"""``python -m uebench.cli``: the same command line as ``uebench``."""

from uebench.cli import main

main()
