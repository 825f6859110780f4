"""Bridges from other training libraries to lmtune script trials (``task.type: script``).

`lmtune.integrations.transformers.LmtuneCallback` makes an HF ``Trainer`` / TRL ``SFTTrainer`` script an
lmtune trial; `lmtune.integrations.tools` tunes a fine-tuning tool (TRL's CLI, HF example scripts,
LLaMA-Factory, axolotl) without editing it, attaching `ToolCallback` to its Trainer
(`lmtune.integrations.attach`). Each bridge imports its library only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy

if TYPE_CHECKING:
    from lmtune.integrations.attach import write_site
    from lmtune.integrations.hf_args import lmtune_only, optimizer_arguments, trainer_arguments
    from lmtune.integrations.tools import TOOLS, deliver, undeliverable

__all__ = ["TOOLS", "deliver", "lmtune_only", "optimizer_arguments", "trainer_arguments", "undeliverable",
           "write_site"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "TOOLS": "tools",
    "deliver": "tools",
    "undeliverable": "tools",
    "write_site": "attach",
    "lmtune_only": "hf_args",
    "optimizer_arguments": "hf_args",
    "trainer_arguments": "hf_args",
}

__getattr__ = lazy(__name__, _FACE)
