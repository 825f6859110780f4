"""data layer of lmtune (see DESIGN.md)."""
