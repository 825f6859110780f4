"""Trainer parity: does lmtune's trainer reach the test quality HF ``Trainer`` reaches at the same settings?

The search-replay tables (benchmarks/tables/) are recorded with lmtune's trainer and the HF peer is
replayed on them, so the replay is faithful only if lmtune trains as well as HF does. Per task and seed
``s``: lmtune's split code draws train / validation / test rows with seed ``s`` (Rotten Tomatoes; the
recorded tables' tasks keep their fixed split and vary the training seed only), both trainers see the same
token ids (lmtune's cache) and train MiniLM-L6 (full fine-tune) at the default settings a user starts from
(lr 5e-5, batch 32, 2 epochs, no decay, no warm-up, linear schedule, AdamW, max_grad_norm 1.0, dropout
0.1) with training seed ``s``; one function (lmtune's ``evaluate``) scores both trained models on the test
rows. Arms:

* ``hf``: HF ``Trainer`` as its users run it (random sampler; ``set_seed(s)`` before the model loads, as
  HF's example scripts do);
* ``lmtune``: lmtune's trainer with its defaults (random batch order since this benchmark; the CPU fast
  forwards on);
* ``lmtune_grouped``: ``training.group_by_length: true`` (batches sorted by length within windows — the
  default before this benchmark);
* ``lmtune_stock``: the default with ``LMTUNE_FAST_CPU=0`` (the model's own forward and torch's dropout).

Paired by seed; the arms of a seed run in an order rotated by the seed. One JSON line per run is
appended to ``--out`` (a rerun skips the runs already there), ``--summary`` prints the paired table.

    .venv/bin/python benchmarks/parity.py --tasks rotten_tomatoes convention_party --seeds 0-9 --arms hf lmtune
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_meta, load_split
from lmtune.protocol import Continue, TrialSpec
from lmtune.training.evaluate import evaluate
from lmtune.training.models import load_tokenizer, resolve_model

ARMS = ("hf", "lmtune", "lmtune_grouped", "lmtune_stock")
SETTINGS = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0}
MODEL = "builtin:minilm-l6"


def data_spec(task: str, seed: int, sizes: dict[str, int], work: Path) -> DataSpec:
    """Rotten Tomatoes: rows drawn by lmtune's split code with the seed. The recorded tables' other tasks: their
    fixed split (benchmarks/tables/tasks.py), the same rows for every seed (only the training seed varies)."""
    if task == "rotten_tomatoes":
        return DataSpec(dataset="builtin:rotten_tomatoes", dataset_config=None, text_column="text",
                        text_pair_column=None, label_column="label", sizes=dict(sizes), seed=seed)
    from tables.tasks import table_task

    t = table_task(task, work / "data")
    return DataSpec(dataset={s: str(t.folder / f"{s}.csv") for s in ("train", "validation", "test")},
                    dataset_config=None, text_column="text", text_pair_column="text_pair" if t.pair else None,
                    label_column="label", sizes={s: None for s in ("train", "validation", "test")}, seed=0)


def lmtune_run(cache: Path, model: str, seed: int, out: Path, arm: str) -> dict[str, Any]:
    from lmtune.training.fastpath import FAST_CPU
    from lmtune.training.loop import train

    rows = int(load_meta(cache)["splits"]["train"]["rows"])
    hp = {**TrainingSection().model_dump(), **SETTINGS, "seed": seed, "group_by_length": arm == "lmtune_grouped"}
    spec = TrialSpec(trial=0, model=model, task_type="classification", data_cache=str(cache), hparams=hp,
                     examples_per_unit=rows, total_examples=rows * int(SETTINGS["epochs"]), output_dir=str(out),
                     interactive=False, evaluate_test=True)
    os.environ[FAST_CPU] = "0" if arm == "lmtune_stock" else "1"
    try:
        t0 = time.perf_counter()
        result = train(spec, lambda e: None, Continue)
    finally:
        os.environ.pop(FAST_CPU, None)
    return {"test_accuracy": float(result["test_metrics"]["test_accuracy"]),
            "test_loss": float(result["test_metrics"]["test_loss"]), "train_s": float(result["train_time_s"]),
            "wall_s": time.perf_counter() - t0, "train_tokens": int(result["train_tokens"])}


def hf_run(cache: Path, model: str, seed: int, out: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    meta = load_meta(cache)
    split = load_split(cache, "train")
    assert split.labels is not None
    rows = range(len(split))
    cols: dict[str, list[Any]] = {"input_ids": [split.row(i).tolist() for i in rows], "labels": split.labels.tolist()}
    tok = load_tokenizer(model)
    set_seed(seed)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=int(meta["num_labels"]),
                                                             dtype=torch.float32)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=int(SETTINGS["batch_size"]),
                             num_train_epochs=SETTINGS["epochs"], learning_rate=SETTINGS["learning_rate"],
                             weight_decay=SETTINGS["weight_decay"], warmup_steps=0, lr_scheduler_type="linear",
                             save_strategy="no", eval_strategy="no", report_to=[], logging_strategy="no",
                             use_cpu=True, seed=seed, data_seed=seed, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=net, args=args, train_dataset=Dataset.from_dict(cols),
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    trained = trainer.model
    assert trained is not None
    trained.eval()
    score = evaluate(trained, load_split(cache, "test"), task_type="classification",
                     num_labels=int(meta["num_labels"]), batch_size=128, pad_id=int(tok.pad_token_id or 0),
                     device=torch.device("cpu"), autocast=contextlib.nullcontext(), prefix="test")
    return {"test_accuracy": float(score["test_accuracy"]), "test_loss": float(score["test_loss"]),
            "train_s": train_s, "wall_s": train_s}


def seeds_of(text: list[str]) -> list[int]:
    out: list[int] = []
    for part in text:
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def done_runs(path: Path) -> set[tuple[str, int, str]]:
    if not path.exists():
        return set()
    return {(r["task"], r["seed"], r["arm"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def paired(runs: list[dict[str, Any]], task: str, arm: str, ref: str = "hf") -> dict[str, Any] | None:
    """lmtune arm − HF over the seeds both ran: mean, 95 % t interval (scipy), wins."""
    from scipy import stats

    by = {(r["seed"], r["arm"]): r["test_accuracy"] for r in runs if r["task"] == task}
    seeds = sorted(s for s, a in by if a == arm and (s, ref) in by)
    if len(seeds) < 2:
        return None
    d = [by[(s, arm)] - by[(s, ref)] for s in seeds]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
    return {"seeds": len(seeds), "hf_mean": statistics.mean(by[(s, ref)] for s in seeds),
            "lmtune_mean": statistics.mean(by[(s, arm)] for s in seeds), "diff_mean": mean,
            "diff_ci95": [mean - half, mean + half], "wins": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d),
            "p_t": float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else 1.0}


def summary(path: Path) -> dict[str, Any]:
    runs = [json.loads(line) for line in path.read_text().splitlines() if line]
    out: dict[str, Any] = {}
    for task in sorted({r["task"] for r in runs}):
        out[task] = {}
        for arm in ARMS[1:]:
            p = paired(runs, task, arm)
            if p:
                out[task][arm] = p
        out[task]["means"] = {arm: {"n": len(v), "mean": statistics.mean(v),
                                    "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                                    "train_s": statistics.median(r["train_s"] for r in runs
                                                                 if r["task"] == task and r["arm"] == arm)}
                              for arm in ARMS
                              if (v := [r["test_accuracy"] for r in runs if r["task"] == task and r["arm"] == arm])}
    return out


def write_bench_parity(result: dict[str, Any], path: Path) -> None:
    """The summary's ``parity`` entry as ../shared/checks/bench reads it: per task with >= 10 paired seeds of
    the default lmtune arm, the seeds, both means and the 95 % interval of lmtune - HF."""
    bench = json.loads(path.read_text()) if path.exists() else {}
    bench["parity"] = {task: {"seeds": v["lmtune"]["seeds"], "hf_mean": v["means"]["hf"]["mean"],
                              "lmtune_mean": v["means"]["lmtune"]["mean"], "diff_ci95": v["lmtune"]["diff_ci95"]}
                       for task, v in result.items() if v.get("lmtune") and v["lmtune"]["seeds"] >= 10}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "convention_party"])
    ap.add_argument("--seeds", nargs="+", default=["0-9"])
    ap.add_argument("--arms", nargs="+", default=["hf", "lmtune"], choices=ARMS)
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--validation", type=int, default=500)
    ap.add_argument("--test", type=int, default=1500)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/parity/runs.jsonl"))
    ap.add_argument("--summary", action="store_true", help="print the paired summary of --out and exit")
    ap.add_argument("--bench-summary", type=Path, default=None,
                    help="also write the parity entry (tasks with >= 10 paired seeds) into this search-replay "
                         "summary.json (docs/benchmarks/search-replay/summary.json), keeping its other keys")
    args = ap.parse_args()
    if args.summary:
        result = summary(args.out)
        print(json.dumps(result, indent=1))
        if args.bench_summary is not None:
            write_bench_parity(result, args.bench_summary)
        return
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_runs(args.out)
    work = Path(os.environ.get("LMTUNE_TABLES_WORK", "/tmp/lmtune-tables"))
    model = resolve_model(MODEL)
    sizes = {"train": args.train, "validation": args.validation, "test": args.test}
    machine = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, {args.threads} threads"
    for task in args.tasks:
        for seed in seeds_of(args.seeds):
            cache = build_cache(data_spec(task, seed, sizes, work), load_tokenizer(model), model, args.max_length,
                                work / "cache")
            k = seed % len(args.arms)
            for arm in args.arms[k:] + args.arms[:k]:
                if (task, seed, arm) in done:
                    continue
                load = os.getloadavg()[0]
                out = Path(tempfile.mkdtemp(prefix=f"parity-{task}-{seed}-{arm}-"))
                r = hf_run(cache, model, seed, out) if arm == "hf" else lmtune_run(cache, model, seed, out, arm)
                row = {"task": task, "seed": seed, "arm": arm, **r, "load_before": round(load, 2),
                       "machine": machine, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
                       "settings": SETTINGS, "sizes": sizes, "max_length": args.max_length}
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: row[k] for k in ("task", "seed", "arm", "test_accuracy", "train_s")}), flush=True)


if __name__ == "__main__":
    main()
