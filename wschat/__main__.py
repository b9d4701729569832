"""Run the command line with ``python -m wschat``."""

from wschat.cli import main

main()
