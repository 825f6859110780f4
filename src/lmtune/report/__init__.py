"""report layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy

if TYPE_CHECKING:
    from lmtune.report.diff import ABSENT, Change, best_changes, change_lines
    from lmtune.report.render import REPORT_DIR, StudyDirError, StudyMetaError, size_note, write_report
    from lmtune.report.series import TransferSummary, transfer_summary
    from lmtune.report.tables import (
        ComparisonRow,
        comparison_table,
        final_cost,
        search_cost,
        seeds_advice,
        selection_gap,
        selection_gap_text,
        trial_table,
    )

__all__ = ["ABSENT", "REPORT_DIR", "Change", "ComparisonRow", "StudyDirError", "StudyMetaError", "TransferSummary",
           "best_changes", "change_lines", "comparison_table", "final_cost", "search_cost", "seeds_advice",
           "selection_gap", "selection_gap_text", "size_note", "transfer_summary", "trial_table", "write_report"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "ABSENT": "diff",
    "Change": "diff",
    "ComparisonRow": "tables",
    "REPORT_DIR": "render",
    "StudyDirError": "render",
    "StudyMetaError": "render",
    "TransferSummary": "series",
    "best_changes": "diff",
    "change_lines": "diff",
    "comparison_table": "tables",
    "final_cost": "tables",
    "search_cost": "tables",
    "seeds_advice": "tables",
    "selection_gap": "tables",
    "selection_gap_text": "tables",
    "size_note": "render",
    "transfer_summary": "series",
    "trial_table": "tables",
    "write_report": "render",
}

__getattr__ = lazy(__name__, _FACE)
