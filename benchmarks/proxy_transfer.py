"""Proxy search + transfer vs target-only search, at equal target compute.

On a built-in task, for each seed:

* target-only: a study of ``T`` trials on the target (the default settings + ``T-1`` searched);
* proxy + transfer: ``P`` trials on the target cut to its first k blocks, then the proxy's top ``T-1``
  configurations + the default settings on the target (``T`` target trials again).

``--task classification``: MiniLM-L6 (6 blocks) fine-tuned on Rotten Tomatoes sentences, proxy = 2 blocks.
``--task causal_lm``: LoRA SFT of SmolLM2-135M-Instruct (30 blocks) on chatterbot dialogs, proxy = 8 blocks.

Both arms run through lmtune's own Tuner / TwoStageTuner (trainer subprocesses, Optuna storage), so the
wall times include process start and model load. Prints a Markdown table (and writes it with ``--out``).

    .venv/bin/python benchmarks/proxy_transfer.py --task causal_lm --seeds 0 1 2 --out /tmp/proxy-lm.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from lmtune.config import StudyConfig, load_config
from lmtune.report.series import transfer_summary
from lmtune.tuner import Tuner
from lmtune.tuner.progress import PlainReporter
from lmtune.tuner.proxy import TwoStageTuner

ROOT = Path(__file__).parents[1]


# lr, batch size, weight decay and warm-up: the settings that matter for a short fine-tune (no SGD, which
# mostly fails in so few steps and would make the comparison a coin toss over optimizers).
# Per task: example config, search space, defaults of the sizes, proxy depth, and the model's description.
# Classification: lr, batch size, weight decay and warm-up, the settings that matter for a short fine-tune
# (no SGD, which mostly fails in so few steps and would make the comparison a coin toss over optimizers).
# Causal LM: the LoRA settings and the learning rate.
TASKS: dict[str, dict[str, Any]] = {
    "classification": {
        "example": "quickstart.yaml", "blocks": 6, "truncate": 2, "train_size": 480, "validation_size": 200,
        "max_length": 48, "max_steps": 30, "batch_size": 16,
        "describe": "MiniLM-L6 (builtin:minilm-l6) full fine-tune on builtin:rotten_tomatoes",
        "space": ("{learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}, batch_size: [8, 16, 32], "
                  "weight_decay: {type: float, low: 0.0, high: 0.1}, "
                  "warmup_ratio: {type: float, low: 0.0, high: 0.2}}"),
    },
    "causal_lm": {
        "example": "lora-sft.yaml", "blocks": 30, "truncate": 8, "train_size": 64, "validation_size": 32,
        "max_length": 96, "max_steps": 8, "batch_size": 8,
        "describe": "LoRA SFT of SmolLM2-135M-Instruct (builtin:smollm2-135m) on builtin:chatterbot, "
                    "assistant tokens only",
        "space": ("{learning_rate: {type: float, low: 1.0e-5, high: 3.0e-3, log: true}, lora_r: [4, 8, 16], "
                  "lora_alpha: [8, 16, 32], lora_dropout: {type: float, low: 0.0, high: 0.1}}"),
    },
}


def base_overrides(args: argparse.Namespace, study_dir: Path, seed: int) -> list[str]:
    minimize = args.metric.endswith("loss")
    task = TASKS[args.task]
    return [f"study.dir={study_dir}", f"study.seed={seed}", "study.name=bench", f"study.metric={args.metric}",
            f"study.direction={'minimize' if minimize else 'maximize'}",
            f"task.train_size={args.train_size}", f"task.validation_size={args.validation_size}",
            "task.test_size=64", f"task.max_length={args.max_length}",
            f"training.batch_size={task['batch_size']}", f"training.max_steps={args.max_steps}",
            f"training.eval_every={args.max_steps}", "search.strategy=bayes", "search.n_startup_trials=4",
            f"search.space={task['space']}"]


def _best(study: optuna.Study) -> tuple[float, float]:
    """The best trial's value and its validation accuracy (classification) or perplexity (causal LM)."""
    t = study.best_trial
    metrics = (t.user_attrs.get("curve") or [{}])[-1].get("metrics", {})
    return float(t.value or math.nan), float(metrics.get("eval_accuracy", metrics.get("eval_perplexity", math.nan)))


def _wall(trials: list[optuna.trial.FrozenTrial]) -> float:
    return sum(float(t.user_attrs.get("wall_time_s", 0.0)) for t in trials)


