"""The memory knobs ``training.packing`` and ``training.lora_quantization`` (QLoRA) are refused when the
config is read wherever they could do nothing or cannot run: packing outside causal-LM chat data, a 4-bit
base without LoRA, without bitsandbytes or without a CUDA GPU — fixed or searched."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from lmtune.config import load_config
from lmtune.config import loader as loader_module
from lmtune.errors import ConfigError

LM = ["task.type=causal_lm", "task.model=builtin:smollm2-135m", "task.dataset=builtin:chatterbot"]
QLORA = [*LM, "training.lora_enabled=true", "training.lora_quantization=4bit"]
NO_BNB = ("training.lora_quantization: 4bit (QLoRA) needs the bitsandbytes package, which is not installed; on a "
          "machine with a CUDA GPU run pip install 'lmtune[qlora]', or set training.lora_quantization: none")


@pytest.fixture
def bitsandbytes_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return real("json") if name == "bitsandbytes" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def no_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))


def test_packing_is_accepted_for_chat_data_fixed_or_searched() -> None:
    assert load_config(None, [*LM, "training.packing=true"]).training.packing is True
    load_config(None, [*LM, "search.space={packing: [true, false]}"])


@pytest.mark.parametrize(("overrides", "expect"), [
    (["training.packing=true"], r"^training\.packing: packing lays causal-LM examples end to end; task\.type "
                                r"classification has none to pack .*; set training\.packing: false$"),
    (["search.space={packing: [true, false]}"], r"^search\.space\.packing: .*; remove search\.space\.packing$"),
    ([*LM, "task.dataset=builtin:hamlet", "training.packing=true"],
     r"^training\.packing: task\.dataset builtin:hamlet is plain text, which is cut into full blocks of "
     r"task\.max_length tokens: there is nothing to pack"),
])
def test_packing_that_could_do_nothing_is_refused(overrides: list[str], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_config(None, overrides)


def test_a_4bit_base_without_lora_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^training\.lora_quantization: 4bit quantizes the frozen base model under "
                                          r"LoRA \(QLoRA\), and LoRA is off; set training\.lora_enabled: true"):
        load_config(None, [*LM, "training.lora_quantization=4bit"])
    with pytest.raises(ConfigError, match=r"search\.space\.lora_quantization: LoRA settings are searched but LoRA"):
        load_config(None, [*LM, "search.space={lora_quantization: [none, 4bit]}"])


def test_a_searched_4bit_base_is_refused_under_pbt() -> None:
    with pytest.raises(ConfigError, match=r"^search\.space\.lora_quantization: PBT members take each other's "
                                          r"adapters"):
        load_config(None, [*LM, "training.lora_enabled=true", "search.strategy=pbt",
                           "search.space={lora_quantization: [none, 4bit], learning_rate: [1e-4, 1e-3]}"])


def test_without_bitsandbytes_qlora_is_refused_naming_the_fix(no_bitsandbytes: None) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, QLORA)
    assert str(exc.value) == NO_BNB
    with pytest.raises(ConfigError, match=r"^search\.space\.lora_quantization: 4bit \(QLoRA\) needs the bitsandbytes "
                                          r"package.* or leave 4bit out of search\.space\.lora_quantization$"):
        load_config(None, [*LM, "training.lora_enabled=true", "search.space={lora_quantization: [none, 4bit]}"])
    load_config(None, [*LM, "training.lora_enabled=true", "training.lora_quantization=none"])  # the default


@pytest.mark.parametrize(("overrides", "cuda", "missing"), [
    ([], False, r"no CUDA GPU is visible here \(nvidia-smi lists none\)"),
    (["execution.device=cpu"], True, "execution.device is cpu"),
    (["execution.backend=ray"], True, r"execution\.gpus_per_trial is 0 \(a Ray trial gets no GPU\)"),
])
def test_without_a_cuda_gpu_qlora_is_refused(overrides: list[str], cuda: bool, missing: str,
                                             bitsandbytes_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "cuda_visible", lambda: cuda)
    with pytest.raises(ConfigError, match=rf"^training\.lora_quantization: 4bit \(QLoRA\) needs a CUDA GPU for each "
                                          rf"trial \(bitsandbytes' 4-bit weights run on CUDA\), and {missing}; run the "
                                          r"study on a GPU machine, or set training\.lora_quantization: none$"):
        load_config(None, [*QLORA, *overrides])


def test_with_bitsandbytes_and_a_gpu_qlora_is_accepted(bitsandbytes_installed: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "cuda_visible", lambda: True)
    assert load_config(None, QLORA).training.lora_quantization == "4bit"
    monkeypatch.setattr(loader_module, "cuda_visible", lambda: False)  # Ray: the GPUs are the workers'
    load_config(None, [*QLORA, "execution.backend=ray", "execution.gpus_per_trial=1"])


def test_a_script_decides_for_itself(no_bitsandbytes: None) -> None:
    """A script loads its own model and packs its own data: it gets the settings, nothing is refused."""
    script = ["task.type=script", "task.command=[python, train.py]", "task.train_size=10", "task.metrics=[eval_loss]",
              "study.metric=eval_loss", "study.direction=minimize", "training.packing=true",
              "training.lora_quantization=4bit"]
    cfg = load_config(None, script)
    assert cfg.training.packing and cfg.training.lora_quantization == "4bit"
