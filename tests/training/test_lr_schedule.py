"""lmtune's LR multiplier against transformers.get_scheduler, the schedules HF Trainer runs (#15 item 10).

Measured, not assumed: without warm-up the two agree at every step for linear, cosine and constant, and
after warm-up they agree again. During warm-up lmtune's step s trains at (s + 1) / W of the rate where
HF's trains at s / W: HF's first step has rate 0 and changes nothing. That step is why lmtune keeps its
own 11-line multiplier rather than calling get_scheduler (docs: README, "training"); `lmtune export
--format hf` states warm-up in HF's steps, so an HF run of an exported trial differs by that one step.
"""

from __future__ import annotations

import pytest
import torch
from transformers import get_scheduler

from lmtune.training.optim import lr_lambda

HF_NAME = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def _hf(kind: str, total: int, warmup: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(HF_NAME[kind], opt, num_warmup_steps=warmup, num_training_steps=total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_without_warmup_the_schedule_is_hf_s(kind: str) -> None:
    f = lr_lambda(kind, 40, 0)
    assert [f(s) for s in range(40)] == pytest.approx(_hf(kind, 40, 0), abs=1e-12)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_with_warmup_only_the_warmup_steps_differ_by_one_step(kind: str) -> None:
    total, warmup = 40, 8
    ours, hf = [lr_lambda(kind, total, warmup)(s) for s in range(total)], _hf(kind, total, warmup)
    assert hf[0] == 0.0 and ours[0] == pytest.approx(1 / warmup)  # HF's first step trains at rate 0
    assert ours[:warmup - 1] == pytest.approx(hf[1:warmup])  # the same ramp, one step earlier
    assert ours[warmup:] == pytest.approx(hf[warmup:], abs=1e-12)  # and the same decay after it