def _tokens(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(int(t.user_attrs.get("train_tokens", 0)) for t in trials)


def target_only(cfg: StudyConfig, n_target: int) -> dict[str, Any]:
    t0 = time.monotonic()
    run = Tuner(cfg, n_trials=n_target, reporter=PlainReporter()).run()
    if run.stop_reason != "n_trials reached":
        raise SystemExit(f"target-only arm stopped early: {run.stop_reason}")
    trials = run.study.get_trials(deepcopy=False)
    value, acc = _best(run.study)
    return {"best": value, "acc": acc, "target_trials": len(trials), "target_wall_s": _wall(trials),
            "target_tokens": _tokens(trials), "elapsed_s": time.monotonic() - t0}


def proxy_transfer(cfg: StudyConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    run = TwoStageTuner(cfg, reporter=PlainReporter).run()
    if run.stop_reason != "n_trials reached":
        raise SystemExit(f"proxy + transfer arm stopped early: {run.stop_reason}")
    target, proxy = run.target_study.get_trials(deepcopy=False), run.proxy_study.get_trials(deepcopy=False)
    tr = transfer_summary(proxy, target)
    value, acc = _best(run.target_study)
    return {"best": value, "acc": acc, "target_trials": len(target), "target_wall_s": _wall(target),
            "target_tokens": _tokens(target), "proxy_trials": len(proxy), "proxy_wall_s": _wall(proxy),
            "proxy_tokens": _tokens(proxy), "rho": tr.rho, "pairs": len(tr.pairs),
            "elapsed_s": time.monotonic() - t0}


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    import os

    import torch
    return (f"{model}, {os.cpu_count()} cores (shared sandbox), torch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}")


def table(rows: list[dict[str, Any]], metric: str, second: str = "val accuracy") -> str:
    head = (f"| seed | arm | best {metric} | its {second} | target trials | target wall s | proxy trials "
            "| proxy wall s | Spearman (pairs) | elapsed s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        proxy = (f"{r['proxy_trials']} | {r['proxy_wall_s']:.0f} | {r['rho']:.2f} ({r['pairs']})"
                 if "proxy_trials" in r else "— | — | —")
        lines.append(f"| {r['seed']} | {r['arm']} | {r['best']:.4f} | {r['acc']:.4f} | {r['target_trials']} | "
                     f"{r['target_wall_s']:.0f} | {proxy} | {r['elapsed_s']:.0f} |")
    for arm in ("target-only", "proxy + transfer"):
        mine = [r for r in rows if r["arm"] == arm]
        if mine:
            best, acc = [r["best"] for r in mine], [r["acc"] for r in mine]
            spread = f" ± {statistics.stdev(best):.4f}" if len(best) > 1 else ""
            lines.append(f"| mean | {arm} | {statistics.mean(best):.4f}{spread} | {statistics.mean(acc):.4f} | | "
                         f"{statistics.mean(r['target_wall_s'] for r in mine):.0f} | | | | "
                         f"{statistics.mean(r['elapsed_s'] for r in mine):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=list(TASKS), default="classification")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--metric", default="eval_loss", help="selection metric (eval_loss ranks even before "
                    "accuracy leaves the majority class)")
    ap.add_argument("--target-trials", type=int, default=3, help="T: target trials per arm (default included)")
    ap.add_argument("--proxy-trials", type=int, default=6, help="P: proxy trials")
    ap.add_argument("--truncate-layers", type=int, default=None, help="k (default: 2 of 6 / 8 of 30 blocks)")
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--validation-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--arms", nargs="+", default=["target-only", "proxy"], choices=["target-only", "proxy"],
                    help="target-only alone with a larger --target-trials gives the equal-total-compute check")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    task = TASKS[args.task]
    for key in ("train_size", "validation_size", "max_length", "max_steps"):
        if getattr(args, key) is None:
            setattr(args, key, task[key])
    k = args.truncate_layers or task["truncate"]
    second = "val accuracy" if args.task == "classification" else "val perplexity"
    rows: list[dict[str, Any]] = []
    example = ROOT / "examples" / task["example"]
    with tempfile.TemporaryDirectory(prefix="lmtune-proxy-bench-") as tmp:
        for seed in args.seeds:
            if "target-only" in args.arms:
                sets = base_overrides(args, Path(tmp) / f"target-{seed}", seed)
                rows.append({"seed": seed, "arm": "target-only",
                             **target_only(load_config(example, sets), args.target_trials)})
                print(table(rows[-1:], args.metric, second), flush=True)
            if "proxy" not in args.arms:
                continue
            sets = [*base_overrides(args, Path(tmp) / f"proxy-{seed}", seed),
                    f"proxy.truncate_layers={k}", f"proxy.n_trials={args.proxy_trials}",
                    f"proxy.top_k={args.target_trials - 1}"]
            rows.append({"seed": seed, "arm": "proxy + transfer", **proxy_transfer(load_config(example, sets))})
            print(table(rows[-1:], args.metric, second), flush=True)
    settings = (f"{task['describe']}: train {args.train_size}, validation {args.validation_size}, max_length "
                f"{args.max_length}, batch {task['batch_size']}, {args.max_steps} steps per trial, TPE (4 random "
                f"start-up trials) on {args.metric}, search space {task['space']}; proxy = first {k} of "
                f"{task['blocks']} blocks, {args.proxy_trials} proxy trials, top {args.target_trials - 1} + default "
                f"on the target; {args.target_trials} target trials per arm")
    text = f"{settings}.\n\nMachine: {machine()}.\n\n{table(rows, args.metric, second)}\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
