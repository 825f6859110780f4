"""`LmtuneCallback`: a trial's settings reach the HF Trainer (checked on the Trainer that trains, not on
a dict), a Stop decision ends its training at that evaluation, settings it cannot apply are refused
before training, and an HF Trainer script runs as a trial of a pruned study."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

import lmtune
from conftest import make_rows
from lmtune.config.schema import TrainingSection
from lmtune.errors import LmtuneError
from lmtune.integrations.transformers import LmtuneCallback
from lmtune.protocol import (
    PROGRESS_EVERY_S,
    SCRIPT_DECISIONS,
    SCRIPT_EVENTS,
    TrialSpec,
    checkpoint_complete,
    encode_decision,
)
from lmtune.script import Trial


def _trial(tmp_path: Path, *, interactive: bool = False, total: int = 96, epu: int = 32,
           must_read: tuple[str, ...] = (), **hparams: Any) -> Trial:
    hp = TrainingSection(**{"batch_size": 8, **hparams}).model_dump()
    spec = TrialSpec(trial=0, model="", task_type="script", data_cache="", hparams=hp, examples_per_unit=epu,
                     total_examples=total, metric="eval_loss", direction="minimize", output_dir=str(tmp_path),
                     interactive=interactive, must_read=list(must_read))
    (tmp_path / SCRIPT_DECISIONS).mkdir(exist_ok=True)
    (tmp_path / SCRIPT_EVENTS).touch()
    return Trial(spec, tmp_path)


def _trainer(tiny_model: Path, cb: LmtuneCallback, *, own_optimizer: bool = True) -> Trainer:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = make_rows(160)

    def encode(part: list[dict[str, object]]) -> Dataset:
        return Dataset.from_list(part).map(lambda b: tok(b["text"], truncation=True, max_length=16), batched=True,
                                           remove_columns=["text"])

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2,
                                                               **cb.model_kwargs(str(tiny_model)))
    args = TrainingArguments(**cb.arguments(logging_strategy="no"))
    return Trainer(model=model, args=args, train_dataset=encode(rows[:128]), eval_dataset=encode(rows[128:]),
                   processing_class=tok, callbacks=[cb],
                   optimizers=cb.optimizers(model) if own_optimizer else (None, None))


def _sent(folder: Path, kind: str) -> list[dict[str, Any]]:
    """The events of one kind ("eval", "progress", "end") the callback's trial wrote, in order."""
    lines = (folder / SCRIPT_EVENTS).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_the_trials_settings_are_what_the_trainer_trains_with(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, learning_rate=3e-3, weight_decay=0.05, dropout=0.25, warmup_ratio=0.25,
                   lr_scheduler="constant", optimizer="sgd", momentum=0.8, nesterov=True, seed=7, max_grad_norm=None,
                   micro_batch_size=4, gradient_checkpointing=True)
    cb = LmtuneCallback(trial)
    trainer = _trainer(tiny_model, cb, own_optimizer=False)
    a = trainer.args
    assert (a.learning_rate, a.weight_decay, a.seed, a.max_grad_norm) == (3e-3, 0.05, 7, 0.0)
    assert (a.per_device_train_batch_size, a.gradient_accumulation_steps) == (4, 2)  # effective batch 8
    assert a.max_steps == math.ceil(96 / 8) and a.eval_steps == 32 // 8 and a.warmup_steps == 3
    assert a.lr_scheduler_type == "constant_with_warmup"
    assert a.train_sampling_strategy == "random"  # training.group_by_length: false, HF's default sampler
    config = trainer.model.config
    assert config.hidden_dropout_prob == 0.25 and config.attention_probs_dropout_prob == 0.25
    trainer.train()
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.8 and group["nesterov"] is True
    assert trainer.state.global_step == 12
    assert trainer.model.is_activation_checkpointing  # activations were recomputed in backward


def test_lmtunes_own_optimizer_carries_adam_with_l2_and_layer_decay(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, optimizer="adam", weight_decay=0.01, layer_decay=0.5, learning_rate=1e-3,
                   must_read=("optimizer", "weight_decay", "layer_decay"))
    cb = LmtuneCallback(trial)
    trainer = _trainer(tiny_model, cb)
    trainer.train()
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert type(opt) is torch.optim.Adam
    initial = sorted({g["initial_lr"] for g in opt.param_groups})
    assert len(initial) >= 3 and max(initial) == pytest.approx(1e-3) and min(initial) <= 1e-3 * 0.5 ** 2 * 1.0001
    assert trial.unread == []


