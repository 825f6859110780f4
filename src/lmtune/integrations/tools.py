"""Tool trials: the fine-tuning tools people run from a config file or flags — TRL's CLI (``trl sft``), HF
example scripts (``run_glue.py``, ``run_clm.py``: ``TrainingArguments`` flags), LLaMA-Factory
(``llamafactory-cli train cfg.yaml``) and axolotl (``axolotl train cfg.yml``) — tuned without editing them
(``task.type: script`` with ``task.tool``; docs/tools/index.md).

What happens per trial: the trial's settings are written the tool's way — appended to ``task.command`` as
flags (``trl``, ``hf``; the last occurrence of a flag wins in their argument parsers) or set in a copy of
``task.tool_config`` whose path replaces ``{config}`` in the command (``llamafactory``, ``axolotl``) — and
lmtune's callback is attached to every ``transformers.Trainer`` the tool builds (`lmtune.integrations.attach`,
through a ``sitecustomize`` on the trial's ``PYTHONPATH``): it reports each evaluation at equal data, stops
the run on a Stop, and records what the tool's Trainer actually ran with (the trial attr ``tool_args``),
failing the trial where that differs from what the trial asked.

One mapping for all of them: the trial's training section as HF ``TrainingArguments`` keywords
(`lmtune.integrations.hf_args.trainer_arguments`: learning rate, batch = per device × accumulation,
length as ``max_steps``, evaluation every evaluation unit, warm-up steps, schedule, decay, clipping, seed)
plus LoRA, renamed per tool (`Tool.rename`, `Tool.lora`). A searched setting a tool cannot take is refused
before anything runs (`undeliverable`). No transformers import here: the driver uses it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmtune.integrations.hf_args import optimizer_arguments, trainer_arguments
from lmtune.protocol import TrialSpec

__all__ = ["TOOLS", "Tool", "deliver", "expected", "placeholders", "undeliverable"]


@dataclass(frozen=True)
class Tool:
    """How one tool takes its settings."""

    name: str
    delivery: Literal["flags", "config"]
    # HF TrainingArguments name -> the tool's key (absent: the same name; None: the tool has no such key)
    rename: Mapping[str, str | None] = field(default_factory=dict)
    # lmtune's LoRA fields -> the tool's keys (None for the whole mapping: the tool trains no LoRA)
    lora: Mapping[str, str] | None = None
    lora_on: Mapping[str, Any] = field(default_factory=dict)  # what turns LoRA on in the tool
    fixed: Mapping[str, Any] = field(default_factory=dict)  # what every trial sets (no hub, no trackers)
    lora_targets_as: Literal["list", "comma"] = "list"


_HF_FIXED = {"report_to": "none", "save_strategy": "no", "disable_tqdm": True}

TOOLS: dict[str, Tool] = {
    # HF example scripts (run_glue.py, run_clm.py, ...): HfArgumentParser flags, no LoRA
    "hf": Tool("hf", "flags", fixed=_HF_FIXED),
    # TRL's CLI (trl sft / dpo / ...): TrlParser flags (SFTConfig = TrainingArguments) and ModelConfig's LoRA
    "trl": Tool("trl", "flags", fixed=_HF_FIXED,
                lora={"lora_r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                      "lora_target_modules": "lora_target_modules"},
                lora_on={"use_peft": True}),
    # LLaMA-Factory: one flat YAML of HF TrainingArguments and its own finetuning keys
    "llamafactory": Tool("llamafactory", "config", rename={"train_sampling_strategy": None},
                         fixed={**_HF_FIXED, "overwrite_output_dir": True},
                         lora={"lora_r": "lora_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                               "lora_target_modules": "lora_target"},
                         lora_on={"finetuning_type": "lora"}, lora_targets_as="comma"),
    # axolotl: its own YAML keys
    "axolotl": Tool("axolotl", "config",
                    rename={"per_device_train_batch_size": "micro_batch_size", "per_device_eval_batch_size":
                            "eval_batch_size", "lr_scheduler_type": "lr_scheduler", "train_sampling_strategy": None,
                            "eval_strategy": None, "disable_tqdm": None, "report_to": None,
                            "activation_checkpointing": "gradient_checkpointing",
                            "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs", "optim": "optimizer",
                            "use_cpu": None},
                    fixed={"save_strategy": "no"},
                    lora={"lora_r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                          "lora_target_modules": "lora_target_modules"},
                    lora_on={"adapter": "lora"}),
}

# training fields the HF mapping delivers (through trainer_arguments / optimizer_arguments)
_DELIVERED = {"learning_rate", "batch_size", "micro_batch_size", "epochs", "max_steps", "eval_every",
              "eval_batch_size", "weight_decay", "max_grad_norm", "lr_scheduler", "warmup_ratio", "seed",
              "group_by_length", "gradient_checkpointing", "optimizer", "beta1", "beta2", "eps", "momentum",
              "nesterov", "precision"}
_LORA = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# keys of a tool's config that say what a written key says, another way: dropped from the copy (transformers
# 5.x reads warmup_ratio into warmup_steps, so a config's ratio would replace the trial's warm-up)
_SUPERSEDES = {"warmup_steps": ("warmup_ratio",), "eval_strategy": ("evaluation_strategy",),
               "eval_steps": ("evals_per_epoch",), "lr_scheduler": ("lr_scheduler_type",), "lora_rank": ("lora_r",)}


def undeliverable(tool: str, names: Iterable[str], *, tool_args: Mapping[str, str], training_fields: Iterable[str]
                  ) -> list[str]:
    """The names among ``names`` (searched, or set in the training section) that ``tool`` cannot be given: a
    training field no mapping of the tool carries (dropout, layer-wise decay, ...), LoRA for a tool without
    it. Script parameters (``task.defaults``) need a ``task.tool_args`` entry or a ``{name}`` in the command,
    which the config checks."""
    t = TOOLS[tool]
    fields = set(training_fields)
    out = []
    for name in names:
        if name in tool_args or name not in fields:
            continue
        if name in _DELIVERED or (name == "lora_enabled" and t.lora is not None):
            continue
        if name in _LORA and t.lora is not None:
            continue
        out.append(name)
    return sorted(out)


def expected(spec: TrialSpec, *, world: int = 1) -> dict[str, Any]:
    """What the tool's Trainer must run with, in HF ``TrainingArguments`` names (``lora_*``: the peft config's),
    for the trial ``spec``: the values `deliver` wrote the tool's way."""
    hp = spec.hparams
    args = trainer_arguments(hp, total_examples=spec.total_examples, examples_per_unit=spec.examples_per_unit,
                             world=world)
    args.update(optimizer_arguments(hp) or {})
    precision = str(hp.get("precision", "fp32"))
    if precision in ("bf16", "fp16"):
        args[precision] = True
    if spec.device == "cpu":
        args["use_cpu"] = True
    if hp.get("lora_enabled"):
        targets = hp.get("lora_target_modules")
        if isinstance(targets, str):
            targets = [s.strip() for s in targets.split(",") if s.strip()]
        args.update(lora_r=int(hp["lora_r"]), lora_alpha=float(hp["lora_alpha"]),
                    lora_dropout=float(hp["lora_dropout"]), lora_target_modules=targets)
    return args


