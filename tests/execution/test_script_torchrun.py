"""A real multi-process script trial: ``task.command`` is ``torchrun --nproc-per-node 2 ... train.py``, on CPU
with the gloo backend. Every rank reads ``lmtune.trial()`` (one frozen file), only rank 0 reports, and every
rank must receive the same decisions, so a pruned trial's ranks stop at the same evaluation."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lmtune
from lmtune.execution.script import program

torch = pytest.importorskip("torch")

# A stand-in training run: linear regression on synthetic data, data-parallel over the ranks (each rank
# takes its half of every batch; the gradients are all-reduced and averaged before the SGD step), scored
# on one validation set whose mean loss is all-reduced too. Each rank writes what it was given and every
# decision it received to rank<r>.json.
PROGRAM = textwrap.dedent("""
    import json, os
    import torch
    import torch.distributed as dist
    import lmtune

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    t = lmtune.trial()
    lr, batch = t.params["learning_rate"], t.params["batch_size"]
    total, every = t.total_examples, t.examples_per_unit

    g = torch.Generator().manual_seed(0)  # the same data on every rank
    w_true = torch.tensor([[1.5], [-2.0], [0.5], [3.0]])
    x = torch.randn(total + 64, 4, generator=g)
    y = x @ w_true + 0.1 * torch.randn(total + 64, 1, generator=g)
    x_val, y_val, x, y = x[:64], y[:64], x[64:], y[64:]
    model = torch.nn.Linear(4, 1)
    torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)

    def val_loss():
        with torch.no_grad():
            mine = torch.nn.functional.mse_loss(model(x_val[rank::world]), y_val[rank::world])
        dist.all_reduce(mine)
        return mine.item() / world

    seen, decisions, reported = 0, [], []
    while seen < total:
        xb, yb = x[seen:seen + batch], y[seen:seen + batch]
        loss = torch.nn.functional.mse_loss(model(xb[rank::world]), yb[rank::world])
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        seen += len(xb)
        if seen % every == 0 or seen >= total:
            value = val_loss()
            d = t.report({"eval_loss": value}, examples=seen)  # sent by rank 0 only; every rank waits
            decisions.append(type(d).__name__)
            reported.append([seen, value])
            if t.should_stop:
                break
    out = {"rank": rank, "world": world, "lr": lr, "batch": batch, "total": total, "seen": seen,
           "decisions": decisions, "reported": reported,
           "weights": [v for p in model.parameters() for v in p.detach().flatten().tolist()]}
    with open(os.path.join(t.output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun() -> str:
    """The torchrun the driver starts: beside the interpreter lmtune runs under (its virtual environment)."""
    found = program(["torchrun"])[0]
    if Path(found).parent != Path(sys.executable).parent:
        pytest.skip(f"no torchrun beside {sys.executable}")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch has no gloo backend")
    return found


def _ranks(result: lmtune.StudyResult, number: int) -> list[dict[str, Any]]:
    folder = result.study_dir / "trials" / f"{number:04d}"
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_a_torchrun_script_trial_gives_every_rank_the_same_settings_and_decisions(tmp_path: Path) -> None:
    _torchrun()
    (tmp_path / "train.py").write_text(PROGRAM)
    raw = {
        "study": {"name": "ddp", "dir": str(tmp_path / "study"), "metric": "eval_loss", "direction": "minimize"},
        "task": {"type": "script", "workdir": str(tmp_path), "metrics": ["eval_loss"], "train_size": 64,
                 "command": ["torchrun", "--nproc-per-node", "2", "--master-port", str(_free_port()), "train.py"]},
        # the default (lr 0.1, trial 0) learns fastest; the space's other rates are slower, so ASHA prunes
        # them at its first rung (after 1 unit = 2 steps of 8 = 16 examples; 4 units in a trial)
        "training": {"learning_rate": 0.1, "batch_size": 8, "eval_every": 2, "epochs": 1},
        "search": {"strategy": "asha", "min_units": 1,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}},
    }
    result = lmtune.tune(raw, n_trials=3, progress=False)

    states = [t.state for t in result.trials]
    assert "FAIL" not in states and "PRUNED" in states and "COMPLETE" in states, states
    for t in result.trials:
        zero, one = _ranks(result, t.number)
        assert (zero["world"], one["world"]) == (2, 2)
        # one frozen trial file: both ranks trained the trial's settings, and the all-reduce kept them in step
        assert zero["lr"] == one["lr"] == pytest.approx(t.config["learning_rate"])
        assert zero["batch"] == one["batch"] == 8 and zero["total"] == one["total"] == 64
        assert zero["weights"] == pytest.approx(one["weights"])
        # every rank received the same decision for every evaluation, and stopped at the same one
        assert zero["decisions"] == one["decisions"] and zero["seen"] == one["seen"]
        assert zero["reported"] == one["reported"]  # the all-reduced validation loss
        # the study recorded rank 0's reports: one curve point per evaluation, at the examples it reported
        assert [p["examples"] for p in t.curve] == [seen for seen, _ in zero["reported"]]
        if t.state == "PRUNED":
            assert zero["decisions"][-1] == "Stop" and zero["seen"] < 64
            assert set(zero["decisions"][:-1]) <= {"Continue"}
        else:
            assert zero["seen"] == 64 and set(zero["decisions"]) == {"Continue"}
            assert t.value == pytest.approx(zero["reported"][-1][1])
    assert result.best is not None and result.best.number == 0 and result.best.state == "COMPLETE"
