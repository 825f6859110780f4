"""Bridges from other training libraries to lmtune script trials (``task.type: script``).

`lmtune.integrations.transformers.LmtuneCallback` makes an HF ``Trainer`` / TRL ``SFTTrainer`` script an
lmtune trial. Each bridge imports its library only when it is used.
"""

from __future__ import annotations

__all__: list[str] = []
