"""Tool trials (`lmtune.integrations.tools`, `lmtune.integrations.attach`): each tool gets the trial's settings
its own way, what a tool cannot take is refused before anything runs, and lmtune attaches itself to the
tool's Trainer without the tool being edited. The real tools run in tests/integrations/test_tool_runs.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.integrations import TOOLS, deliver, write_site
from lmtune.integrations.tools import expected
from lmtune.protocol import TrialSpec

SRC = Path(__file__).parents[2] / "src"


def _spec(tmp_path: Path, **hp: Any) -> TrialSpec:
    from lmtune.config import TrainingSection

    hparams = TrainingSection(batch_size=8, max_steps=10, eval_every=2, learning_rate=3e-4, lora_enabled=True,
                              lora_r=16, lora_alpha=32, **hp).model_dump()
    return TrialSpec(trial=3, model="/models/tiny", task_type="script", data_cache="", hparams=hparams,
                     examples_per_unit=16, total_examples=80, output_dir=str(tmp_path / "trial"),
                     command=["trl", "sft", "--model_name_or_path", "{model}", "--x", "{learning_rate}"])


def _flags(command: list[str]) -> dict[str, str]:
    return {command[i][2:]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}


def test_trl_gets_the_trials_settings_as_flags_and_its_placeholders_filled(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    command = deliver(spec, tool="trl", folder=tmp_path, config=None, tool_args={}, final_args={"x": "no"})
    flags = _flags(command)
    assert command[:4] == ["trl", "sft", "--model_name_or_path", "/models/tiny"] and flags["x"] == "0.0003"
    assert (flags["learning_rate"], flags["per_device_train_batch_size"], flags["max_steps"]) == ("0.0003", "8", "10")
    assert flags["eval_strategy"] == "steps" and flags["eval_steps"] == "2"  # every 16 examples at batch 8
    assert (flags["use_peft"], flags["lora_r"], flags["lora_alpha"]) == ("true", "16", "32")
    assert flags["output_dir"] == str(tmp_path / "trial" / "tool") and flags["report_to"] == "none"
    assert "x" in flags and flags["x"] != "no"  # final_args only reach a final run


def test_a_final_run_adds_the_tools_final_args(tmp_path: Path) -> None:
    from dataclasses import replace

    spec = replace(_spec(tmp_path), evaluate_test=True)
    flags = _flags(deliver(spec, tool="trl", folder=tmp_path, config=None, tool_args={},
                           final_args={"dataset_test_split": "test"}))
    assert flags["dataset_test_split"] == "test"


@pytest.mark.parametrize(("tool", "keys"), [
    ("llamafactory", {"lora_rank": 16, "finetuning_type": "lora", "lora_target": None,
                      "per_device_train_batch_size": 8, "max_steps": 10, "learning_rate": 3e-4}),
    ("axolotl", {"lora_r": 16, "adapter": "lora", "micro_batch_size": 8, "lr_scheduler": "linear",
                 "max_steps": 10, "learning_rate": 3e-4}),
])
def test_a_config_file_tool_runs_a_copy_of_its_config_with_the_trials_settings(tmp_path: Path, tool: str,
                                                                               keys: dict[str, Any]) -> None:
    own = tmp_path / "cfg.yaml"
    own.write_text(yaml.safe_dump({"model_name_or_path": "x", "learning_rate": 1.0, "nested": {"keep": 1}}))
    spec = _spec(tmp_path, warmup_ratio=0.0)
    command = deliver(spec, tool=tool, folder=tmp_path, config=str(own),
                      tool_args={"seed": "nested.seed"}, final_args={})
    written = tmp_path / "tool-cfg.yaml"
    assert command[-1] == "--x" or str(written) not in command  # {config} absent from this command
    data = yaml.safe_load(written.read_text())
    for key, value in keys.items():
        assert data.get(key) == value or (value is None and key not in data), (key, data.get(key))
    assert data["model_name_or_path"] == "x" and data["nested"] == {"keep": 1, "seed": 0}
    assert yaml.safe_load(own.read_text())["learning_rate"] == 1.0  # the user's file is untouched


def test_what_the_tools_trainer_must_run_with_is_what_was_delivered(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    want = expected(spec)
    flags = _flags(deliver(spec, tool="trl", folder=tmp_path, config=None, tool_args={}, final_args={}))
    for key in ("learning_rate", "max_steps", "weight_decay", "seed", "per_device_train_batch_size"):
        assert float(flags[key]) == float(want[key]), key
    assert want["lora_r"] == 16 and TOOLS["hf"].lora is None


def _cfg(tmp_path: Path, *sets: str) -> None:
    (tmp_path / "own.yaml").write_text("a: 1\n")
    base = ["study.dir=" + str(tmp_path / "s"), "task.type=script", "task.command=[trl, sft]",
            "task.metrics=[eval_loss]", "study.metric=eval_loss", "study.direction=minimize",
            "training.max_steps=10", "search.strategy=asha"]
    load_config(None, [*base, *sets])


@pytest.mark.parametrize(("sets", "message"), [
    (["task.tool=trl", "search.space={dropout: {type: float, low: 0.0, high: 0.2}}"],
     r"search\.space\.dropout: task\.tool trl has no setting"),
    (["task.tool=hf", "training.lora_enabled=true", "search.space={lora_r: {type: categorical, choices: [4, 8]}}"],
     r"training\.lora_enabled: task\.tool hf has no setting"),
    (["task.tool=trl", "training.layer_decay=0.8"], r"training\.layer_decay: task\.tool trl"),
    (["task.tool=trl", "search.space={my_knob: {type: int, low: 1, high: 3}}"],
     r"search\.space\.my_knob: not a training field.*task\.tool_args"),
    (["task.tool=axolotl", "task.tool_config=own.yaml", "task.command=[axolotl, train, '{config}']",
      "search.strategy=pbt"], r"search\.strategy pbt: pausing and resuming axolotl"),
    (["task.tool=llamafactory"], r"task\.tool llamafactory: set task\.tool_config"),
    (["task.tool=axolotl", "task.tool_config=own.yaml"], r"put \{config\} in task\.command"),
    (["task.tool_args={a: b}"], r"set task\.tool"),
])
def test_what_a_tool_cannot_take_is_refused_before_anything_runs(tmp_path: Path, sets: list[str],
                                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, *sets)


def test_a_searched_script_parameter_reaches_a_tool_through_its_mapping(tmp_path: Path) -> None:
    _cfg(tmp_path, "task.tool=trl", "task.tool_args={my_knob: neftune_noise_alpha}",
         "task.defaults={my_knob: 1}", "search.space={my_knob: {type: int, low: 1, high: 3}}")


@pytest.mark.slow
def test_lmtune_attaches_to_every_trainer_a_tool_builds_without_the_tool_knowing(tmp_path: Path) -> None:
    """In a process started as a tool trial's (its sitecustomize first on PYTHONPATH), a Trainer that the
    'tool' builds carries lmtune's callback; outside a trial nothing is patched."""
    site = write_site(tmp_path)
    code = ("import transformers.trainer as t\n"
            "print(getattr(t.Trainer, '_lmtune_attached', False))\n")
    for trial_env, attached in (("x.json", "True"), ("", "False")):
        env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{SRC}", "LMTUNE_TRIAL": trial_env}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == attached, out.stderr[-2000:]
