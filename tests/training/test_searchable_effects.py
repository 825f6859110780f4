"""Every training field that may appear in ``search.space`` changes what the trainer does.

A field accepted, recorded and exported but ignored by the trainer (as ``epochs`` once was) is a defect
nobody sees. This suite enumerates `TRAINING_FIELDS`: each one is either refused in a space
(`FIXED_PER_STUDY`, tested in tests/config/test_effects.py) or has an entry in `CHANGES` (the tiny BERT
classifier) or `LM_CHANGES` (a causal-LM-only field, on the tiny Llama's chats) below, and training with
the changed value gives a different run; or, in `NEEDS_HARDWARE`, it is refused up front where the
hardware it needs is missing and proven where it is present. A new field without an entry fails here.

"Different run" is a fingerprint of what the trainer did: the shapes of every forward pass (batch
sizes, micro-batches, evaluation batches, training length), the evaluation curve, how the run ended,
and the trained weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_lm_training import lm_cache  # noqa: F401  (module fixture: 32 chats, max_length 96)

from lmtune.config import TRAINING_FIELDS, TrainingSection
from lmtune.config.effects import FIXED_PER_STUDY
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache
from lmtune.protocol import Continue, TrialSpec
from lmtune.training import session as session_module
from lmtune.training.loop import train
from lmtune.tuner.plan import training_examples

TRAIN_ROWS = 96
BASE = {"learning_rate": 3e-3, "batch_size": 16, "epochs": 1.0}
SGD = {"optimizer": "sgd"}
LORA = {"lora_enabled": True}
# field -> (the context in which it takes effect, the changed value)
CHANGES: dict[str, tuple[dict[str, Any], Any]] = {
    "learning_rate": ({}, 1e-4),
    "batch_size": ({}, 8),
    "epochs": ({}, 2.0),
    "max_steps": ({}, 3),
    "eval_batch_size": ({}, 7),
    "weight_decay": ({}, 0.5),
    "dropout": ({}, 0.5),
    "attention_dropout": ({}, 0.5),
    "optimizer": ({}, "sgd"),
    "momentum": (SGD, 0.0),
    "nesterov": (SGD, True),
    "beta1": ({}, 0.5),
    "beta2": ({}, 0.9),
    "eps": ({}, 1e-2),
    "lr_scheduler": ({}, "constant"),
    "warmup_ratio": ({}, 0.5),
    "max_grad_norm": ({}, 1e-3),
    "group_by_length": ({}, True),  # other rows share a batch: other padded shapes, another curve
    "layer_decay": ({}, 0.5),
    "precision": ({}, "bf16"),
    "micro_batch_size": ({}, 4),
    "gradient_checkpointing": ({}, True),  # the blocks run forward twice per step (recomputed in backward)
    "lora_enabled": ({}, True),
    "lora_r": (LORA, 2),
    "lora_alpha": (LORA, 2.0),
    "lora_dropout": (LORA, 0.5),
    "lora_target_modules": (LORA, "query"),
    "seed": ({}, 1),
    "early_stopping_patience": ({"early_stopping_min_delta": 0.5}, 1),
    "early_stopping_min_delta": ({"early_stopping_patience": 1}, 0.5),
}
# Fields for causal LMs only (refused for classification: config/effects.check_task_fields)
LM_CHANGES: dict[str, tuple[dict[str, Any], Any]] = {
    # the same examples per step, laid end to end in fewer rows: the forward shapes change, the update does
    # not (tests/training/test_packing.py: the same losses to 1e-5)
    "packing": ({}, True),
}
LM_ROWS = 32
# Fields whose effect needs hardware this suite may not have: refused before anything trains where it is
# missing, proven where it is present
NEEDS_HARDWARE = {
    "lora_quantization": "4-bit base weights need bitsandbytes and a CUDA GPU: refused up front without them "
                         "(tests/config/test_memory_knobs.py); tests/training/test_gpu.py::"
                         "test_qlora_trains_adapters_on_a_4bit_base checks the base layers are bitsandbytes "
                         "Linear4bit and the adapters train",
}


def test_every_training_field_is_either_proven_to_matter_or_refused_in_a_space() -> None:
    proven = [set(CHANGES), set(LM_CHANGES), set(NEEDS_HARDWARE), set(FIXED_PER_STUDY)]
    missing = TRAINING_FIELDS - set().union(*proven)
    assert not missing, f"training fields with no effect test: {sorted(missing)}; add them to CHANGES"
    assert sum(map(len, proven)) == len(set().union(*proven))  # each field in one place only


@pytest.fixture(scope="module")
def cache(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    spec = DataSpec(dataset=str(tiny_csv), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column="label", sizes={"train": TRAIN_ROWS, "validation": 32, "test": 32}, seed=0)
    return build_cache(spec, AutoTokenizer.from_pretrained(tiny_model), str(tiny_model), 16,
                       tmp_path_factory.mktemp("cache"))


def fingerprint(model: Path, cache: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
                hp: dict[str, Any], task_type: str = "classification", rows: int = TRAIN_ROWS) -> tuple[Any, ...]:
    hparams = {**TrainingSection().model_dump(), **BASE, **hp}
    # the training length comes from the same function the driver uses for every trial
    total = training_examples(hparams, train_rows=rows, default_batch_size=BASE["batch_size"])
    spec = TrialSpec(trial=0, model=str(model), task_type=task_type, data_cache=str(cache),
                     hparams=hparams, examples_per_unit=32, total_examples=total, output_dir=str(out),
                     metric="eval_loss", direction="minimize", interactive=False)
    shapes: list[tuple[int, ...]] = []
    models: list[torch.nn.Module] = []
    real_load = session_module.load_model

    def load_and_watch(*args: Any, **kwargs: Any) -> torch.nn.Module:
        m = real_load(*args, **kwargs)
        m.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                    with_kwargs=True)
        models.append(m)
        return m

    monkeypatch.setattr(session_module, "load_model", load_and_watch)
    calls = [0]  # module forward calls: recomputation (gradient checkpointing) shows here
    hook = torch.nn.modules.module.register_module_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        result = train(spec, lambda _ev: None, lambda: Continue())
    finally:
        hook.remove()
    weights = tuple(round(float(p.detach().float().sum()), 6) for p in models[-1].parameters())
    ends = (result["step"], result["examples"], result["stopped_by"], result["precision"])
    curve = tuple(round(v, 6) for v in result["metrics"].values())
    return tuple(shapes), ends, curve, weights, calls[0]


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_searched_value_changes_what_the_trainer_does(field: str, tiny_model: Path, cache: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context, value = CHANGES[field]
    before = fingerprint(tiny_model, cache, tmp_path / "a", monkeypatch, context)
    after = fingerprint(tiny_model, cache, tmp_path / "b", monkeypatch, {**context, field: value})
    assert before != after, f"training.{field}={value!r} trained exactly like the default: a silent no-op"


@pytest.mark.parametrize("field", sorted(LM_CHANGES))
def test_a_searched_lm_value_changes_what_the_trainer_does(field: str, tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context, value = LM_CHANGES[field]
    args = {"task_type": "causal_lm", "rows": LM_ROWS}
    before = fingerprint(tiny_llama, lm_cache, tmp_path / "a", monkeypatch, context, **args)
    after = fingerprint(tiny_llama, lm_cache, tmp_path / "b", monkeypatch, {**context, field: value}, **args)
    assert before != after, f"training.{field}={value!r} trained exactly like the default: a silent no-op"


def test_epochs_set_the_training_length_and_its_schedule(tiny_model: Path, cache: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    one = fingerprint(tiny_model, cache, tmp_path / "a", monkeypatch, {"epochs": 1.0})
    three = fingerprint(tiny_model, cache, tmp_path / "b", monkeypatch, {"epochs": 3.0})
    assert one[1][1] == TRAIN_ROWS and three[1][1] == 3 * TRAIN_ROWS  # examples trained
    steps = one[1][0]
    assert three[1][0] == 3 * steps
