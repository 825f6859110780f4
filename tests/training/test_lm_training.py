"""Causal-LM trials on a tiny Llama: shifted loss and perplexity, LoRA wiring, adapter checkpoints,
gradient accumulation equivalence, out-of-memory halving, precision records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_loop import cache, make_spec  # noqa: F401  (module fixture)

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_split
from lmtune.errors import ConfigError
from lmtune.protocol import Continue, TrialSpec, decode_decision
from lmtune.training import loop
from lmtune.training.checkpoint import WEIGHTS
from lmtune.training.loop import train
from lmtune.training.session import Session, setup


@pytest.fixture(scope="module")
def lm_cache(tiny_llama: Path, tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    spec = DataSpec(dataset=str(tiny_chat), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column=None, sizes={"train": 32, "validation": 8, "test": 8}, seed=0,
                    task="causal_lm", messages_column="messages")
    return build_cache(spec, AutoTokenizer.from_pretrained(tiny_llama), "tiny-llama", 96,
                       tmp_path_factory.mktemp("lm-cache"))


def lm_spec(model: Path, data: Path, out: Path, **hp: Any) -> TrialSpec:
    hparams = {**TrainingSection().model_dump(), "learning_rate": 3e-3, "batch_size": 8, "dropout": None, **hp}
    return TrialSpec(trial=0, model=str(model), task_type="causal_lm", data_cache=str(data), hparams=hparams,
                     examples_per_unit=16, total_examples=32, metric="eval_loss", direction="minimize",
                     output_dir=str(out))


def run(spec: TrialSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return train(spec, events.append, lambda: Continue()), events


def test_lm_trial_reports_shifted_loss_and_perplexity(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    result, events = run(lm_spec(tiny_llama, lm_cache, tmp_path))
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["units"] for e in evals] == [1, 2]
    m = result["metrics"]
    assert m["eval_perplexity"] == pytest.approx(math.exp(m["eval_loss"]))
    assert 0 <= m["eval_token_accuracy"] <= 1 and evals[-1]["metrics"]["eval_loss"] < evals[0]["metrics"]["eval_loss"]
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path))
    lengths = load_split(lm_cache, "train").lengths()
    batches = [s.batch_at(k) for k in range(result["step"])]
    assert result["train_tokens"] == sum(int(lengths[b].sum()) for b in batches)  # real tokens, no padding
    assert result["train_tokens"] < sum(len(b) * int(lengths[b].max()) for b in batches)


def test_eval_loss_equals_the_models_own_shifted_loss(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    """Our per-token loss over label tokens is what transformers computes with its own label shift."""
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path))
    val = load_split(lm_cache, "validation")
    row = torch.from_numpy(val.row(0).astype(np.int64))[None]
    labels = torch.from_numpy(val.row_labels(0).astype(np.int64))[None]
    one = type(val)(ids=val.row(0).copy(), offsets=np.array([0, len(val.row(0))]), labels=None,
                    token_labels=val.row_labels(0).copy())
    s.eval_split = one
    ours = s.evaluate()["eval_loss"]
    s.model.eval()
    with torch.no_grad():
        theirs = float(s.model(input_ids=row, labels=labels).loss)
    assert ours == pytest.approx(theirs, rel=1e-5)


def _weights_after_one_step(spec: TrialSpec, micro: int) -> dict[str, torch.Tensor]:
    s = setup(TrialSpec(**{**spec.__dict__, "hparams": {**spec.hparams, "micro_batch_size": micro}}))
    assert s.micro_batch_size == micro
    loop._step(s, s.batch_at(0), lambda e: None)
    return {k: v.detach().clone() for k, v in s.model.state_dict().items()}


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_accumulation_1x8_equals_4x2(task: str, tiny_model: Path, cache: Path, tiny_llama: Path,  # noqa: F811
                                     lm_cache: Path, tmp_path: Path) -> None:
    hp = {"batch_size": 8, "optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.5, "dropout": 0.0,
          "precision": "fp32", "max_grad_norm": None}
    spec = make_spec(tiny_model, cache, tmp_path, **hp) if task == "classification" else \
        lm_spec(tiny_llama, lm_cache, tmp_path, **hp)
    whole, accumulated = _weights_after_one_step(spec, 8), _weights_after_one_step(spec, 2)
    before = setup(spec).model.state_dict()
    assert any(not torch.equal(whole[k], before[k]) for k in whole)  # the step did change the weights
    for k in whole:
        torch.testing.assert_close(accumulated[k], whole[k], rtol=0, atol=1e-5, msg=k)


def _fail_above(monkeypatch: pytest.MonkeyPatch, limit: int, error: type[Exception] = torch.OutOfMemoryError,
                message: str = "CUDA out of memory (injected)") -> list[int]:
    """Make the training forward raise an out-of-memory error for micro-batches larger than ``limit``."""
    seen: list[int] = []
    real_setup = loop.setup

    def patched(spec: TrialSpec) -> Session:
        s = real_setup(spec)
        loss = s.train_loss  # every training forward goes through it (the model's own or a fast one)

        def guarded(batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
            rows = int(batch["input_ids"].shape[0])
            seen.append(rows)
            if rows > limit:
                raise error(message)
            return loss(batch, labels)

        s.train_loss = guarded  # type: ignore[method-assign]
        return s

    monkeypatch.setattr(loop, "setup", patched)
    return seen


def test_out_of_memory_halves_the_micro_batch_and_retries(monkeypatch: pytest.MonkeyPatch, tiny_llama: Path,
                                                         lm_cache: Path, tmp_path: Path) -> None:
    reference, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "a", micro_batch_size=2))
    seen = _fail_above(monkeypatch, limit=2)
    result, events = run(lm_spec(tiny_llama, lm_cache, tmp_path / "b"))
    retries = [e for e in events if e["event"] == "oom_retry"]
    assert [e["micro_batch_size"] for e in retries] == [4, 2] and retries[0]["step"] == 0
    assert seen[:3] == [8, 4, 2] and max(seen[3:]) == 2  # then it stays at the size that fits
    assert result["micro_batch_size"] == 2 and result["step"] == 4
    for key in ("eval_loss", "train_loss"):  # the retried steps made the same updates
        assert result["metrics"][key] == pytest.approx(reference["metrics"][key], abs=1e-5)


def test_oom_message_form_and_limits(monkeypatch: pytest.MonkeyPatch, tiny_llama: Path, lm_cache: Path,
                                     tmp_path: Path) -> None:
    _fail_above(monkeypatch, limit=4, error=RuntimeError, message="DefaultCPUAllocator: out of memory")
    result, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "a"))
    assert result["micro_batch_size"] == 4
    _fail_above(monkeypatch, limit=0)
    with pytest.raises(torch.OutOfMemoryError):  # even one example does not fit: a real failure
        run(lm_spec(tiny_llama, lm_cache, tmp_path / "b"))
    _fail_above(monkeypatch, limit=0, error=RuntimeError, message="shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not retried
        run(lm_spec(tiny_llama, lm_cache, tmp_path / "c"))


def test_lora_trains_only_adapters(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_r=4, lora_alpha=8.0,
                      lora_dropout=0.0, lora_target_modules="q_proj, v_proj"))
    trainable = {n for n, p in s.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    before = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    loop._step(s, s.batch_at(0), lambda e: None)
    changed = {n for n, p in s.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    with pytest.raises(ConfigError, match=r"training.lora_target_modules.*\['nope'\] match no linear layer"):
        setup(lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_target_modules=["nope"]))


def test_adapter_checkpoint_is_small_and_resumes_exactly(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    hp = {"lora_enabled": True, "lora_r": 2, "lora_dropout": 0.1, "lr_scheduler": "cosine"}
    base = lm_spec(tiny_llama, lm_cache, tmp_path / "a", **hp)
    base = TrialSpec(**{**base.__dict__, "total_examples": 48})
    _, events = run(TrialSpec(**{**base.__dict__, "checkpoint_every": 1}))
    full = [e for e in events if e["event"] == "eval"]
    assert len(full) == 3
    first = Path(full[0]["checkpoint"])
    from safetensors import safe_open

    with safe_open(str(first / WEIGHTS), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_" in k for k in keys)  # the adapter only, not the frozen base
    model_bytes = (tiny_llama / "model.safetensors").stat().st_size
    assert (first / WEIGHTS).stat().st_size < model_bytes / 10
    _, resumed = run(TrialSpec(**{**base.__dict__, "output_dir": str(tmp_path / "b"), "resume_from": str(first)}))
    again = [e for e in resumed if e["event"] == "eval"]
    assert [e["units"] for e in again] == [2, 3]
    for a, b in zip(full[1:], again, strict=True):
        for key in ("train_loss", "eval_loss"):
            assert b["metrics"][key] == pytest.approx(a["metrics"][key], abs=1e-6), key


def test_saved_adapter_reloads_with_peft(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    spec = lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_dropout=0.0)
    result, _ = run(TrialSpec(**{**spec.__dict__, "save_adapter": True}))
    folder = Path(result["adapter_dir"])
    assert folder == tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
    assert PeftConfig.from_pretrained(str(folder)).peft_type.value == "LORA"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(folder))
    s = setup(spec)
    s.model = model
    assert s.evaluate()["eval_loss"] == pytest.approx(result["metrics"]["eval_loss"], abs=1e-5)


@pytest.mark.parametrize(("requested", "ran"), [("fp16", "bf16"), ("auto", "fp32"), ("bf16", "bf16")])
def test_precision_that_ran_is_recorded(requested: str, ran: str, tiny_llama: Path, lm_cache: Path,
                                        tmp_path: Path) -> None:
    spec = lm_spec(tiny_llama, lm_cache, tmp_path, precision=requested)
    result, events = run(TrialSpec(**{**spec.__dict__, "total_examples": 8, "examples_per_unit": 8}))
    assert events[0]["event"] == "start" and events[0]["precision"] == ran and result["precision"] == ran
    assert math.isfinite(result["metrics"]["eval_loss"])


def test_exploit_from_a_donor_with_another_lora_rank(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:
    """PBT: a member with r=4 takes a donor's r=2 adapter checkpoint; the model is rebuilt to fit it."""
    import json

    donor_spec = lm_spec(tiny_llama, lm_cache, tmp_path / "d", lora_enabled=True, lora_r=2)
    _, donor = run(TrialSpec(**{**donor_spec.__dict__, "checkpoint_every": 1}))
    checkpoint = next(e for e in donor if e["event"] == "eval")["checkpoint"]
    order = json.dumps({"exploit": {"checkpoint": checkpoint, "hparams": {"lora_r": 2, "learning_rate": 1e-3}}})
    answers = iter([order])
    events: list[dict[str, Any]] = []
    spec = lm_spec(tiny_llama, lm_cache, tmp_path / "e", lora_enabled=True, lora_r=4)
    result = train(spec, events.append, lambda: decode_decision(next(answers, "continue")))
    assert [e["event"] for e in events].count("exploited") == 1 and result["examples"] == 32
    assert math.isfinite(result["metrics"]["eval_loss"])


