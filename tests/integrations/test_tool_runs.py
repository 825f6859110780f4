"""Real tools tuned unedited (`lmtune.integrations.tools`): TRL's own `trl sft` CLI and a plain HF Trainer
script (tool hf) run as lmtune trials on the tiny models; what each tool's Trainer ran with is read back from
the trial (attr ``tool_args``, recorded from inside the tool's Trainer), and a tool that trains something
other than the trial asked, or never evaluates, fails the trial with the reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, set_args

pytestmark = pytest.mark.slow

TRL_STUDY = """
study: {{name: trl-tiny, dir: {dir}, metric: eval_loss, direction: minimize}}
task:
  type: script
  tool: trl
  command: [trl, sft, --model_name_or_path, "{{model}}", --dataset_name, "{{data_dir}}",
            --dataset_test_split, validation, --max_length, "64"]
  tool_final_args: {{dataset_test_split: test}}
  metrics: [eval_loss]
  model: {model}
  dataset: {data}
  train_size: 64
  validation_size: 16
  test_size: 16
training: {{learning_rate: 1.0e-3, batch_size: 8, epochs: 1, eval_every: 2, eval_batch_size: 16,
           lora_enabled: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0.0}}
search:
  strategy: asha
  n_trials: 3
  space:
    learning_rate: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
    lora_r: {{type: categorical, choices: [2, 4, 8]}}
execution: {{workers: 1}}
"""


def _trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{study_dir / 'study.db'}").trials


def test_trls_own_cli_is_a_pruned_study_with_its_searched_settings_reaching_trl(tiny_llama: Path, tiny_chat: Path,
                                                                               tmp_path: Path) -> None:
    d = tmp_path / "s"
    cfg = tmp_path / "trl.yaml"
    cfg.write_text(TRL_STUDY.format(dir=d, model=tiny_llama, data=tiny_chat))
    out = run_lmtune("tune", str(cfg))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = [t for t in _trials(d) if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(trials) == 3
    for t in trials:
        ran = t.user_attrs["tool_args"]  # recorded from inside trl's SFTTrainer
        assert math.isclose(ran["learning_rate"], t.params["learning_rate"], rel_tol=1e-9)
        assert ran["r"] == t.params["lora_r"] and ran["max_steps"] == 8 and ran["per_device_train_batch_size"] == 8
        saved = json.loads((Path(t.user_attrs["trial_dir"]) / "tool" / "adapter_config.json").read_text()) \
            if t.state.name == "COMPLETE" else None
        if saved is not None:  # the adapter trl saved has the trial's rank
            assert saved["r"] == t.params["lora_r"]
    assert {min(t.intermediate_values) for t in trials} == {1}  # judged at equal data: 16 dialogs per unit
    final = run_lmtune("final", str(d), "--seeds", "1")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    results = json.loads((d / "final" / "results.json").read_text())
    assert all("test_loss" in r["metrics"] for r in results["runs"])  # trl scored the test split
    exported = run_lmtune("export", str(d), "--format", "yaml", "--out", str(tmp_path / "best.yaml"))
    assert exported.returncode == 0 and "tool: trl" in (tmp_path / "best.yaml").read_text()


HF_SCRIPT = '''
import sys
from dataclasses import dataclass
from datasets import Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, Trainer,
                          TrainingArguments)

@dataclass
class Task:
    model: str
    data: str
    no_eval: bool = False
    force_lr: float = 0.0

task, args = HfArgumentParser((Task, TrainingArguments)).parse_args_into_dataclasses()
if task.force_lr:
    args.learning_rate = task.force_lr  # a script that trains something else than it was given
tok = AutoTokenizer.from_pretrained(task.model)
rows = Dataset.from_json(task.data)
enc = rows.map(lambda r: tok(r["text"], truncation=True, max_length=16), batched=True)
enc = enc.rename_column("label", "labels")
train, val = enc.select(range(64)), enc.select(range(64, 96))
model = AutoModelForSequenceClassification.from_pretrained(task.model, num_labels=2)
Trainer(model=model, args=args, train_dataset=train, eval_dataset=None if task.no_eval else val,
        processing_class=tok).train()
'''

HF_STUDY = """
study: {{name: hf-tiny, dir: {dir}, metric: eval_loss, direction: minimize}}
task:
  type: script
  tool: hf
  command: [python, run.py, --model, {model}, --data, {data}{extra}]
  metrics: [eval_loss]
  train_size: 64
