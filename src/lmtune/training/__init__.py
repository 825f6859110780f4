"""training layer of lmtune (see DESIGN.md)."""
