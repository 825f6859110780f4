"""``python -m lmtune`` runs the CLI."""

from lmtune.cli import main

main()