training: {{learning_rate: 1.0e-3, batch_size: 16, max_steps: 8, eval_every: 2}}
search:
  strategy: random
  n_trials: 2
  space: {{learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}}
execution: {{workers: 1}}
"""


def _hf_study(tmp_path: Path, tiny_model: Path, tiny_csv: Path, extra: str = "") -> Path:
    import csv

    data = tmp_path / "rows.jsonl"
    with open(tiny_csv) as fh:
        data.write_text("".join(json.dumps({"text": r["text"], "label": int(r["label"])}) + "\n"
                                for r in csv.DictReader(fh)))
    (tmp_path / "run.py").write_text(HF_SCRIPT)
    cfg = tmp_path / "hf.yaml"
    cfg.write_text(HF_STUDY.format(dir=tmp_path / "s", model=tiny_model, data=data, extra=extra))
    return cfg


def test_a_plain_hf_trainer_script_is_tuned_through_its_trainingarguments_flags(tiny_model: Path, tiny_csv: Path,
                                                                                tmp_path: Path) -> None:
    out = run_lmtune("tune", str(_hf_study(tmp_path, tiny_model, tiny_csv)))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = _trials(tmp_path / "s")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        ran = t.user_attrs["tool_args"]
        assert math.isclose(ran["learning_rate"], t.params["learning_rate"]) and ran["max_steps"] == 8
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]  # every 2 steps of 16: equal data


@pytest.mark.parametrize(("extra", "reason"), [
    (", --force_lr, '0.5'", "learning_rate: the Trainer runs 0.5, the trial asked"),
    (", --no_eval, 'true'", "the tool's Trainer has no evaluation data"),
])
def test_a_tool_that_trains_something_else_or_never_evaluates_fails_the_trial_saying_why(
        tiny_model: Path, tiny_csv: Path, tmp_path: Path, extra: str, reason: str) -> None:
    cfg = _hf_study(tmp_path, tiny_model, tiny_csv, extra=extra)
    out = run_lmtune("tune", str(cfg), *set_args(["search.n_trials=1", "search.max_failures=1"]))
    assert out.returncode != 0
    trial = _trials(tmp_path / "s")[0]
    assert trial.state.name == "FAIL" and reason in trial.user_attrs["fail_reason"], trial.user_attrs.get("fail_reason")


def test_pbt_pauses_trl_at_its_own_checkpoints_and_resumes_it_with_the_explored_settings(
        tiny_llama: Path, tiny_chat: Path, tmp_path: Path) -> None:
    """Two members on one worker: each pauses at its ready points (a checkpoint trl's Trainer saved, moved to the
    trial's folder) and is started again from it; a resumed run goes on at the step it saved and trains the
    member's settings of that moment (tool_args is recorded at every start: the last one is the last run's)."""
    d = tmp_path / "s"
    cfg = tmp_path / "trl.yaml"
    cfg.write_text(TRL_STUDY.format(dir=d, model=tiny_llama, data=tiny_chat))
    out = run_lmtune("tune", str(cfg), *set_args([
        "search.strategy=pbt", "search.pbt.population_size=2", "search.pbt.ready_every=4",
        "search.space={learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}"]))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = _trials(d)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        assert [p["units"] for p in t.user_attrs["curve"]] == [1, 2, 3, 4]  # 8 steps of 8 dialogs, every 16
        ran, last = t.user_attrs["tool_args"], t.user_attrs["pbt"]["schedule"][-1]["config"]
        assert math.isclose(ran["learning_rate"], last["learning_rate"], rel_tol=1e-9)
        log = (Path(t.user_attrs["trial_dir"]) / "trainer.log").read_text()
        assert log.count("Training completed") == 2  # trl's word after each run: paused at units 2, then resumed
        assert log.count("'eval_loss'") == 4  # the resumed run went on from step 4 (from scratch: 2 + 4)


def _tool_study(tmp_path: Path, tool: str, command: list[str], final_args: str) -> Path:
    """A 3-trial ASHA study of a config-file tool (its config in tmp_path, named by tool_config) on the tiny
    model: learning rate and LoRA rank searched, 8 steps of 8, judged every 16 examples."""
    config = {"llamafactory": "lora_sft.yaml", "axolotl": "lora.yml"}[tool]
    study = tmp_path / f"{tool}.yaml"
    study.write_text(f"""