def test_gradient_checkpointing_with_lora_trains_the_same_adapters(tiny_llama: Path, lm_cache: Path,
                                                                   tmp_path: Path) -> None:
    """A memory knob, not a different run: with LoRA (frozen inputs) under non-reentrant checkpointing the
    losses and the trained adapters equal the run without it (dropout masks are replayed)."""
    lora = {"lora_enabled": True, "lora_r": 4, "lora_dropout": 0.1}
    plain, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "a", **lora))
    checkpointed, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "b", **lora, gradient_checkpointing=True))
    assert plain["metrics"]["eval_loss"] == pytest.approx(checkpointed["metrics"]["eval_loss"], rel=1e-5)
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path / "c", **lora, gradient_checkpointing=True))
    assert s.model.base_model.model.is_activation_checkpointing


def test_a_4bit_base_is_nf4_and_refused_by_a_trainer_without_cuda(tiny_llama: Path, lm_cache: Path,
                                                                   tmp_path: Path) -> None:
    """The load settings of QLoRA (checked here; the 4-bit training itself: tests/training/test_gpu.py) and the
    trainer's own refusal where the config check could not see the trainer's machine (a Ray worker)."""
    from lmtune.training.models import quantization_kwargs

    kwargs = quantization_kwargs("4bit", "cuda:0")
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and kwargs["device_map"] == {"": "cuda:0"}
    assert quantization_kwargs("none", "cuda:0") == {}
    with pytest.raises(ConfigError, match=r"^training\.lora_quantization: 4bit \(QLoRA\) needs (the bitsandbytes "
                                          r"package and )?a CUDA device, which this trainer lacks \(device cpu\)"):
        setup(lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_quantization="4bit"))