def _tool_settings(tool: Tool, spec: TrialSpec, output_dir: Path, final_args: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's settings in the tool's own keys."""
    hf = expected(spec)
    lora = {k: hf.pop(k) for k in _LORA if k in hf}
    out: dict[str, Any] = {}
    for key, value in {**hf, **tool.fixed, "output_dir": str(output_dir)}.items():
        name = tool.rename.get(key, key)
        if name is not None:
            out[name] = value
    if lora and tool.lora is not None:
        out.update(tool.lora_on)
        for key, value in lora.items():
            if key == "lora_target_modules" and (value is None or tool.lora_targets_as == "comma"):
                if value is None:
                    continue
                value = ",".join(value)
            out[tool.lora[key]] = value
    return {**out, **(final_args if spec.evaluate_test else {})}


def placeholders(spec: TrialSpec, *, config: Path | None, data_dir: Path | None = None) -> dict[str, str]:
    """What ``{name}`` in ``task.command`` becomes: any setting of the trial (searched, training field or script
    parameter), ``{model}``, ``{output_dir}`` (the tool's output folder), ``{trial}``, ``{config}`` and
    ``{data_dir}`` (task.dataset's splits as train/validation/test.jsonl)."""
    values = {k: _text(v) for k, v in spec.hparams.items() if v is not None}
    values.update(model=spec.model, output_dir=str(Path(spec.output_dir) / "tool"), trial=str(spec.trial))
    if config is not None:
        values["config"] = str(config)
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    return values


def deliver(spec: TrialSpec, *, tool: str, folder: Path, config: str | None, tool_args: Mapping[str, str],
            final_args: Mapping[str, Any], data_dir: Path | None = None) -> list[str]:
    """The command that runs trial ``spec`` with ``tool`` (``"none"``: only the ``{name}`` placeholders): the
    settings appended as flags, or written into ``folder/<tool config's name>`` (a copy of ``config`` with
    the settings set; dotted ``tool_args`` keys are nested), which ``{config}`` names in the command."""
    command = list(spec.command)
    written: Path | None = None
    if tool != "none":
        t = TOOLS[tool]
        settings = _tool_settings(t, spec, Path(spec.output_dir) / "tool", final_args)
        for name, key in tool_args.items():  # the user's own mapping: script parameters, renamed fields
            if name in spec.hparams:
                settings[key] = spec.hparams[name]
        if t.delivery == "config":
            if config is None:
                raise ValueError(f"task.tool {tool}: set task.tool_config to the tool's config file")
            import yaml

            source = Path(config)
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
            for key, value in settings.items():
                _set(data, key, value)
                for old in _SUPERSEDES.get(key, ()):  # the config's own way of saying it would win over ours
                    data.pop(old, None)
            written = folder / f"tool-{source.name}"
            written.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        else:
            for key, value in settings.items():
                command += _flag(key, value)
    values = placeholders(spec, config=written, data_dir=data_dir)
    return [_NAME.sub(lambda m: values.get(m.group(1), m.group(0)), part) for part in command]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for key in path:
        data = data.setdefault(key, {})
    data[last] = value


def _flag(key: str, value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [f"--{key}", *(_text(v) for v in value)]
    return [f"--{key}", _text(value)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # an integral value as an integer: a tool's int field (trl's lora_alpha) reads it
        return str(int(value)) if value.is_integer() else repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)
