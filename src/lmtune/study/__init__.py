"""study layer of lmtune (see DESIGN.md)."""
