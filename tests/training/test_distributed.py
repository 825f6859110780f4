"""A data-parallel trial (training/distributed.py) through the real trainer process: 2 gloo ranks on CPU
train what one process trains with the same effective batch, take rank 0's decisions together, and
resume from a checkpoint rank 0 wrote."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_lm_training import lm_cache, lm_spec  # noqa: F401  (module fixture)
from test_loop import cache, make_spec  # noqa: F401  (module fixture)

from lmtune.protocol import TrialSpec

pytestmark = pytest.mark.slow  # end-to-end studies of real trainer processes: the slow tier

NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0}  # dropout masks differ per slice; the rest must not


def run_worker(spec: TrialSpec, folder: Path, decisions: list[str] = (),  # type: ignore[assignment]
               env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trial.json"
    spec.write(path)
    out = subprocess.run([sys.executable, "-m", "lmtune.training.worker", str(path)], capture_output=True, text=True,
                         input="".join(d + "\n" for d in decisions), timeout=300,
                         env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **(env or {})})
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0, out.stderr[-3000:]
    return events


def losses(events: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    return [(e["examples"], e["metrics"]["eval_loss"], e["metrics"]["train_loss"]) for e in events
            if e["event"] == "eval"]


def test_two_ranks_train_what_one_process_trains(tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    one = make_spec(tiny_model, cache, tmp_path / "one", **NO_DROPOUT, micro_batch_size=4)
    one = dataclasses.replace(one, interactive=False, threads=2)
    two = dataclasses.replace(one, output_dir=str(tmp_path / "two"), world_size=2)
    a, b = run_worker(one, tmp_path / "one"), run_worker(two, tmp_path / "two")
    la, lb = losses(a), losses(b)
    assert [x[0] for x in la] == [x[0] for x in lb] == [64, 128, 192, 256]  # the same batches, the same rungs
    for (_, eval_a, train_a), (_, eval_b, train_b) in zip(la, lb, strict=True):
        assert eval_b == pytest.approx(eval_a, rel=1e-4) and train_b == pytest.approx(train_a, rel=1e-4)
    assert la[0][1] != la[-1][1]  # it trained
    end_a, end_b = a[-1], b[-1]
    assert end_b["event"] == "end" and end_b["train_tokens"] == end_a["train_tokens"]  # all ranks' tokens
    assert sum(1 for e in b if e["event"] == "eval") == 4  # only rank 0 reports


def test_every_rank_takes_the_stop_and_a_resume_continues_from_rank_0s_checkpoint(tiny_model: Path, cache: Path,  # noqa: F811
                                                                                  tmp_path: Path) -> None:
    base = dataclasses.replace(make_spec(tiny_model, cache, tmp_path / "full", **NO_DROPOUT), threads=2,
                               world_size=2, checkpoint_every=1)
    full = run_worker(base, tmp_path / "full", ["continue"] * 3)
    paused = run_worker(dataclasses.replace(base, output_dir=str(tmp_path / "p")), tmp_path / "p", ["pause"])
    assert paused[-1]["stopped_by"] == "paused" and paused[-1]["units"] == 1  # both ranks stopped there
    ckpt = next(e["checkpoint"] for e in paused if e["event"] == "eval")
    resumed = run_worker(dataclasses.replace(base, output_dir=str(tmp_path / "r"), resume_from=ckpt),
                         tmp_path / "r", ["continue"] * 3)
    flat = [v for row in losses(resumed) for v in row]
    assert flat == pytest.approx([v for row in losses(full)[1:] for v in row], rel=1e-4)  # exact, both ranks


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_sharded_ranks_hold_half_the_weights_and_train_what_one_process_trains(
        tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    # batch 15 at micro-batch 7: rank 0's slice of 8 takes two micro-batches, rank 1's slice of 7 one; FSDP
    # needs every rank in every forward, so rank 1 runs a second one whose loss counts zero
    one = dataclasses.replace(make_spec(tiny_model, cache, tmp_path / "one", **NO_DROPOUT, micro_batch_size=7,
                                        batch_size=15),
                              interactive=False, threads=2, evaluate_test=True, save_model=True)
    two = dataclasses.replace(one, output_dir=str(tmp_path / "two"), world_size=2, shard_model=True)
    a, b = run_worker(one, tmp_path / "one"), run_worker(two, tmp_path / "two")
    held = next(e for e in b if e["event"] == "start")["sharded"]
    assert 0.4 < held["parameters_on_rank"] / held["parameters"] < 0.6  # sharded, not a copy per rank
    assert "sharded" not in next(e for e in a if e["event"] == "start")
    la, lb = losses(a), losses(b)
    assert [x[0] for x in la] == [x[0] for x in lb]
    for (_, eval_a, train_a), (_, eval_b, train_b) in zip(la, lb, strict=True):
        assert eval_b == pytest.approx(eval_a, rel=1e-4) and train_b == pytest.approx(train_a, rel=1e-4)
    assert la[0][1] != la[-1][1]  # it trained
    assert b[-1]["test_metrics"] == pytest.approx(a[-1]["test_metrics"], rel=1e-4)  # every rank scored the test
    wa, wb = _weights(Path(a[-1]["model_dir"])), _weights(Path(b[-1]["model_dir"]))  # gathered, full tensors
    assert wa.keys() == wb.keys()
    assert all(wb[k].shape == wa[k].shape and (wb[k] - wa[k]).abs().max() < 1e-4 for k in wa)


def test_a_sharded_trial_pauses_and_resumes_from_its_gathered_checkpoint(
        tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    base = dataclasses.replace(make_spec(tiny_model, cache, tmp_path / "full", **NO_DROPOUT), threads=2,
                               world_size=2, shard_model=True, checkpoint_every=1)
    full = run_worker(base, tmp_path / "full", ["continue"] * 3)
    paused = run_worker(dataclasses.replace(base, output_dir=str(tmp_path / "p")), tmp_path / "p", ["pause"])
    assert paused[-1]["stopped_by"] == "paused" and paused[-1]["units"] == 1
    ckpt = next(e["checkpoint"] for e in paused if e["event"] == "eval")
    resumed = run_worker(dataclasses.replace(base, output_dir=str(tmp_path / "r"), resume_from=ckpt),
                         tmp_path / "r", ["continue"] * 3)
    flat = [v for row in losses(resumed) for v in row]
    assert flat == pytest.approx([v for row in losses(full)[1:] for v in row], rel=1e-4)


def test_a_sharded_lora_trial_saves_the_adapter_one_process_trains(
        tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    from safetensors.torch import load_file

    # early stopping keeps the best point's state (on a sharded rank: its own shards) and loads it at the end
    one = dataclasses.replace(lm_spec(tiny_llama, lm_cache, tmp_path / "one", lora_enabled=True, lora_dropout=0.0,
                                      early_stopping_patience=5, micro_batch_size=3),
                              interactive=False, threads=2, save_adapter=True)
    two = dataclasses.replace(one, output_dir=str(tmp_path / "two"), world_size=2, shard_model=True)
    a, b = run_worker(one, tmp_path / "one"), run_worker(two, tmp_path / "two")
    for (_, eval_a, train_a), (_, eval_b, train_b) in zip(losses(a), losses(b), strict=True):
        assert eval_b == pytest.approx(eval_a, rel=1e-4) and train_b == pytest.approx(train_a, rel=1e-4)
    wa, wb = (load_file(str(Path(e[-1]["adapter_dir"]) / "adapter_model.safetensors")) for e in (a, b))
    assert wa.keys() == wb.keys() and any("lora_A" in k for k in wa)
    assert all((wb[k] - wa[k]).abs().max() < 1e-4 for k in wa)


def test_a_study_runs_its_trials_as_two_processes(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    import optuna

    from conftest import run_lmtune, set_args, tiny_overrides

    quickstart = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")
    d = tmp_path / "dp"
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random", "execution.processes_per_trial=2",
            "execution.device=cpu", "execution.warm_start=false", "training.dropout=0.0",
            "execution.shard_model=true"]
    out = run_lmtune("tune", quickstart, *set_args(over), "--n-trials", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    spec = json.loads((d / "trials" / "0000" / "trial.json").read_text())
    assert spec["world_size"] == 2 and spec["shard_model"] is True
    bad = run_lmtune("tune", quickstart, *set_args([*over, "execution.gpus_per_trial=4"]))
    assert bad.returncode == 2 and "one process per GPU" in bad.stdout + bad.stderr
    alone = run_lmtune("tune", quickstart, *set_args([o for o in over if "processes_per_trial" not in o]))
    assert alone.returncode == 2 and "sharding needs 2 or more processes" in alone.stdout + alone.stderr


# Imported by every Python process of the trial (PYTHONPATH); on rank 1 only, a forward pass over more than
# OOM_ABOVE examples raises out of memory, as a rank with less free GPU memory would.
INJECT_OOM = """
import os
if os.environ.get("LMTUNE_RANK") == "1" and os.environ.get("OOM_ABOVE"):
    import torch
    from lmtune.training import loop

    limit, real = int(os.environ["OOM_ABOVE"]), loop.setup

    def patched(spec):
        s = real(spec)
        loss = s.train_loss  # every training forward goes through it (the model's own or a fast one)

        def guarded(batch, labels):
            if batch["input_ids"].shape[0] > limit:
                raise torch.OutOfMemoryError("CUDA out of memory (injected on rank 1)")
            return loss(batch, labels)

        s.train_loss = guarded
        return s

    loop.setup = patched
