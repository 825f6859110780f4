"""space layer of lmtune (see DESIGN.md)."""
