"""``lmtune export --format hf``: JSON that the pinned transformers' TrainingArguments accepts as it is,
in the trial's own steps, and a Trainer trains one step with it."""

from __future__ import annotations

from pathlib import Path

from lmtune.cli.views import hf_training_arguments
from lmtune.config.schema import TrainingSection


def test_hf_export_is_in_the_trials_own_steps() -> None:
    # the trial ran 320 examples (lmtune max_steps 10 at the default batch 32) at batch 8: 40 HF steps
    args, _ = hf_training_arguments({"max_steps": 10, "batch_size": 8, "epochs": 2, "warmup_ratio": 0.1},
                                    total_examples=320, examples_per_unit=64)
    assert args["max_steps"] == 40 and args["per_device_train_batch_size"] == 8
    assert args["eval_steps"] == 8 and args["eval_strategy"] == "steps" and args["warmup_steps"] == 4
    assert "warmup_ratio" not in args  # not a TrainingArguments field in the pinned transformers


def test_training_arguments_accept_the_export_and_a_trainer_steps_with_it(tiny_model: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from conftest import make_rows

    config = {**TrainingSection().model_dump(), "learning_rate": 1e-3, "batch_size": 8, "warmup_ratio": 0.2,
              "lr_scheduler": "cosine", "optimizer": "sgd", "momentum": 0.8, "dropout": 0.2,
              "micro_batch_size": 4, "gradient_checkpointing": True}
    args, extra = hf_training_arguments(config, total_examples=16, examples_per_unit=8)
    assert extra == {"dropout": 0.2}  # what TrainingArguments cannot carry is kept apart
    ta = TrainingArguments(**{**args, "output_dir": str(tmp_path), "use_cpu": True, "report_to": "none"})
    assert (ta.max_steps, ta.gradient_accumulation_steps, ta.warmup_steps) == (2, 2, 1)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    data = Dataset.from_list(make_rows(16)).map(lambda b: tok(b["text"], truncation=True, max_length=16),
                                                batched=True, remove_columns=["text"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    trainer = Trainer(model=model, args=ta, train_dataset=data, eval_dataset=data, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 2 and type(trainer.optimizer.optimizer).__name__ == "SGD"


def test_packing_and_a_4bit_base_are_kept_apart_for_the_user_to_apply() -> None:
    """TrainingArguments has no field for either: TRL's SFTConfig(packing=True) and a BitsAndBytesConfig at load."""
    config = {**TrainingSection().model_dump(), "packing": True, "lora_enabled": True, "lora_quantization": "4bit"}
    args, extra = hf_training_arguments(config, total_examples=16, examples_per_unit=8)
    assert extra["packing"] is True and extra["lora_quantization"] == "4bit" and extra["lora_r"] == 8
    assert "packing" not in args and "lora_quantization" not in args
    _, plain = hf_training_arguments({**config, "lora_enabled": False, "packing": False}, total_examples=16,
                                     examples_per_unit=8)
    assert "packing" not in plain and "lora_quantization" not in plain  # LoRA off: its base is not quantized
