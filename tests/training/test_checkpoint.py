"""Resuming from an exact checkpoint reproduces the uninterrupted run (fp32, CPU, to 1e-6)."""

import json
from pathlib import Path
from typing import Any

import pytest
from test_loop import cache, make_spec  # noqa: F401  (module fixture)

from lmtune.protocol import Continue, TrialSpec, decode_decision
from lmtune.training.checkpoint import WEIGHTS
from lmtune.training.loop import train


def run(spec: TrialSpec) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    train(spec, events.append, lambda: Continue())
    return [e for e in events if e["event"] == "eval"]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_equals_uninterrupted(optimizer: str, tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    base = make_spec(tiny_model, cache, tmp_path / "a", optimizer=optimizer, dropout=0.2, lr_scheduler="cosine",
                     warmup_ratio=0.1, batch_size=8)
    straight = TrialSpec(**{**base.__dict__, "checkpoint_every": 1})
    full = run(straight)
    assert len(full) == 4
    half = Path(full[1]["checkpoint"])  # after 2 of 4 evaluation units
    assert (half / WEIGHTS).is_file()
    resumed = run(TrialSpec(**{**base.__dict__, "output_dir": str(tmp_path / "b"), "resume_from": str(half)}))
    assert [e["units"] for e in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed, strict=True):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
        for key in ("train_loss", "eval_loss", "eval_accuracy"):
            assert b["metrics"][key] == pytest.approx(a["metrics"][key], abs=1e-6), key


def test_exploit_switches_state_and_settings(tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    donor = run(TrialSpec(**{**make_spec(tiny_model, cache, tmp_path / "d").__dict__, "checkpoint_every": 1}))
    spec = make_spec(tiny_model, cache, tmp_path / "e", learning_rate=1e-9)
    order = json.dumps({"exploit": {"checkpoint": donor[1]["checkpoint"], "hparams": {"learning_rate": 0.002}}})
    answers = iter([order])
    events: list[dict[str, Any]] = []
    result = train(spec, events.append, lambda: decode_decision(next(answers, "continue")))
    kinds = [e["event"] for e in events]
    assert kinds.count("exploited") == 1
    evals = [e for e in events if e["event"] == "eval"]
    # after the exploit the member continues from the donor's position (units 2) to the end
    assert [e["units"] for e in evals] == [1, 3, 4]
    assert result["examples"] == 256


def test_schedule_replay_changes_settings_at_units(tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    """A schedule that sets the learning rate to ~0 from unit 2 on freezes the model from there."""
    spec = make_spec(tiny_model, cache, tmp_path, lr_scheduler="constant", dropout=0.0)
    spec = TrialSpec(**{**spec.__dict__, "extra": {"schedule": [{"units": 2, "hparams": {"learning_rate": 1e-30}}]}})
    evals = run(spec)
    losses = [e["metrics"]["eval_loss"] for e in evals]
    assert losses[1] != losses[0]
    assert losses[2] == pytest.approx(losses[1], abs=1e-6) and losses[3] == pytest.approx(losses[1], abs=1e-6)
