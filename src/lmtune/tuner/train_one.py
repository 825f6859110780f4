"""Train one configuration and keep the model: ``lmtune train CONFIG`` (and `lmtune.train`).

The configuration is the config's ``training`` section (what ``lmtune export --format yaml`` writes for
the best trial); nothing is searched. It runs in its own directory (``--out``, default
``<study.dir>-train``), never in a study's: one trial through the one loop (`lmtune.tuner.drive`) on the
config's backend, not interactive, evaluated on validation and then on the test split, its model saved.
The directory then holds ``model/`` (an HF folder with the tokenizer and ``lmtune-config.yaml``; a LoRA
run saves its adapter there, naming the base model as ``task.model`` gave it), ``result.json`` (both
splits' metrics, train tokens, wall time) and ``trials/0000/`` (the trial file and the trainer's log).
A directory that already holds a trained model is refused rather than overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmtune.config import StudyConfig, StudySection, config_yaml
from lmtune.errors import StudyError
from lmtune.execution import Executor, make_executor
from lmtune.protocol import Ending
from lmtune.schedulers import OneRun
from lmtune.study import check_writable, record
from lmtune.training import base_model_name
from lmtune.tuner.drive import drive
from lmtune.tuner.final_export import export_model
from lmtune.tuner.plan import make_plan

__all__ = ["TrainResult", "train_one"]

RESULT_FILE = "result.json"


@dataclass
class TrainResult:
    """What one ``lmtune train`` run gave: its folder, model folder (None when the run failed or, for a
    script, when it saved none) and metrics, or the failure reason."""

    out_dir: Path
    model_dir: Path | None
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    train_tokens: int
    wall_time_s: float
    failure: str = ""


def default_out(study: StudySection) -> Path:
    """``<study.dir>-train``."""
    return Path(f"{Path(study.dir).as_posix().rstrip('/')}-train")


def train_one(cfg: StudyConfig, *, out: Path | str | None = None, backend: Executor | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Train ``cfg.training`` once in ``out`` (default ``<study.dir>-train``) and save its model."""
    t0 = time.monotonic()
    out_dir = Path(out) if out is not None else default_out(cfg.study)
    check_writable(out_dir, field="--out")  # the default, <study.dir>-train, too: --out is the way to move it
    if (out_dir / "model").exists() or (out_dir / RESULT_FILE).exists():
        raise StudyError(f"{out_dir} already holds a trained model ({out_dir / 'model'}); give another "
                         "--out, or delete that folder to train again")
    cfg = cfg.model_copy(update={"study": cfg.study.model_copy(update={"dir": str(out_dir)})})
    plan = make_plan(cfg)
    executor = backend or make_executor(cfg.execution.model_copy(update={"workers": 1}))
    one = OneRun(plan, log)
    try:
        drive(one, executor)
    finally:
        executor.close()
    outcome = one.outcome
    if outcome is None:
        return TrainResult(out_dir, None, {}, {}, 0, time.monotonic() - t0, failure="the run did not start")
    ended = record.ended(outcome, metric=None, wall_s=one.wall_s)  # the fields every trial's record holds
    end = outcome.end
    if ended.ending is Ending.FAILED or end is None:
        return TrainResult(out_dir, None, {}, {}, 0, time.monotonic() - t0, failure=ended.reason or "no end event")
    model_dir: Path | None = None
    saved = Path(end.model_dir) if end.model_dir else None
    if saved is not None and saved.is_dir():
        header = ["Written by 'lmtune train': the configuration below, trained once on the training split.",
                  "Test metrics of this model: " + ", ".join(f"{k}={v:.4f}" for k, v in
                                                             sorted((end.test_metrics or {}).items()))]
        text = config_yaml(cfg.model_dump(mode="json"), plan.defaults, header=header)
        model_dir = export_model(saved, out_dir / "model", tokenizer_from=plan.model, config_text=text,
                                 trust_remote_code=cfg.task.trust_remote_code,
                                 base_model=base_model_name(cfg.task.model or plan.model, plan.model))
    else:
        log("the trainer saved no model (a script trial saves its own); only the metrics are kept")
    result = TrainResult(out_dir, model_dir, dict(end.metrics), dict(end.test_metrics or {}),
                         int(ended.fields["train_tokens"]), time.monotonic() - t0)
    f = ended.fields
    (out_dir / RESULT_FILE).write_text(json.dumps({
        "config": plan.defaults, "validation_metrics": result.validation_metrics,
        "test_metrics": result.test_metrics, "train_tokens": result.train_tokens,
        "wall_time_s": result.wall_time_s, "model_dir": str(model_dir) if model_dir else None,
        "precision": f.get("precision"), "precision_reason": f.get("precision_reason"), "forward": f.get("forward"),
        "overhead_s": f.get("overhead_s"), "stopped_by": f.get("stopped_by")},
        indent=1, sort_keys=True))
    return result
