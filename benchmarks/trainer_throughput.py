"""Trainer speed: lmtune's trainer vs HF `Trainer` on the same model, data, batch and seeds.

Two tasks, each trained for one pass over the same tokenized rows (lmtune's cache, so both see the same
token ids), fp32 master weights, AdamW at the same rate, the same thread count, one process:

* ``classification``: MiniLM-L6 (builtin) full fine-tune on Rotten Tomatoes sentences, batch 32,
  ``max_length`` 64;
* ``causal_lm``: LoRA (r 8, alpha 16, dropout 0.05, q/k/v/o) on SmolLM2-135M-Instruct over chatterbot
  dialogs, loss on the assistant tokens only, batch 8, ``max_length`` 96.

Arms (``--arms``): ``lmtune`` (its defaults: length-grouped batches, fused AdamW, fp32, and on a CPU the
fast forwards of `lmtune.training.fastpath`), ``lmtune_stock`` (the same trainer with ``LMTUNE_FAST_CPU=0``:
the model's own forward and torch's dropout, to show what the fast forwards change) and HF
`Trainer` as its users run it: ``hf_trainer`` (random sampler, dynamic padding), ``hf_trainer_group_by_length``
and HF's fastest documented options on top of it: ``hf_trainer_group_by_length_compile``
(``torch_compile=True``; its compile time is inside the timed training, as it is inside a trial) and
``hf_trainer_group_by_length_bf16`` (bf16 autocast; on a CPU without AMX it is emulated, ~10x slower
than fp32, and runs in the first repeat only). HF's attention
is SDPA already (transformers 5's default for both models), and its default optimizer is the fused AdamW.

Repeat ``r`` uses seed ``r`` for every arm and runs the arms in an order rotated by ``r`` (paired, so drift
on the machine hits every arm alike). Reported per arm: real (non-padding) train tokens per second of the
training loop alone (model load and tokenization excluded), median over repeats; and the quality after the
same training, scored by the same function for every arm (lmtune's `evaluate` on the validation rows:
accuracy, or the assistant-token loss), mean ± sd over the seeds.

    .venv/bin/python benchmarks/trainer_throughput.py --repeats 3

Writes ``docs/benchmarks/trainer_throughput.json`` (``median`` = the classification medians, which
``../shared/checks/speed`` reads; ``tasks`` = everything).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_meta, load_split
from lmtune.protocol import TrialSpec
from lmtune.training.evaluate import evaluate
from lmtune.training.models import load_tokenizer, resolve_model
from lmtune.training.session import cpu_has_amx

HF_ARMS = ("hf_trainer", "hf_trainer_group_by_length", "hf_trainer_group_by_length_compile",
           "hf_trainer_group_by_length_bf16")
ARMS = ("lmtune", "lmtune_stock", *HF_ARMS)


@dataclass(frozen=True)
class Task:
    name: str
    model: str
    data: DataSpec
    rows: int
    batch_size: int
    max_length: int
    learning_rate: float
    lora: bool
    passes: int = 1

    @property
    def metric(self) -> str:
        return "eval_accuracy" if self.name == "classification" else "eval_loss"


def make_tasks(args: argparse.Namespace) -> dict[str, Task]:
    return {
        "classification": Task(
            "classification", "builtin:minilm-l6",
            DataSpec(dataset="builtin:rotten_tomatoes", dataset_config=None, text_column="text",
                     text_pair_column=None, label_column="label",
                     sizes={"train": args.rows, "validation": args.validation_rows, "test": 64}, seed=0),
            args.rows, 32, 64, args.cls_lr, lora=False, passes=args.passes),
        "causal_lm": Task(
            "causal_lm", "builtin:smollm2-135m",
            DataSpec(dataset="builtin:chatterbot", dataset_config=None, text_column="text", text_pair_column=None,
                     label_column=None, sizes={"train": args.lm_rows, "validation": 32, "test": 8}, seed=0,
                     task="causal_lm", messages_column="messages", assistant_only=True),
            args.lm_rows, 8, 96, 1e-3, lora=True, passes=args.passes),
    }


def lmtune_run(task: Task, model: str, cache: Path, seed: int, out: Path, stock: bool = False) -> tuple[float, float]:
    from lmtune.config import TrainingSection
    from lmtune.protocol import Continue
    from lmtune.training.fastpath import FAST_CPU
    from lmtune.training.loop import train

    hp = {**TrainingSection().model_dump(), "batch_size": task.batch_size, "learning_rate": task.learning_rate,
          "dropout": None,  # the model's own, as HF keeps it
          "seed": seed, "lora_enabled": task.lora, "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]
          if task.lora else None}
    spec = TrialSpec(trial=0, model=model, task_type=task.name, data_cache=str(cache), hparams=hp,
                     examples_per_unit=task.rows, total_examples=task.rows * task.passes, output_dir=str(out),
                     interactive=False)
    os.environ[FAST_CPU] = "0" if stock else "1"
    try:
        result = train(spec, lambda e: None, Continue)
    finally:
        os.environ.pop(FAST_CPU, None)
    return float(result["train_tokens"] / result["train_time_s"]), float(result["metrics"][task.metric])


def hf_run(task: Task, model: str, cache: Path, seed: int, out: Path, arm: str) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        DataCollatorForSeq2Seq,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    split = load_split(cache, "train")
    rows = range(task.rows)
    tok = load_tokenizer(model)
    torch.manual_seed(seed)
    if task.name == "classification":
        data = Dataset.from_dict({"input_ids": [split.row(i).tolist() for i in rows],
                                  "labels": split.labels[:task.rows].tolist() if split.labels is not None else []})
        net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, dtype=torch.float32)
        collator: Any = DataCollatorWithPadding(tok)
    else:
        from peft import LoraConfig, get_peft_model

        data = Dataset.from_dict({"input_ids": [split.row(i).tolist() for i in rows],
                                  "labels": [split.row_labels(i).tolist() for i in rows]})
        net = get_peft_model(AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
                             LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        collator = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100)
    real_tokens = int(split.lengths()[:task.rows].sum()) * task.passes
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=task.batch_size,
                             num_train_epochs=task.passes,
                             learning_rate=task.learning_rate, save_strategy="no", eval_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=True, seed=seed, data_seed=seed,
                             train_sampling_strategy="random" if arm == "hf_trainer" else "group_by_length",
                             torch_compile=arm.endswith("_compile"), bf16=arm.endswith("_bf16"),
                             dataloader_num_workers=0, disable_tqdm=True)

    class Clock(TrainerCallback):
        t0 = 0.0
        t1 = 0.0

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            Clock.t0 = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            Clock.t1 = time.perf_counter()

    trainer = Trainer(model=net, args=args, train_dataset=data, data_collator=collator, callbacks=[Clock()])
    trainer.train()
    trained = trainer.model
    assert trained is not None
    trained.eval()
    meta = load_meta(cache)
    score = evaluate(trained, load_split(cache, "validation"), task_type=task.name,
                     num_labels=int(meta["num_labels"]), batch_size=64, pad_id=int(tok.pad_token_id or 0),
                     device=torch.device("cpu"), autocast=contextlib.nullcontext(), prefix="eval")
    return real_tokens / (Clock.t1 - Clock.t0), float(score[task.metric])


def run_task(task: Task, arms: list[str], repeats: int, work: Path, first_seed: int = 0) -> dict[str, Any]:
    model = resolve_model(task.model)
    cache = build_cache(task.data, load_tokenizer(model), model, task.max_length, work / f"cache-{task.name}")
    speed: dict[str, list[float]] = {a: [] for a in arms}
    quality: dict[str, list[float]] = {a: [] for a in arms}
    failed: dict[str, str] = {}
    for r in range(repeats):
        order = arms[r % len(arms):] + arms[:r % len(arms)]
        for arm in order:
            if arm in failed:
                continue
            if arm.endswith("_bf16") and r > 0 and not cpu_has_amx():  # emulated: ~10x slower, once shows it
                continue
            out = work / f"{task.name}-{arm}-{r}"
            try:
                seed = first_seed + r
                tps, score = (lmtune_run(task, model, cache, seed, out, stock=arm == "lmtune_stock")
                              if arm.startswith("lmtune")
                              else hf_run(task, model, cache, seed, out, arm))
            except Exception as exc:  # an HF option that does not run here is reported, not fatal
                failed[arm] = f"{type(exc).__name__}: {str(exc)[:300]}"
                traceback.print_exc()
                continue
            speed[arm].append(tps)
            quality[arm].append(score)
            print(json.dumps({"task": task.name, "repeat": r, "seed": first_seed + r, "arm": arm,
                              "tokens_per_s": round(tps),
                              task.metric: round(score, 4)}), flush=True)
    kept = [a for a in arms if speed[a]]
    return {"metric": task.metric, "rows": task.rows, "batch_size": task.batch_size, "max_length": task.max_length,
            "tokens_per_s": {a: speed[a] for a in kept}, "quality": {a: quality[a] for a in kept},
            "median": {a: statistics.median(speed[a]) for a in kept}, "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["classification", "causal_lm"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--lm-arms", nargs="+", default=[a for a in ARMS if not a.endswith("_bf16")], choices=list(ARMS),
                    help="arms of the causal-LM task (bf16 left out by default: hours on a CPU without AMX)")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--validation-rows", type=int, default=500)
    ap.add_argument("--lm-rows", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--passes", type=int, default=1, help="passes over the training rows (both tasks, every arm)")
    ap.add_argument("--cls-lr", type=float, default=5e-5,
                    help="classification learning rate (one pass at 5e-5 leaves MiniLM at the majority class)")
    ap.add_argument("--first-seed", type=int, default=0, help="repeat r trains with seed first_seed + r")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/trainer_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="lmtune-bench-"))
    tasks = make_tasks(args)
    load = os.getloadavg()[0]
    results = {name: run_task(tasks[name], list(args.arms if name == "classification" else args.lm_arms),
                              args.repeats, work, args.first_seed) for name in args.tasks}
    machine = f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, {args.threads} threads"
    report = {"machine": machine, "torch": torch.__version__, "load_average_before": load,
              "date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()},
              "median": results.get("classification", {}).get("median", {}), "tasks": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(results))
    print(f"machine: {machine}; load average before: {load:.2f}")


def table(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results.items():
        med = res["median"]
        best_hf = max((a for a in med if a.startswith("hf")), key=med.get, default=None)
        lines += [f"\n{name} ({res['metric']} on validation, mean ± sd over seeds)",
                  "| trainer | real train tokens/s (median) | × fastest HF | quality |", "|---|---|---|---|"]
        for arm, tps in med.items():
            q = res["quality"][arm]
            sd = statistics.stdev(q) if len(q) > 1 else 0.0
            ratio = f"{tps / med[best_hf]:.2f}" if best_hf else "–"
            lines.append(f"| {arm} | {tps:,.0f} | {ratio} | {statistics.mean(q):.4f} ± {sd:.4f} |")
        for arm, why in res["failed"].items():
            lines.append(f"| {arm} | did not run: {why} | | |")
    return "\n".join(lines)


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
