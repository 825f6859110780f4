"""Trainer speed: lmtune's trainer vs HF `Trainer` on the same model, data and batch size.

Both train MiniLM-L6 (builtin) for sequence classification on the same Rotten Tomatoes rows, same
max_length, batch size, optimizer (AdamW, lr 5e-5), fp32 on CPU, one process, the same thread count;
neither evaluates during the timed part. Reported: real (non-padding) train tokens per second of the
training loop alone (model load and tokenization excluded for both), median of ``--repeats`` runs.

    .venv/bin/python benchmarks/trainer_throughput.py --rows 1024 --repeats 3

HF side uses `DataCollatorWithPadding` (dynamic padding), the default random sampler (no length
grouping) — the way `Trainer.hyperparameter_search` users run it — and `group_by_length=True` as a
second, stronger baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_split
from lmtune.protocol import TrialSpec
from lmtune.training.models import load_tokenizer, resolve_model


def lmtune_run(model: str, cache: Path, rows: int, bs: int, out: Path) -> float:
    from lmtune.config import TrainingSection
    from lmtune.training.loop import train

    hp = {**TrainingSection().model_dump(), "batch_size": bs, "dropout": 0.1}
    spec = TrialSpec(trial=0, model=model, task_type="classification", data_cache=str(cache), hparams=hp,
                     examples_per_unit=rows, total_examples=rows, output_dir=str(out), interactive=False)
    events: list[dict[str, Any]] = []
    result = train(spec, events.append, lambda: "continue")
    return float(result["train_tokens"] / result["train_time_s"])


def hf_run(model: str, cache: Path, rows: int, bs: int, out: Path, group_by_length: bool) -> float:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    split = load_split(cache, "train")
    data = Dataset.from_dict({"input_ids": [split.row(i).tolist() for i in range(rows)],
                              "labels": split.labels[:rows].tolist() if split.labels is not None else []})
    real_tokens = int(split.lengths()[:rows].sum())
    tok = load_tokenizer(model)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=bs, num_train_epochs=1,
                             learning_rate=5e-5, save_strategy="no", eval_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=True,
                             train_sampling_strategy="group_by_length" if group_by_length else "random",
                             dataloader_num_workers=0, disable_tqdm=True)

    class Clock(TrainerCallback):
        t0 = 0.0
        t1 = 0.0

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            Clock.t0 = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            Clock.t1 = time.perf_counter()

    Trainer(model=net, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok),
            callbacks=[Clock()]).train()
    return real_tokens / (Clock.t1 - Clock.t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/trainer_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = resolve_model("builtin:minilm-l6")
    work = Path(tempfile.mkdtemp(prefix="lmtune-bench-"))
    spec = DataSpec(dataset="builtin:rotten_tomatoes", dataset_config=None, text_column="text",
                    text_pair_column=None, label_column="label",
                    sizes={"train": args.rows, "validation": 64, "test": 64}, seed=0)
    cache = build_cache(spec, load_tokenizer(model), model, args.max_length, work / "cache")
    results: dict[str, list[float]] = {"lmtune": [], "hf_trainer": [], "hf_trainer_group_by_length": []}
    for r in range(args.repeats):  # interleaved, so machine load hits all alike
        results["lmtune"].append(lmtune_run(model, cache, args.rows, args.batch_size, work / f"l{r}"))
        results["hf_trainer"].append(hf_run(model, cache, args.rows, args.batch_size, work / f"h{r}", False))
        results["hf_trainer_group_by_length"].append(
            hf_run(model, cache, args.rows, args.batch_size, work / f"g{r}", True))
        print(json.dumps({k: round(v[-1]) for k, v in results.items()}), flush=True)
    summary = {k: statistics.median(v) for k, v in results.items()}
    machine = f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, {args.threads} threads"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                    "tokens_per_s": results, "median": summary}, indent=1))
    print("| trainer | real train tokens/s (median) |\n|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v:,.0f} |")
    print(f"machine: {machine}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
