"""The frozen trial file: everything a trainer process needs, decided by the driver alone.

Trainers never see the study config or the search space, only this, so every process of a trial
trains with exactly the same hyperparameters (no re-sampling in workers).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrialSpec:
    trial: int
    model: str                      # folder or hub id, already resolved
    task_type: str                  # classification | causal_lm
    data_cache: str                 # folder written by lmtune.data.tokenized.build_cache
    hparams: dict[str, Any]         # the full training section with the trial's params applied
    examples_per_unit: int          # one evaluation unit = this many training examples (equal across trials)
    total_examples: int             # this trial's training length in examples (its epochs / max_steps)
    metric: str = "eval_accuracy"
    direction: str = "maximize"
    output_dir: str = "."
    device: str = "cpu"
    threads: int | None = None
    trust_remote_code: bool = False
    interactive: bool = True        # wait for the driver's decision after each evaluation
    evaluate_test: bool = False     # final runs: also score the test split at the end
    save_model: bool = False        # final runs: save the trained model to output_dir/model
    checkpoint_every: int = 0       # PBT: save an exact checkpoint at every multiple of this many units
                                    # (and at the end) before the evaluation is reported; 0 = never
    save_adapter: bool = False      # LoRA studies: save the trained adapter to output_dir/adapter at the end
    resume_from: str | None = None  # an exact checkpoint folder to continue from
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def read(cls, path: str | Path) -> TrialSpec:
        return cls(**json.loads(Path(path).read_text()))