study: {{name: {tool}-tiny, dir: {tmp_path / 's'}, metric: eval_loss, direction: minimize}}
task:
  type: script
  tool: {tool}
  tool_config: {config}
  command: {json.dumps(command)}
  tool_final_args: {final_args}
  metrics: [eval_loss]
  train_size: 102
training: {{learning_rate: 1.0e-3, batch_size: 8, max_steps: 8, eval_every: 2, eval_batch_size: 8,
           lora_enabled: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0.0}}
search:
  strategy: asha
  n_trials: 3
  space:
    learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-2, log: true}}
    lora_r: {{type: categorical, choices: [2, 4, 8]}}
execution: {{workers: 1}}
""")
    return study


LF_CONFIG = """model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: chat
dataset_dir: {data}
template: empty
cutoff_len: 64
output_dir: saves/tiny
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
val_size: 0.2
eval_strategy: steps
eval_steps: 500
"""


def test_llama_factory_is_tuned_through_a_copy_of_its_own_config(tiny_llama: Path, tiny_chat: Path,
                                                                 tmp_path: Path) -> None:
    """LLaMA-Factory in its own virtual environment (scripts/tool_venvs.sh; LMTUNE_LLAMAFACTORY_CLI names its
    CLI): its example-style config, with a warm-up ratio of its own that lmtune's written warm-up replaces."""
    import os
    import shutil

    cli = os.environ.get("LMTUNE_LLAMAFACTORY_CLI") or shutil.which("llamafactory-cli")
    if not cli:
        pytest.skip("LLaMA-Factory is not installed (scripts/tool_venvs.sh llamafactory, then set "
                    "LMTUNE_LLAMAFACTORY_CLI)")
    data = tmp_path / "data"
    data.mkdir()
    rows = tiny_chat.read_text().splitlines(keepends=True)
    (data / "chat.jsonl").write_text("".join(rows[:128]))
    (data / "chat_test.jsonl").write_text("".join(rows[128:]))
    entry = {"formatting": "sharegpt", "columns": {"messages": "messages"},
             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
    (data / "dataset_info.json").write_text(json.dumps({"chat": {"file_name": "chat.jsonl", **entry},
                                                        "chat_test": {"file_name": "chat_test.jsonl", **entry}}))
    (tmp_path / "lora_sft.yaml").write_text(LF_CONFIG.format(model=tiny_llama, data=data))
    study = _tool_study(tmp_path, "llamafactory", [cli, "train", "{config}"],
                        "{eval_dataset: chat_test, val_size: 0.0}")  # lmtune final: LLaMA-Factory scores test rows
    out = run_lmtune("tune", str(study))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = [t for t in _trials(tmp_path / "s") if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(trials) == 3 and {min(t.intermediate_values) for t in trials} == {1}
    for t in trials:
        ran = t.user_attrs["tool_args"]
        assert math.isclose(ran["learning_rate"], t.params["learning_rate"]) and ran["r"] == t.params["lora_r"]
        assert ran["warmup_steps"] == 0  # the config's warmup_ratio did not replace the trial's warm-up
        written = (Path(t.user_attrs["trial_dir"]) / "tool-lora_sft.yaml").read_text()
        assert f"lora_rank: {t.params['lora_r']}" in written and "warmup_ratio" not in written
        if t.state.name == "COMPLETE":  # the adapter LLaMA-Factory saved has the trial's rank
            saved = json.loads((Path(t.user_attrs["trial_dir"]) / "tool" / "adapter_config.json").read_text())
            assert saved["r"] == t.params["lora_r"]
    final = run_lmtune("final", str(tmp_path / "s"), "--seeds", "1")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    runs = json.loads((tmp_path / "s" / "final" / "results.json").read_text())["runs"]
    assert len(runs) == 2 and all("test_loss" in r["metrics"] for r in runs)
    exported = run_lmtune("export", str(tmp_path / "s"), "--format", "yaml", "--out", str(tmp_path / "best.yaml"))
    assert exported.returncode == 0 and "tool: llamafactory" in (tmp_path / "best.yaml").read_text()


def test_a_token_budget_stops_a_trl_study_with_the_tokens_trl_counted(tiny_llama: Path, tiny_chat: Path,
                                                                       tmp_path: Path) -> None:
    d = tmp_path / "s"
    cfg = tmp_path / "trl.yaml"
    cfg.write_text(TRL_STUDY.format(dir=d, model=tiny_llama, data=tiny_chat))
    first = run_lmtune("tune", str(cfg), *set_args(["search.n_trials=1"]))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    one = _trials(d)[0].user_attrs["train_tokens"]
    assert one > 0  # trl's own count of the non-padding tokens it trained on
    # half a trial's tokens left: the budget stops the study at an evaluation, by the tokens trl counted
    cap = int(one * 1.5)
    out = run_lmtune("tune", str(cfg), *set_args([f"budget.max_train_tokens={cap}"]))
    assert out.returncode == 0 and "budget: max_train_tokens" in out.stdout, out.stdout[-3000:]
    spent = sum(t.user_attrs.get("train_tokens", 0) for t in _trials(d))
    assert one < spent <= cap * 1.1, (one, spent, cap)  # one evaluation interval is ~1/4 of a trial


AX_CONFIG = """base_model: {model}
datasets:
  - path: {data}
    ds_type: json
    type: chat_template
    field_messages: messages
chat_template: tokenizer_default
val_set_size: 0.2
output_dir: ./outputs/lora-out
sequence_len: 64
adapter: lora
lora_r: 8
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules: [q_proj, v_proj]
micro_batch_size: 1
gradient_accumulation_steps: 8
num_epochs: 1
optimizer: adamw_torch
lr_scheduler: cosine
learning_rate: 0.0002
bf16: false
fp16: false
tf32: false
warmup_ratio: 0.1
evals_per_epoch: 2
"""


def test_axolotl_is_tuned_through_a_copy_of_its_own_config(tiny_llama: Path, tiny_chat: Path, tmp_path: Path) -> None:
    """axolotl in its own virtual environment (scripts/tool_venvs.sh; LMTUNE_AXOLOTL_CLI names its CLI), launched
    with its python launcher; its config's evals_per_epoch and warmup_ratio give way to what lmtune writes."""
    import os
    import shutil

    cli = os.environ.get("LMTUNE_AXOLOTL_CLI") or shutil.which("axolotl")
    if not cli:
        pytest.skip("axolotl is not installed (scripts/tool_venvs.sh axolotl, then set LMTUNE_AXOLOTL_CLI)")
    rows = tiny_chat.read_text().splitlines(keepends=True)
    (tmp_path / "train.jsonl").write_text("".join(rows[:128]))
    (tmp_path / "test.jsonl").write_text("".join(rows[128:]))
    (tmp_path / "lora.yml").write_text(AX_CONFIG.format(model=tiny_llama, data=tmp_path / "train.jsonl"))
    test_set = json.dumps([{"path": str(tmp_path / "test.jsonl"), "ds_type": "json", "type": "chat_template",
                            "field_messages": "messages", "split": "train"}])
    study = _tool_study(tmp_path, "axolotl", [cli, "train", "{config}", "--launcher", "python"],
                        f"{{val_set_size: 0.0, test_datasets: {test_set}}}")  # lmtune final: axolotl's test rows
    out = run_lmtune("tune", str(study))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = [t for t in _trials(tmp_path / "s") if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(trials) == 3 and {min(t.intermediate_values) for t in trials} == {1}
    for t in trials:
        ran = t.user_attrs["tool_args"]
        assert math.isclose(ran["learning_rate"], t.params["learning_rate"]) and ran["r"] == t.params["lora_r"]
        log = (Path(t.user_attrs["trial_dir"]) / "trainer.log").read_text()
        assert "posthog" not in log  # the tool's telemetry is off in a trial
    final = run_lmtune("final", str(tmp_path / "s"), "--seeds", "1")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    runs = json.loads((tmp_path / "s" / "final" / "results.json").read_text())["runs"]
    assert len(runs) == 2 and all("test_loss" in r["metrics"] for r in runs)
    exported = run_lmtune("export", str(tmp_path / "s"), "--format", "yaml", "--out", str(tmp_path / "best.yaml"))
    assert exported.returncode == 0 and "tool: axolotl" in (tmp_path / "best.yaml").read_text()
