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


def test_a_resumed_run_trains_its_own_settings_not_the_checkpoints(tiny_model: Path, cache: Path,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    """PBT resumes a paused member from a donor's checkpoint with explored settings: the restored
    optimizer carries the donor's; the spec's are the ones trained (a learning rate of ~0 freezes)."""
    base = make_spec(tiny_model, cache, tmp_path / "a", lr_scheduler="constant", dropout=0.0, beta1=0.9)
    full = run(TrialSpec(**{**base.__dict__, "checkpoint_every": 1}))
    half = full[1]["checkpoint"]
    frozen = run(TrialSpec(**{**base.__dict__, "output_dir": str(tmp_path / "b"), "resume_from": half,
                              "hparams": {**base.hparams, "learning_rate": 1e-30}}))
    losses = [e["metrics"]["eval_loss"] for e in frozen]
    assert losses == pytest.approx([full[1]["metrics"]["eval_loss"]] * 2, abs=1e-6)  # nothing moved
    assert full[2]["metrics"]["eval_loss"] != pytest.approx(full[1]["metrics"]["eval_loss"], abs=1e-6)


def test_retune_puts_every_in_place_setting_in_force() -> None:
    import torch

    from lmtune.config import TrainingSection as T
    from lmtune.protocol import CHANGED_IN_PLACE
    from lmtune.training.optim import RETUNED, build_scheduler, mark_groups, retune

    model = torch.nn.Linear(4, 2)
    groups = [{"params": [model.weight], "name": "decay", "weight_decay": 0.01},
              {"params": [model.bias], "name": "no_decay", "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    mark_groups(opt, 1e-3)
    sched = build_scheduler(opt, T(lr_scheduler="constant"), 10)
    retune(opt, sched, T(learning_rate=5e-4, weight_decay=0.2, beta1=0.8, beta2=0.95, eps=1e-6))
    decay, no_decay = opt.param_groups
    assert decay["lr"] == pytest.approx(5e-4) and no_decay["lr"] == pytest.approx(5e-4)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.2, 0.0)
    assert decay["betas"] == (0.8, 0.95) and decay["eps"] == 1e-6
    sgd = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    mark_groups(sgd, 0.1)
    retune(sgd, build_scheduler(sgd, T(lr_scheduler="constant"), 10), T(learning_rate=0.05, momentum=0.5))
    assert sgd.param_groups[0]["momentum"] == 0.5 and sgd.param_groups[0]["lr"] == pytest.approx(0.05)
    # gradient clipping is read from the settings every step, LoRA dropout is a module: the rest restarts
    assert set(RETUNED) < CHANGED_IN_PLACE
