"""Record learning-curve tables: real fine-tuning runs of lmtune's trainer, recorded once, replayed by every
search strategy many times (the way LCBench, PD1, YAHPO Gym and Syne Tune's blackbox repository compare HPO
methods). One table = one task x a fixed set of configurations x seeds.

What a run records (one JSON file per configuration and seed, ``<table>/runs/c<NNN>-s<seed>.json``):
the validation metrics at 8 points per epoch (every ``rows / 8`` training examples: evaluation units,
lmtune's own fidelity; 4 for the LoRA table), the test metrics at every second point (and at the end),
and per point the optimizer steps, training examples and real (non-padding) train tokens seen, plus the
train and evaluation seconds, so the replay can charge simulated wall time.

How ``epochs`` is recorded: as a dimension of the configuration. The learning-rate schedule decays to zero
at each run's own end, so the first third of a 3-epoch run is not a 1-epoch run; every configuration is
trained at its own length, and a strategy that stops a run early reads the same curve prefix a live
pruned trial would have produced.

The configurations (`TableSpec`): the default first (the budget's unit), then a scrambled Sobol design over
the space users write. Classification (MiniLM-L6 full fine-tune, 48 configurations): lr 5e-5 / batch 32 /
2 epochs / no decay / no warm-up (HF ``TrainingArguments``' and lmtune's default), then learning rate
1e-6..1e-3 (log), batch size {8, 16, 32}, epochs {1, 2, 3}, weight decay 0..0.1, warm-up ratio 0..0.2.
``chat_lora`` (SmolLM2-135M LoRA SFT on chatterbot dialogs, 32 configurations, 4 evaluations per epoch):
lr 1e-4 / batch 8 / 2 epochs / r 8 / alpha 16 first, then lr 1e-5..3e-3, batch {4, 8, 16}, epochs
{1, 2, 3}, weight decay, warm-up, r {4, 8, 16, 32}, alpha {8, 16, 32, 64}. The design is seeded and
extends without changing its first points (``--configs 64`` keeps the first 48).

Resumable: a run whose file exists is skipped; one run at a time (a lock file). Recording order is
configuration-major (c000 s0, c000 s1, c001 s0, ...), so a partial table holds whole seed pairs.

    .venv/bin/python benchmarks/tables/record.py --task rotten_tomatoes          # runs until done
    .venv/bin/python benchmarks/tables/record.py --task chat_lora                # the causal-LM LoRA table
    .venv/bin/python benchmarks/tables/record.py --task rotten_tomatoes --estimate  # hours, from runs so far
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

ROOT = Path(__file__).parents[2]
TABLES = Path(__file__).parent
# a dimension: ("log", low, high) | ("float", low, high) | ("choice", value, value, ...)
Space = dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class TableSpec:
    """What one table records: the model, its task kind, the space, the default, how often it evaluates."""

    model: str
    kind: str  # classification | causal_lm
    space: Space
    default: dict[str, Any]
    configs: int
    evals_per_epoch: int
    test_every: int  # evaluations
    metric: str
    direction: str
    fixed: dict[str, Any] = field(default_factory=dict)  # training settings every run of the table shares


CLASSIFICATION = TableSpec(
    model="builtin:minilm-l6", kind="classification",
    space={"learning_rate": ("log", 1e-6, 1e-3), "batch_size": ("choice", 8, 16, 32), "epochs": ("choice", 1, 2, 3),
           "weight_decay": ("float", 0.0, 0.1), "warmup_ratio": ("float", 0.0, 0.2)},
    default={"learning_rate": 5e-5, "batch_size": 32, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0},
    configs=48, evals_per_epoch=8, test_every=2, metric="eval_accuracy", direction="maximize")
# LoRA SFT of SmolLM2-135M on chatterbot dialogs (loss on the assistant's replies), sized for this CPU: 512
# train / 128 validation / 256 test dialogs of at most 128 tokens; LoRA's rates sit about 10x above full
# fine-tuning's (the lora-sft preset's sources), ranks 4-32 with alpha 8-64.
CHAT_LORA = TableSpec(
    model="builtin:smollm2-135m", kind="causal_lm",
    space={"learning_rate": ("log", 1e-5, 3e-3), "batch_size": ("choice", 4, 8, 16), "epochs": ("choice", 1, 2, 3),
           "weight_decay": ("float", 0.0, 0.1), "warmup_ratio": ("float", 0.0, 0.2),
           "lora_r": ("choice", 4, 8, 16, 32), "lora_alpha": ("choice", 8, 16, 32, 64)},
    default={"learning_rate": 1e-4, "batch_size": 8, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0,
             "lora_r": 8, "lora_alpha": 16},
    configs=32, evals_per_epoch=4, test_every=2, metric="eval_loss", direction="minimize",
    fixed={"lora_enabled": True, "lora_dropout": 0.05, "dropout": None, "eval_batch_size": 16})
CHAT_ROWS = {"train": 512, "validation": 128, "test": 256}


def spec_of(task: str) -> TableSpec:
    return CHAT_LORA if task == "chat_lora" else CLASSIFICATION


# The Sobol design's seed. The first three classification tables share one design (20261206), so a strategy
# whose first configuration is fixed (Syne Tune's mid-point of the space, auto's default settings) meets the
# same recorded configuration on all three, and its luck there counts three times (docs/benchmarks/
# search-replay.md, MOBSTER). Tables recorded since have their own design.
DESIGN_SEEDS = {"stsb_pair": 20261207}
DESIGN_SEED = 20261206


def configurations(n: int, spec: TableSpec = CLASSIFICATION, *, seed: int = DESIGN_SEED) -> list[dict[str, Any]]:
    """The default, then n - 1 points of a seeded scrambled Sobol design over the spec's space (prefix-stable:
    a longer design keeps the points of a shorter one)."""
    from scipy.stats import qmc

    dims = list(spec.space.items())
    points = qmc.Sobol(d=len(dims), scramble=True, seed=seed).random(max(64, 2 ** math.ceil(math.log2(n))))
    out = [dict(spec.default)]
    for u in points[:n - 1]:
        config: dict[str, Any] = {}
        for x, (name, (kind, *v)) in zip(u, dims, strict=True):
            if kind == "log":
                lo, hi = math.log10(v[0]), math.log10(v[1])
                config[name] = float(f"{10 ** (lo + x * (hi - lo)):.3g}")
            elif kind == "choice":
                config[name] = v[min(int(x * len(v)), len(v) - 1)]
            else:
                config[name] = round(float(v[0] + x * (v[1] - v[0])), 4)
        out.append(config)
    return out


def record_run(cache: Path, model: str, config: dict[str, Any], seed: int, rows: int,
               spec_: TableSpec = CLASSIFICATION) -> dict[str, Any]:
    """Train one configuration with lmtune's trainer; the curve of every evaluation, test every second."""
    from lmtune.config import TrainingSection
    from lmtune.protocol import Continue, TrialSpec
    from lmtune.training import session as session_module
    from lmtune.training.loop import train

    evals: list[dict[str, Any]] = []
    timing = {"validation_s": 0.0, "test_s": 0.0, "n": 0}
    original = session_module.Session.evaluate

    def evaluate(self: Any, split: str = "validation") -> dict[str, float]:
        t = time.perf_counter()
        metrics = original(self, split)
        timing["validation_s"] += time.perf_counter() - t
        timing["n"] += 1
        if split == "validation" and timing["n"] % spec_.test_every == 0:
            t = time.perf_counter()
            metrics.update(original(self, "test"))
            timing["test_s"] += time.perf_counter() - t
        return metrics

    per_unit = math.ceil(rows / spec_.evals_per_epoch)
    hp = {**TrainingSection().model_dump(), **spec_.fixed, **config, "seed": seed}
    spec = TrialSpec(trial=0, model=model, task_type=spec_.kind, data_cache=str(cache), hparams=hp,
                     examples_per_unit=per_unit, total_examples=rows * int(config["epochs"]),
                     output_dir=str(cache.parent / "out"), interactive=False)

    def emit(event: dict[str, Any]) -> None:
        if event.get("event") == "eval":
            evals.append({"units": event["units"], "step": event["step"], "examples": event["examples"],
                          "tokens": event["tokens"], "elapsed_s": round(event["elapsed_s"], 3),
                          **{k: round(float(v), 6) for k, v in event["metrics"].items()}})

    session_module.Session.evaluate = evaluate  # type: ignore[method-assign]
    try:
        result = train(spec, emit, Continue)
    except Exception as exc:  # a diverged run is a point of the table too (its curve up to the failure)
        result = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        session_module.Session.evaluate = original  # type: ignore[method-assign]
    return {"config": config, "seed": seed, "examples_per_unit": per_unit, "points": evals,
            "train_tokens": result.get("train_tokens"), "train_s": result.get("train_time_s"),
            "eval_s": result.get("eval_time_s"), "validation_eval_s": timing["validation_s"],
            "test_eval_s": timing["test_s"], "error": result.get("error"), "forward": result.get("forward")}


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = ""
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    return {"hardware": f"{platform.machine()} {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
                        "no GPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
            "torch": torch.__version__, "transformers": transformers.__version__, "lmtune_commit": commit.strip(),
            "python": platform.python_version()}


