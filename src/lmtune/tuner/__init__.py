"""tuner layer of lmtune (see DESIGN.md)."""