"""


def two_ranks_with_oom(tiny_model: Path, data: Path, tmp_path: Path, name: str) -> tuple[TrialSpec, Path]:
    """A 2-rank trial spec, and the folder whose sitecustomize injects out-of-memory errors on rank 1."""
    inject = tmp_path / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(INJECT_OOM)
    spec = dataclasses.replace(make_spec(tiny_model, data, tmp_path / name, **NO_DROPOUT), threads=2, world_size=2,
                               interactive=False)
    return spec, inject


def test_out_of_memory_on_one_rank_halves_the_micro_batch_on_every_rank(tiny_model: Path, cache: Path,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    base, inject = two_ranks_with_oom(tiny_model, cache, tmp_path, "ref")
    reference = run_worker(dataclasses.replace(base, hparams={**base.hparams, "micro_batch_size": 2}),
                           tmp_path / "ref")
    hit = run_worker(dataclasses.replace(base, output_dir=str(tmp_path / "oom")), tmp_path / "oom",
                     env={"PYTHONPATH": str(inject), "OOM_ABOVE": "2"})
    retries = [e for e in hit if e["event"] == "oom_retry"]
    assert [e["micro_batch_size"] for e in retries] == [8, 4, 2] and {e["step"] for e in retries} == {0}
    assert hit[-1]["event"] == "end" and hit[-1]["micro_batch_size"] == 2  # rank 0 followed rank 1 down
    for (_, eval_a, train_a), (_, eval_b, train_b) in zip(losses(reference), losses(hit), strict=True):
        assert eval_b == pytest.approx(eval_a, abs=1e-5) and train_b == pytest.approx(train_a, abs=1e-5)


def test_out_of_memory_at_one_example_fails_every_rank_with_the_reason(tiny_model: Path, cache: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    spec, inject = two_ranks_with_oom(tiny_model, cache, tmp_path, "t")
    path = tmp_path / "t" / "trial.json"
    path.parent.mkdir(parents=True)
    spec.write(path)
    out = subprocess.run([sys.executable, "-m", "lmtune.training.worker", str(path)], capture_output=True, text=True,
                         timeout=300, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                           "PYTHONPATH": str(inject), "OOM_ABOVE": "0"})
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 1  # no hang: rank 0 learns of rank 1's failure through the same all-reduce
    assert events[-1]["event"] == "error" and "even one example per step does not fit" in events[-1]["reason"]
    assert [e["micro_batch_size"] for e in events if e["event"] == "oom_retry"] == [8, 4, 2, 1]