def prepare(task_name: str, spec_: TableSpec, work: Path) -> tuple[Path, dict[str, Any]]:
    """The task's data tokenized once (lmtune's cache) and the table's meta (what was recorded, and how)."""
    from lmtune.data.sources import DataSpec
    from lmtune.data.tokenized import build_cache
    from lmtune.training.models import load_tokenizer, resolve_model
    from tables import tasks as tasks_module
    from tables.tasks import SIZES, table_task

    model = resolve_model(spec_.model)
    common = {"kind": spec_.kind, "model": spec_.model, "model_folder": model, "space": spec_.space,
              "default": spec_.default, "fixed": spec_.fixed, "evals_per_epoch": spec_.evals_per_epoch,
              "test_every_evals": spec_.test_every, "metric": spec_.metric, "direction": spec_.direction}
    if spec_.kind == "causal_lm":
        data = DataSpec(dataset="builtin:chatterbot", dataset_config=None, text_column="text", text_pair_column=None,
                        label_column=None, sizes=dict(CHAT_ROWS), seed=0, task="causal_lm",
                        messages_column="messages", assistant_only=True)
        cache = build_cache(data, load_tokenizer(model), model, 128, work / "cache")
        return cache, {"task": task_name, **common, "rows": dict(CHAT_ROWS), "max_length": 128,
                       "data": "chatterbot-corpus==1.3.3 dialogs (builtin:chatterbot), lmtune's split with seed 0; "
                               "loss on the assistant's replies"}
    task = table_task(task_name, work / "data")
    data = DataSpec(dataset={s: str(task.folder / f"{s}.csv") for s in SIZES}, dataset_config=None,
                    text_column="text", text_pair_column="text_pair" if task.pair else None, label_column="label",
                    sizes={s: None for s in SIZES}, seed=0)
    cache = build_cache(data, load_tokenizer(model), model, task.max_length, work / "cache")
    return cache, {"task": task_name, **common, "classes": task.classes, "rows": dict(SIZES),
                   "max_length": task.max_length, "data": tasks_module.__doc__}


