"""Record learning-curve tables: real fine-tuning runs of lmtune's trainer, recorded once, replayed by every
search strategy many times (the way LCBench, PD1, YAHPO Gym and Syne Tune's blackbox repository compare HPO
methods). One table = one task x a fixed set of configurations x seeds.

What a run records (one JSON file per configuration and seed, ``<table>/runs/c<NNN>-s<seed>.json``):
validation loss, accuracy and F1 at 8 points per epoch (every ``rows / 8`` training examples: evaluation
units, lmtune's own fidelity), the test metrics at every second point (4 per epoch, including the end),
and per point the optimizer steps, training examples and real (non-padding) train tokens seen, plus the
train and evaluation seconds, so the replay can charge simulated wall time.

How ``epochs`` is recorded: as a dimension of the configuration. The learning-rate schedule decays to zero
at each run's own end, so the first third of a 3-epoch run is not a 1-epoch run; every configuration is
trained at its own length, and a strategy that stops a run early reads the same curve prefix a live
pruned trial would have produced.

The configurations: HF ``TrainingArguments``' lr 5e-5 / batch 32 / 2 epochs / no decay / no warm-up
(lmtune's default, the budget's unit) first, then a scrambled Sobol design over the space users write:
learning rate 1e-6..1e-3 (log), batch size {8, 16, 32}, epochs {1, 2, 3}, weight decay 0..0.1, warm-up
ratio 0..0.2. The design is seeded and extends without changing its first points (``--configs 64``
keeps the first 48).

Resumable: a run whose file exists is skipped; one run at a time (a lock file). Recording order is
configuration-major (c000 s0, c000 s1, c001 s0, ...), so a partial table holds whole seed pairs.

    .venv/bin/python benchmarks/tables/record.py --task rotten_tomatoes          # runs until done
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

ROOT = Path(__file__).parents[2]
TABLES = Path(__file__).parent
MODEL = "builtin:minilm-l6"
DEFAULT = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0}
SPACE = {"learning_rate": (1e-6, 1e-3), "batch_size": (8, 16, 32), "epochs": (1, 2, 3),
         "weight_decay": (0.0, 0.1), "warmup_ratio": (0.0, 0.2)}
EVALS_PER_EPOCH = 8
TEST_EVERY = 2  # evaluations


def configurations(n: int) -> list[dict[str, Any]]:
    """The default, then n - 1 points of a seeded scrambled Sobol design over `SPACE` (prefix-stable)."""
    from scipy.stats import qmc

    points = qmc.Sobol(d=5, scramble=True, seed=20261206).random(64 if n <= 64 else 2 ** math.ceil(math.log2(n)))
    out = [dict(DEFAULT)]
    lo, hi = (math.log10(v) for v in SPACE["learning_rate"])
    for u in points[:n - 1]:
        out.append({"learning_rate": float(f"{10 ** (lo + u[0] * (hi - lo)):.3g}"),
                    "batch_size": SPACE["batch_size"][min(int(u[1] * 3), 2)],
                    "epochs": SPACE["epochs"][min(int(u[2] * 3), 2)],
                    "weight_decay": round(float(u[3]) * 0.1, 4), "warmup_ratio": round(float(u[4]) * 0.2, 4)})
    return out


def record_run(cache: Path, model: str, config: dict[str, Any], seed: int, rows: int) -> dict[str, Any]:
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
        if split == "validation" and timing["n"] % TEST_EVERY == 0:
            t = time.perf_counter()
            metrics.update(original(self, "test"))
            timing["test_s"] += time.perf_counter() - t
        return metrics

    per_unit = math.ceil(rows / EVALS_PER_EPOCH)
    hp = {**TrainingSection().model_dump(), **config, "seed": seed}
    spec = TrialSpec(trial=0, model=model, task_type="classification", data_cache=str(cache), hparams=hp,
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
    ap.add_argument("--configs", type=int, default=48)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (a time slice)")
    ap.add_argument("--estimate", action="store_true")
    args = ap.parse_args()
    import torch

    from lmtune.data.sources import DataSpec
    from lmtune.data.tokenized import build_cache
    from lmtune.training.models import load_tokenizer, resolve_model
    from tables import tasks as tasks_module
    from tables.tasks import SIZES, table_task

    folder = TABLES / args.task
    configs = configurations(args.configs)
    if args.estimate:
        print(estimate(folder, configs, args.seeds))
        return
    torch.set_num_threads(args.threads)
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    lock = (folder / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"{folder} is being recorded by another process")
    work = Path(os.environ.get("LMTUNE_TABLES_WORK", "/tmp/lmtune-tables"))
    task = table_task(args.task, work / "data")
    model = resolve_model(MODEL)
    spec = DataSpec(dataset={s: str(task.folder / f"{s}.csv") for s in SIZES}, dataset_config=None,
                    text_column="text", text_pair_column="text_pair" if task.pair else None, label_column="label",
                    sizes={s: None for s in SIZES}, seed=0)
    cache = build_cache(spec, load_tokenizer(model), model, task.max_length, work / "cache")
    meta = {"task": args.task, "kind": "classification", "model": MODEL, "classes": task.classes,
            "rows": dict(SIZES), "max_length": task.max_length, "evals_per_epoch": EVALS_PER_EPOCH,
            "test_every_evals": TEST_EVERY, "space": SPACE, "default": DEFAULT, "configs": configs,
            "seeds": args.seeds, "data": tasks_module.__doc__,
            "recorded_with": machine(), "recipe": "benchmarks/tables/record.py"}
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
            run = record_run(cache, model, config, seed, SIZES["train"])
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
