"""A TRL `SFTTrainer` LoRA fine-tune of a chat model, made an lmtune trial by `LmtuneCallback`.

Run by `lmtune tune examples/trl_sft/trl_sft.yaml` (task.type: script). The lines marked `lmtune` are all
that differs from the script as one would write it without lmtune.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

import lmtune
from lmtune.integrations.transformers import LmtuneCallback


def main() -> None:
    trial = lmtune.trial()  # lmtune: this trial's settings, folders and data
    callback = LmtuneCallback(trial)  # lmtune
    splits = trial.splits()  # rows of {"messages": [{role, content}, ...]}
    train, validation, test = (Dataset.from_list(splits[s]) for s in ("train", "validation", "test"))

    tokenizer = AutoTokenizer.from_pretrained(trial.model)
    model = AutoModelForCausalLM.from_pretrained(trial.model, dtype="float32", **callback.model_kwargs(trial.model))
    config = SFTConfig(**callback.arguments(max_length=128, gradient_checkpointing=False,  # lmtune
                                             logging_strategy="no"))
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, eval_dataset=validation,
                         processing_class=tokenizer, peft_config=callback.lora_config("CAUSAL_LM"),  # lmtune: LoRA
                         callbacks=[callback])  # lmtune
    trainer.train()
    callback.finish(trainer, test_dataset=test)  # lmtune: final runs score the test split and save the adapter


if __name__ == "__main__":
    main()
