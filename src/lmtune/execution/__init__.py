"""execution layer of lmtune (see DESIGN.md)."""
