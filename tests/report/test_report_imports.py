"""The report layer stays light: importing it loads neither torch nor transformers (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys


def test_report_does_not_import_training_stack() -> None:
    code = (
        "import sys, lmtune.report.render, lmtune.report.tables; "
        "bad = sorted(m for m in ('torch', 'transformers', 'accelerate', 'peft') if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
