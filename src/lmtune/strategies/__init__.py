"""strategies layer of lmtune (see DESIGN.md)."""
