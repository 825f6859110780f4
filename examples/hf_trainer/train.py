"""A plain HF `Trainer` fine-tune of a sequence classifier, made an lmtune trial by `LmtuneCallback`.

Run by `lmtune tune examples/hf_trainer/hf_trainer.yaml` (task.type: script). The lines marked `lmtune`
are all that differs from the script as one would write it without lmtune. Standalone (no study):
`python examples/hf_trainer/train.py` trains lmtune's default settings once.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

import lmtune
from lmtune.integrations.transformers import LmtuneCallback

STANDALONE = {"learning_rate": 5e-5, "batch_size": 16, "epochs": 1, "eval_every": 8}


def main() -> None:
    import os

    if "LMTUNE_TRIAL" in os.environ:
        trial = lmtune.trial()  # lmtune: this trial's settings, folders and data
        splits = trial.splits()
        model_name = trial.model
    else:  # standalone: lmtune's built-ins, lmtune's default settings
        from lmtune.data.sources import rotten_tomatoes_rows
        from lmtune.training.models import resolve_model

        rows = rotten_tomatoes_rows()[:768]
        splits = {"train": rows[:512], "validation": rows[512:640], "test": rows[640:]}
        model_name = str(resolve_model("builtin:minilm-l6"))
        trial = lmtune.trial(defaults=STANDALONE, train_rows=len(splits["train"]))
    callback = LmtuneCallback(trial)  # lmtune

    tokenizer = AutoTokenizer.from_pretrained(model_name)

    def encode(rows: list[dict]) -> Dataset:
        ds = Dataset.from_list([{"text": r["text"], "label": int(r["label"])} for r in rows])
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                      remove_columns=["text"])

    train, validation, test = (encode(splits[s]) for s in ("train", "validation", "test"))
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name, num_labels=2, **callback.model_kwargs(model_name))  # lmtune: dropout

    def accuracy(pred: tuple) -> dict[str, float]:
        logits, labels = pred
        return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}

    args = TrainingArguments(**callback.arguments(logging_strategy="no", dataloader_num_workers=0))  # lmtune
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      processing_class=tokenizer, compute_metrics=accuracy,
                      callbacks=[callback], optimizers=callback.optimizers(model))  # lmtune
    trainer.train(resume_from_checkpoint=callback.resume_from)  # lmtune: PBT starts a member again from a checkpoint
    callback.finish(trainer, test_dataset=test)  # lmtune: final runs score the test split and save the model


if __name__ == "__main__":
    main()