def estimate(folder: Path, configs: list[dict[str, Any]], seeds: list[int]) -> str:
    runs = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("c*.json"))]
    if not runs:
        return "no runs yet"
    per_epoch = sum(r["wall_s"] for r in runs) / sum(r["config"]["epochs"] for r in runs)
    left = sum(c["epochs"] for i, c in enumerate(configs) for s in seeds
               if not (folder / "runs" / f"c{i:03d}-s{s}.json").exists())
    return (f"{len(runs)} runs done, {per_epoch:.0f} s per epoch of a run (evaluations included); "
            f"{left} epochs left: about {left * per_epoch / 3600:.1f} h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--configs", type=int, default=None, help="default: the table's own (48; 32 for chat_lora)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (a time slice)")
    ap.add_argument("--estimate", action="store_true")
    args = ap.parse_args()
    spec_ = spec_of(args.task)
    folder = TABLES / args.task
    configs = configurations(args.configs or spec_.configs, spec_, seed=DESIGN_SEEDS.get(args.task, DESIGN_SEED))
    if args.estimate:
        print(estimate(folder, configs, args.seeds))
        return
    import torch

    torch.set_num_threads(args.threads)
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    lock = (folder / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"{folder} is being recorded by another process")
    work = Path(os.environ.get("LMTUNE_TABLES_WORK", "/tmp/lmtune-tables"))
    cache, meta = prepare(args.task, spec_, work)
    meta.update(configs=configs, seeds=args.seeds, recorded_with=machine(), recipe="benchmarks/tables/record.py")
    model = meta.pop("model_folder")  # this machine's path: not part of the table
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    done = 0
    for i, config in enumerate(configs):
        for seed in args.seeds:
            out = folder / "runs" / f"c{i:03d}-s{seed}.json"
            if out.exists():
                continue
            if args.max_runs is not None and done >= args.max_runs:
                return
            load, t0 = os.getloadavg()[0], time.perf_counter()
            run = record_run(cache, model, config, seed, int(meta["rows"]["train"]), spec_)
            run.update(wall_s=round(time.perf_counter() - t0, 2), load_before=round(load, 2),
                       load_after=round(os.getloadavg()[0], 2), date=time.strftime("%Y-%m-%d %H:%M"),
                       hardware=meta["recorded_with"]["hardware"])
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(run, separators=(",", ":")))
            tmp.replace(out)
            done += 1
            print(f"{args.task} c{i:03d} s{seed} {config} -> {run['points'][-1] if run['points'] else run['error']} "
                  f"({run['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