def test_what_hf_cannot_apply_is_refused_before_training(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, optimizer="adam", weight_decay=0.01, must_read=("optimizer", "weight_decay"))
    cb = LmtuneCallback(trial)
    trainer = _trainer(tiny_model, cb, own_optimizer=False)
    with pytest.raises(LmtuneError, match="does not apply optimizer"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_the_trials_own_fields_cannot_be_overridden(tmp_path: Path) -> None:
    with pytest.raises(LmtuneError, match="learning_rate come from the trial"):
        LmtuneCallback(_trial(tmp_path)).arguments(learning_rate=1.0)


def test_a_stop_decision_ends_training_at_that_evaluation(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, interactive=True, total=160, epu=32)
    (tmp_path / SCRIPT_DECISIONS / "0.json").write_text(json.dumps({"decision": "continue"}))
    (tmp_path / SCRIPT_DECISIONS / "1.json").write_text(json.dumps({"decision": "stop"}))
    cb = LmtuneCallback(trial)
    trainer = _trainer(tiny_model, cb)
    trainer.train()
    assert trainer.state.global_step == 8  # the second evaluation (2 × 32 examples at batch 8), not 20
    events = _sent(tmp_path, "eval")
    assert [(e["units"], e["examples"]) for e in events] == [(1, 32), (2, 64)]
    assert all("eval_loss" in e["metrics"] and "eval_runtime" not in e["metrics"] for e in events)
    cb.finish(trainer)
    end = json.loads((tmp_path / SCRIPT_EVENTS).read_text().splitlines()[-1])
    assert end["event"] == "end" and end["stopped_by"] == "pruned" and end["examples"] == 64


def test_the_last_step_is_always_evaluated(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, total=80, epu=32)  # 10 steps at batch 8; evaluations every 4 steps
    trainer = _trainer(tiny_model, LmtuneCallback(trial))
    trainer.train()
    assert [e["examples"] for e in _sent(tmp_path, "eval")] == [32, 64, 80]


def test_the_callback_moves_the_trials_bar_from_the_first_step(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, total=96, epu=32)  # 12 steps at batch 8; evaluations every 4
    trial.spec = replace(trial.spec, extra={"count_tokens": True})  # so HF counts the tokens it trains
    trainer = _trainer(tiny_model, LmtuneCallback(trial))
    trainer.train()
    events = [json.loads(line) for line in (tmp_path / SCRIPT_EVENTS).read_text().splitlines()]
    first = events[0]  # before the first evaluation: one step of the trial's 96 examples, its real tokens
    assert (first["event"], first["examples"], first["total_examples"]) == ("progress", 8, 96)
    evals, sent = _sent(tmp_path, "eval"), _sent(tmp_path, "progress")
    assert 0 < first["tokens"] < evals[0]["tokens"]  # HF's count after one step, in the reports' units
    # 12 step ends, but the first and then at most one every 2 s reach the file
    assert 1 <= len(sent) <= 1 + evals[-1]["elapsed_s"] / PROGRESS_EVERY_S
    assert [e["examples"] for e in evals] == [32, 64, 96]  # the evaluations are as without it


def test_the_same_decision_reaches_every_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trial = _trial(tmp_path, interactive=True)
    (tmp_path / SCRIPT_DECISIONS / "0.json").write_text(json.dumps({"decision": encode_decision(lmtune.Stop())}))
    other = Trial(replace(trial.spec), tmp_path, rank=1)
    assert other.report({"eval_loss": 1.0}, examples=32) == lmtune.Stop()
    assert (tmp_path / SCRIPT_EVENTS).read_text() == ""  # only rank 0 sends
    assert trial.report({"eval_loss": 1.0}, examples=32) == lmtune.Stop()
    assert len((tmp_path / SCRIPT_EVENTS).read_text().splitlines()) == 1


# The start of an HF Trainer script on the tiny model and task.dataset, made a trial by LmtuneCallback;
# each test appends what it trains and records.
HF_SCRIPT = textwrap.dedent("""
        import json
        from datasets import Dataset
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
        import lmtune
        from lmtune.integrations.transformers import LmtuneCallback

        trial = lmtune.trial()
        cb = LmtuneCallback(trial)
        tok = AutoTokenizer.from_pretrained(trial.model)
        enc = lambda rows: Dataset.from_list(rows).map(lambda b: tok(b["text"], truncation=True, max_length=16),
                                                       batched=True, remove_columns=["text"])
        s = trial.splits()
        model = AutoModelForSequenceClassification.from_pretrained(trial.model, num_labels=2,
                                                                   **cb.model_kwargs(trial.model))
        trainer = Trainer(model=model, args=TrainingArguments(**cb.arguments()), train_dataset=enc(s["train"]),
                          eval_dataset=enc(s["validation"]), processing_class=tok, callbacks=[cb],
                          optimizers=cb.optimizers(model))
""")


@pytest.mark.slow
def test_a_hf_trainer_script_is_a_trial_of_a_pruned_study(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(HF_SCRIPT + textwrap.dedent("""
        trainer.train()
        with open(trial.output_dir / "hf.json", "w") as f:
            json.dump({"lr": trainer.args.learning_rate, "steps": trainer.state.global_step,
                       "batch": trainer.args.per_device_train_batch_size}, f)
        cb.finish(trainer, test_dataset=enc(s["test"]))
    """))
    raw = {"study": {"name": "hf", "dir": str(tmp_path / "study"), "metric": "eval_loss", "direction": "minimize"},
           "task": {"type": "script", "command": ["python", str(script)], "metrics": ["eval_loss"],
                    "model": str(tiny_model), "dataset": str(tiny_csv), "train_size": 96, "validation_size": 32,
                    "test_size": 32},
           "training": {"batch_size": 8, "eval_every": 2, "epochs": 1},
           "search": {"strategy": "asha", "min_units": 1, "space": {
               "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
               "batch_size": {"type": "categorical", "choices": [8, 16]}}}}
    result = lmtune.tune(raw, n_trials=4, progress=False)
    assert [t.state for t in result.trials].count("FAIL") == 0
    for t in result.trials:
        told = json.loads((result.study_dir / "trials" / f"{t.number:04d}" / "hf.json").read_text())
        assert told["lr"] == pytest.approx(t.config["learning_rate"]) and told["batch"] == t.config["batch_size"]
        if t.state == "COMPLETE":
            assert told["steps"] == math.ceil(96 / t.config["batch_size"])
            assert t.curve[-1]["examples"] == 96
        else:  # pruned: the Trainer stopped at the evaluation it was pruned at
            assert told["steps"] * t.config["batch_size"] == t.curve[-1]["examples"] < 96


def test_pbt_pauses_at_a_ready_point_and_resumes_from_the_trainers_checkpoint_with_new_settings(
        tiny_model: Path, tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    trial = _trial(a, interactive=True, total=160, epu=32, lr_scheduler="constant")
    trial.spec = replace(trial.spec, checkpoint_every=2)  # ready every 2 units = 8 steps at batch 8
    (a / SCRIPT_DECISIONS / "0.json").write_text(json.dumps({"decision": "continue"}))
    (a / SCRIPT_DECISIONS / "1.json").write_text(json.dumps({"decision": "pause"}))
    trainer = _trainer(tiny_model, LmtuneCallback(trial))
    trainer.train()
    assert trainer.state.global_step == 8  # paused at the first ready point
    events = _sent(a, "eval")
    folder = a / "checkpoints" / "u00002"
    assert [e.get("checkpoint") for e in events] == [None, str(folder)]
    assert checkpoint_complete(folder) and (folder / "optimizer.pt").is_file()  # the Trainer's own, sealed
    # started again (as PBT does after an exploit) with other settings: a learning rate of ~0 freezes it
    b = tmp_path / "b"
    b.mkdir()
    again = _trial(b, total=160, epu=32, lr_scheduler="constant", learning_rate=1e-30)
    again.spec = replace(again.spec, checkpoint_every=2, resume_from=str(folder))
    cb = LmtuneCallback(again)
    trainer = _trainer(tiny_model, cb)
    trainer.train(resume_from_checkpoint=cb.resume_from)
    later = _sent(b, "eval")
    assert [e["examples"] for e in later] == [96, 128, 160]  # on from the checkpoint's position
    frozen = events[1]["metrics"]["eval_loss"]
    assert all(e["metrics"]["eval_loss"] == pytest.approx(frozen, abs=1e-6) for e in later)
    # without resume_from_checkpoint the run would start over: refused before the first step
    c = tmp_path / "c"
    c.mkdir()
    forgot = _trial(c, total=160, epu=32)
    forgot.spec = replace(forgot.spec, checkpoint_every=2, resume_from=str(folder))
    with pytest.raises(LmtuneError, match=r"resume_from_checkpoint=callback\.resume_from"):
        _trainer(tiny_model, LmtuneCallback(forgot)).train()


# The accelerate launch of test_an_accelerate_launch_...: 2 CPU processes in a gloo group.
ACCELERATE = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "{free_port}"]


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_hf_trainer_script_runs_pbt_and_an_exploit_resumes_from_a_trainer_checkpoint(
        ranks: int, tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(HF_SCRIPT + textwrap.dedent("""
        import os
        start = trial.resume_examples  # (PBT may give the folder up once this run has reported past it)
        trainer.train(resume_from_checkpoint=cb.resume_from)
        with open(trial.output_dir / f"launches{os.environ.get('RANK', '0')}.jsonl", "a") as f:
            f.write(json.dumps({"lr": trial.params["learning_rate"], "resume_from": cb.resume_from,
                                "start": start, "end": trainer.state.global_step * 8,
                                "optimizer_lr": trainer.optimizer.param_groups[0]["initial_lr"]}) + "\\n")
        cb.finish(trainer)
    """))
    raw = {"study": {"name": "hf-pbt", "dir": str(tmp_path / "study"), "metric": "eval_loss",
                     "direction": "minimize"},
           "task": {"type": "script", "command": ["python", str(script)] if ranks == 1 else [*ACCELERATE, str(script)],
                    "metrics": ["eval_loss"], "model": str(tiny_model), "dataset": str(tiny_csv), "train_size": 96,
                    "validation_size": 32, "test_size": 32},
           "training": {"batch_size": 8, "eval_every": 2, "epochs": 1, "lr_scheduler": "constant"},
           "search": {"strategy": "pbt", "pbt": {"population_size": 2, "ready_every": 4, "quantile": 0.5},
                      "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}}}
    result = lmtune.tune(raw, progress=False)  # one worker: the members take turns at the ready points
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE"]
    exploits = checked = 0
    for t in result.trials:
        folder = result.study_dir / "trials" / f"{t.number:04d}"
        runs = [[json.loads(line) for line in (folder / f"launches{r}.jsonl").read_text().splitlines()]
                for r in range(ranks)]
        assert all(other == runs[0] for other in runs)  # every rank resumed from the same checkpoint, alike
        launches = runs[0]
        sealed = sorted((folder / "checkpoints").glob("u*")) if ranks > 1 else []
        checked += len(sealed)
        for ckpt in sealed:  # each rank's RNG state made it into the folder rank 0 moved and sealed
            assert {f"rng_state_{r}.pth" for r in range(ranks)} <= {f.name for f in ckpt.iterdir()}
        assert launches[-1]["end"] == 96 and len(launches) >= 2
        for run in launches:
            assert run["optimizer_lr"] == pytest.approx(run["lr"])  # the trial's settings, also after a resume
        copied = [run for run in launches[1:] if int(Path(run["resume_from"]).parent.parent.name) != t.number]
        exploits += len(copied)
        if copied:  # the last exploit is the member's last schedule entry: where it resumed, what it trained
            last = t.pbt["schedule"][-1]
            assert copied[-1]["start"] == last["units"] * 16
            assert copied[-1]["lr"] == pytest.approx(last["config"]["learning_rate"])
    assert exploits >= 1
    assert checked >= 1 or ranks == 1  # PBT keeps the checkpoints a member may still be resumed from


def test_under_a_token_budget_the_callback_reports_the_trainers_real_tokens(tiny_model: Path, tmp_path: Path) -> None:
    trial = _trial(tmp_path, total=64, epu=32)
    trial.spec = replace(trial.spec, extra={"count_tokens": True})
    cb = LmtuneCallback(trial)
    trainer = _trainer(tiny_model, cb)
    assert trainer.args.include_num_input_tokens_seen == "non_padding"
    trainer.train()
    tokens = [e["tokens"] for e in _sent(tmp_path, "eval")]
    assert 0 < tokens[0] < tokens[1] == trainer.state.num_input_tokens_seen
    assert tokens[1] < 64 * 16  # real tokens: fewer than 64 examples padded to max_length 16


@pytest.mark.slow
def test_an_accelerate_launch_of_a_hf_trainer_script_is_one_trial_on_two_processes(
        tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """``task.command: [accelerate, launch, --num_processes, 2, ...]`` on this CPU (gloo): both ranks train the
    trial's settings at half its batch each (the effective batch is the trial's), only rank 0 reports, and a
    pruned trial's two Trainers stop at the same evaluation."""
    from lmtune.execution.script import program

    accelerate = program(["accelerate"])[0]
    if Path(accelerate).parent != Path(__import__("sys").executable).parent:
        pytest.skip("no accelerate beside this interpreter")
    script = tmp_path / "train.py"
    script.write_text(HF_SCRIPT + textwrap.dedent("""
        trainer.train()
        import os
        with open(trial.output_dir / f"rank{os.environ['RANK']}.json", "w") as f:
            json.dump({"world": trainer.args.world_size, "lr": trainer.args.learning_rate,
                       "steps": trainer.state.global_step, "per_device": trainer.args.per_device_train_batch_size,
                       "accumulation": trainer.args.gradient_accumulation_steps}, f)
    """))
    raw = {"study": {"name": "acc", "dir": str(tmp_path / "study"), "metric": "eval_loss", "direction": "minimize"},
           "task": {"type": "script", "metrics": ["eval_loss"], "model": str(tiny_model), "dataset": str(tiny_csv),
                    "train_size": 96, "validation_size": 32, "test_size": 32,
                    # --multi_gpu picks accelerate's torch.distributed launcher; on this CPU the Trainer's use_cpu
                    # (the callback sets it for a CPU trial) makes it a gloo group (--cpu alone runs one process)
                    "command": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                                "{free_port}", str(script)]},
           "training": {"batch_size": 8, "eval_every": 2, "epochs": 1},
           "search": {"strategy": "asha", "min_units": 1, "space": {
               "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}}}
    result = lmtune.tune(raw, n_trials=3, progress=False)
    failed = [(result.study_dir / "trials" / f"{t.number:04d}" / "trainer.log") for t in result.trials
              if t.state == "FAIL"]
    assert not failed, "\n".join(p.read_text(errors="replace")[-6000:] if p.exists() else f"no {p}" for p in failed)
    for t in result.trials:
        folder = result.study_dir / "trials" / f"{t.number:04d}"
        zero, one = (json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1))
        assert zero == one  # same settings, same number of steps: the same decisions on both ranks
        assert zero["world"] == 2 and zero["lr"] == pytest.approx(t.config["learning_rate"])
        assert zero["per_device"] * zero["accumulation"] * 2 == 8  # the trial's batch over two processes
        assert zero["steps"] * 8 == t.curve[-1]["examples"]  # one curve point per evaluation, from rank 0
        assert (t.curve[-1]["examples"] == 96) == (t.state == "COMPLETE")
        # a 2-class classifier near chance: ln 2, not HF's 2 ln 2 on two processes (transformers #35078)
        assert all(p["metrics"]["eval_loss"] < 1.0 for p in t.curve)


def test_precision_auto_follows_the_trainers_rule_by_the_models_stored_size(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmtune.integrations.transformers import stored_parameters

    n = stored_parameters(str(tiny_model))
    assert n is not None and 0 < n < 1_000_000 and stored_parameters(str(tmp_path)) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a bf16 GPU, as far as the rule can tell
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    def auto(model: str, device: str) -> dict[str, Any]:
        trial = _trial(tmp_path, precision="auto")
        trial.spec = replace(trial.spec, model=model, device=device)
        return {k: v for k, v in LmtuneCallback(trial).arguments().items() if k in ("bf16", "fp16")}

    assert auto(str(tiny_model), "cuda") == {"bf16": False, "fp16": False}  # small: fp32 was measured faster
    assert auto("", "cuda") == {"bf16": True, "fp16": False}  # size unknown: bf16 on a bf16 GPU, as before
    assert auto(str(tiny_model), "cpu") == {"bf16": False, "fp16": False}
    big = tmp_path / "big"
    big.mkdir()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(160_000_000, dtype=torch.int8)}, str(big / "model.safetensors"))
    assert auto(str(big), "cuda") == {"bf16": True, "fp16": False}  # above 150M parameters: bf16
