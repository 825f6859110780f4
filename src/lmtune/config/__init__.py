"""config layer of lmtune (see DESIGN.md)."""
