"""PBT, ASHA/Hyperband and budgets through the real tuner on the tiny model."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import set_args, tiny_overrides

pytestmark = pytest.mark.slow  # end-to-end studies of real trainer processes: the slow tier

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def cmd(model: Path, data: Path, d: Path, *extra: str, n: int) -> list[str]:
    sets = [*tiny_overrides(model, data, d), *extra]
    return [sys.executable, "-m", "lmtune", "tune", QUICKSTART, *set_args(sets),
            "--n-trials", str(n)]


def trials(d: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials


def test_pbt_population_with_fewer_workers_than_members(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "pbt"
    out = subprocess.run(cmd(tiny_model, tiny_csv, d, "search.strategy=pbt", "training.max_steps=9", n=2),
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    done = trials(d)
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"]
    for t in done:
        pbt = t.user_attrs["pbt"]
        assert pbt["schedule"][0]["units"] == 0 and pbt["units"] == 3
        assert [p["units"] for p in t.user_attrs["curve"]][-1] == 3
    state = json.loads((d / "pbt_state.json").read_text())
    assert all(m["finished"] for m in state["pbt"]["members"])
    # retention: only the best checkpoint survives a finished population
    left = list(d.glob("trials/*/checkpoints/u*"))
    best = state["pbt"]["best"]
    assert [p.name for p in left] == [f"u{best['units']:05d}"]
    # ... and `lmtune status` reports what they occupy
    kept = sum(f.stat().st_size for f in left[0].rglob("*") if f.is_file())
    status = subprocess.run([sys.executable, "-m", "lmtune", "status", str(d)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert f"checkpoints kept on disk: {kept / 2**20:,.1f} MiB" in status.stdout


def kill_once_a_member_has_a_checkpoint(argv: list[str], d: Path) -> dict:
    """Run the PBT study and SIGKILL its process group once an unfinished member has reported a checkpoint;
    returns the saved ``pbt_state.json``."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state_file = d / "pbt_state.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            members = json.loads(state_file.read_text())["pbt"]["members"] if state_file.exists() else []
            if any(m["checkpoint"] and not m["finished"] for m in members):
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return dict(json.loads(state_file.read_text()))


def test_pbt_killed_and_rerun_continues_population(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "pbt"
    argv = cmd(tiny_model, tiny_csv, d, "search.strategy=pbt", "training.max_steps=9", n=2)
    before = kill_once_a_member_has_a_checkpoint(argv, d)["pbt"]["members"]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    done = trials(d)
    assert [t.number for t in done] == [0, 1] and all(t.state.name == "COMPLETE" for t in done)
    # a member that had a checkpoint resumed from it: its curve never goes back to unit 1 after it
    for m in before:
        if m["checkpoint"] and m["checkpoint"][0] == m["member"]:
            units = [p["units"] for p in done[m["member"]].user_attrs["curve"]]
            assert units.count(1) == 1, units


def test_pbt_member_whose_checkpoint_vanished_starts_over_instead_of_being_lost(tiny_model: Path, tiny_csv: Path,
                                                                                tmp_path: Path) -> None:
    """Killed once a member has reported a checkpoint; that checkpoint is deleted by hand. The re-run
    warns, starts that member over from scratch with its settings, and finishes the whole population."""
    d = tmp_path / "pbt"
    argv = cmd(tiny_model, tiny_csv, d, "search.strategy=pbt", "training.max_steps=9", n=2)
    saved = kill_once_a_member_has_a_checkpoint(argv, d)
    lost = next(m for m in saved["pbt"]["members"] if m["checkpoint"] and not m["finished"])
    owner, units = lost["checkpoint"]
    folder = d / "trials" / f"{saved['trials'][str(owner)]:04d}" / "checkpoints" / f"u{units:05d}"
    shutil.rmtree(folder)
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"its checkpoint {folder} is gone; it starts over" in out.stderr, out.stderr
    done = trials(d)
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"], [t.user_attrs.get("fail_reason") for t in done]
    pbt = done[lost["member"]].user_attrs["pbt"]
    assert pbt["restarts"] == [{"units": lost["units"], "missing": str(folder)}]
    assert pbt["units"] == 3 and pbt["schedule"][0]["units"] == 0
    curve = [p["units"] for p in done[lost["member"]].user_attrs["curve"]]
    assert curve.count(1) == 2 and curve[-1] == 3, curve  # unit 1 trained twice: before the loss and after


def test_asha_and_hyperband_prune_and_record_cost(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    for strategy in ("asha", "hyperband"):
        d = tmp_path / strategy
        extra = [f"search.strategy={strategy}", "training.max_steps=12", "search.min_units=1",
                 "search.space.learning_rate.low=1e-7"]
        out = subprocess.run(cmd(tiny_model, tiny_csv, d, *extra, n=6), capture_output=True, text=True, cwd=ROOT,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        ts = trials(d)
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in ts) == 6
        for t in ts:
            assert t.user_attrs["train_tokens"] > 0
            if t.state.name == "PRUNED":
                assert t.user_attrs["pruned_at_units"] < 4 and len(t.intermediate_values) < 4


def test_prune_metric_reports_the_loss_in_the_study_direction(tiny_model: Path, tiny_csv: Path,
                                                              tmp_path: Path) -> None:
    """Selecting on accuracy, pruning on eval_loss: the pruner sees -eval_loss at every rung."""
    d = tmp_path / "asha-loss"
    extra = ["search.strategy=asha", "training.max_steps=8", "search.min_units=1", "search.prune_metric=eval_loss"]
    out = subprocess.run(cmd(tiny_model, tiny_csv, d, *extra, n=3), capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for t in trials(d):
        losses = {p["units"]: p["metrics"]["eval_loss"] for p in t.user_attrs["curve"]}
        assert t.intermediate_values and t.intermediate_values == {u: -v for u, v in losses.items()}
        if t.state.name == "COMPLETE":
            assert t.value == t.user_attrs["curve"][-1]["metrics"]["eval_accuracy"]  # selection unchanged


def test_token_budget_stops_cleanly(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "budget"
    out = subprocess.run(cmd(tiny_model, tiny_csv, d, "budget.max_train_tokens=10", n=5), capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    # the budget is a cap (tests/tuner/test_budget.py): 10 tokens is less than one evaluation interval,
    # so no trial starts, and the run says why (exit 1: no trial completed)
    assert out.returncode == 1 and "no trial completed yet" in out.stdout, out.stdout + out.stderr
    assert "max_train_tokens" in out.stdout
    assert [t.state.name for t in trials(d)] == ["WAITING"]  # the default trial, queued for a later run
