"""On a CUDA GPU: bf16 autocast and fp16 with loss scaling train with fp32 master weights, the precision
that ran is recorded, and a checkpoint resumes the run. Marked ``gpu``: skipped where no GPU is present
(CI has none); run with ``pytest -m gpu`` on a GPU machine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_lm_training import lm_cache, lm_spec  # noqa: F401  (module fixture)
from test_loop import cache, make_spec  # noqa: F401  (module fixture)

from lmtune.protocol import Continue, TrialSpec
from lmtune.training.loop import train
from lmtune.training.session import setup

pytestmark = pytest.mark.gpu


def run(spec: TrialSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return train(spec, events.append, lambda: Continue()), events


def on_cuda(spec: TrialSpec, **changes: Any) -> TrialSpec:
    return TrialSpec(**{**spec.__dict__, "device": "cuda", **changes})


def expected(precision: str) -> str:
    if precision == "auto":  # a tiny model: autocast is slower than fp32 on a GPU at this size (the H200 check)
        return "fp32"
    return precision


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_causal_lm_trains_in_each_precision(precision: str, tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                            tmp_path: Path) -> None:
    spec = on_cuda(lm_spec(tiny_llama, lm_cache, tmp_path, precision=precision, lora_enabled=False,
                           learning_rate=1e-3), total_examples=64)
    session = setup(spec)
    assert {p.dtype for p in session.model.parameters()} == {torch.float32}  # master weights
    assert (session.scaler is not None) == (expected(precision) == "fp16")
    result, events = run(spec)
    assert result["precision"] == expected(precision)
    losses = [e["metrics"]["eval_loss"] for e in events if e["event"] == "eval"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert result.get("peak_memory_mb", 0) > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lora_trial_on_cuda(precision: str, tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    result, _ = run(on_cuda(lm_spec(tiny_llama, lm_cache, tmp_path, precision=precision)))
    assert result["precision"] == precision and math.isfinite(result["metrics"]["eval_loss"])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_classifier_trains_on_cuda(precision: str, tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    spec = on_cuda(make_spec(tiny_model, cache, tmp_path, precision=precision), total_examples=768)
    result, _ = run(spec)
    assert result["precision"] == precision
    assert result["metrics"]["eval_accuracy"] > 0.7  # the toy task, as on CPU


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_on_cuda_matches_uninterrupted(precision: str, tiny_model: Path, cache: Path,  # noqa: F811
                                              tmp_path: Path) -> None:
    """Optimizer, scheduler, loss scaler and CUDA RNG state travel in the checkpoint. GPU kernels are not
    bit-deterministic (atomic adds in backward), so the match is to 1e-3, not CPU's 1e-6."""
    base = on_cuda(make_spec(tiny_model, cache, tmp_path / "a", precision=precision, dropout=0.2, batch_size=8))
    full = [e for e in run(TrialSpec(**{**base.__dict__, "checkpoint_every": 1}))[1] if e["event"] == "eval"]
    resumed = [e for e in run(TrialSpec(**{**base.__dict__, "output_dir": str(tmp_path / "b"),
                                           "resume_from": full[1]["checkpoint"]}))[1] if e["event"] == "eval"]
    assert [e["units"] for e in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed, strict=True):
        assert b["metrics"]["eval_loss"] == pytest.approx(a["metrics"]["eval_loss"], abs=1e-3)


def test_qlora_trains_adapters_on_a_4bit_base(tiny_llama: Path, lm_cache: Path, tmp_path: Path,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``lora_quantization: 4bit``: the base's projections load as bitsandbytes NF4 (double quantization, bf16
    compute) on the GPU, only the LoRA matrices train, and they change. Needs bitsandbytes."""
    bnb = pytest.importorskip("bitsandbytes")
    from lmtune.training import loop

    spec = on_cuda(lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_quantization="4bit",
                           lora_dropout=0.0, learning_rate=1e-2, precision="bf16"), total_examples=64)
    sessions = []
    real_setup = loop.setup
    monkeypatch.setattr(loop, "setup", lambda s: sessions.append(real_setup(s)) or sessions[-1])
    before = {n: p.detach().clone() for n, p in setup(spec).model.named_parameters() if p.requires_grad}
    _, events = run(spec)
    model = sessions[0].model
    quantized = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    projections = {n for n, m in model.named_modules() if n.endswith(("_proj", "_proj.base_layer"))
                   and isinstance(m, torch.nn.Linear)}
    assert quantized and quantized == projections, projections - quantized  # q/k/v/o and MLP: all 4-bit
    layer = next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.quant_type == "nf4" and layer.compute_dtype == torch.bfloat16
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(before)
    assert before and all(".lora_" in n for n in before)
    after = dict(model.named_parameters())
    changed = [n for n in before if not torch.equal(after[n].detach(), before[n])]
    assert len(changed) == len(before)  # every adapter matrix trained (lora_B starts at zero)
    losses = [e["metrics"]["eval_loss"] for e in events if e["event"] == "eval"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_packing_on_cuda_trains_like_the_padded_run(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    hp = {"lora_enabled": True, "lora_dropout": 0.0}
    padded, _ = run(on_cuda(lm_spec(tiny_llama, lm_cache, tmp_path / "a", **hp)))
    packed, _ = run(on_cuda(lm_spec(tiny_llama, lm_cache, tmp_path / "b", packing=True, **hp)))
    assert packed["train_tokens"] == padded["train_tokens"]
    assert packed["metrics"]["eval_loss"] == pytest.approx(padded["metrics"]["eval_loss"], abs=1e-4)


@pytest.mark.parametrize("sharded", [False, True])
def test_two_gpu_ranks_train_what_one_gpu_trains(sharded: bool, tiny_model: Path, cache: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    """NCCL, one GPU per rank: data-parallel and sharded (FSDP) trials equal the one-GPU run (no dropout)."""
    import dataclasses

    from test_distributed import NO_DROPOUT, losses, run_worker

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    one = on_cuda(make_spec(tiny_model, cache, tmp_path / "one", **NO_DROPOUT, micro_batch_size=7, batch_size=15),
                  interactive=False, threads=2)
    two = dataclasses.replace(one, output_dir=str(tmp_path / "two"), world_size=2, shard_model=sharded)
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "0,1"}
    a, b = run_worker(one, tmp_path / "one", env=env), run_worker(two, tmp_path / "two", env=env)
    for (_, eval_a, train_a), (_, eval_b, train_b) in zip(losses(a), losses(b), strict=True):
        assert eval_b == pytest.approx(eval_a, rel=1e-3) and train_b == pytest.approx(train_a, rel=1e-3)
    if sharded:
        held = next(e for e in b if e["event"] == "start")["sharded"]
        assert 0.4 < held["parameters_on_rank"] / held["parameters"] < 0.6
