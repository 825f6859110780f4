"""cli layer of lmtune (see DESIGN.md)."""
