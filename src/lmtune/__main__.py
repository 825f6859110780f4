"""``python -m lmtune`` runs the CLI."""

from lmtune.cli.app import main

main()
