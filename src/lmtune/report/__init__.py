"""report layer of lmtune (see DESIGN.md)."""
