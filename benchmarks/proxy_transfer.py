"""Proxy search + transfer vs target-only search, at equal target compute.

On the built-in classification task (MiniLM-L6 on Rotten Tomatoes sentences), for each seed:

* target-only: a study of ``T`` trials on the target (the default settings + ``T-1`` searched);
* proxy + transfer: ``P`` trials on the target cut to its first 2 blocks, then the proxy's top ``T-1``
  configurations + the default settings on the target (``T`` target trials again).

Both arms run through lmtune's own Tuner / TwoStageTuner (trainer subprocesses, Optuna storage), so the
wall times include process start and model load. Prints a Markdown table (and writes it with ``--out``).

    PYTHONPATH=src .venv/bin/python benchmarks/proxy_transfer.py --seeds 0 1 2 --out /tmp/proxy.md
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
SPACE = ("{learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}, batch_size: [8, 16, 32], "
         "weight_decay: {type: float, low: 0.0, high: 0.1}, warmup_ratio: {type: float, low: 0.0, high: 0.2}}")


def base_overrides(args: argparse.Namespace, study_dir: Path, seed: int) -> list[str]:
    minimize = args.metric.endswith("loss")
    return [f"study.dir={study_dir}", f"study.seed={seed}", "study.name=bench", f"study.metric={args.metric}",
            f"study.direction={'minimize' if minimize else 'maximize'}",
            f"task.train_size={args.train_size}", f"task.validation_size={args.validation_size}",
            "task.test_size=200", f"task.max_length={args.max_length}",
            "training.batch_size=16", f"training.max_steps={args.max_steps}",
            f"training.eval_every={args.max_steps}", "search.strategy=bayes", "search.n_startup_trials=4",
            f"search.space={SPACE}"]


def _best(study: optuna.Study) -> tuple[float, float]:
    """The best trial's value and its validation accuracy."""
    t = study.best_trial
    curve = t.user_attrs.get("curve") or [{}]
    return float(t.value or math.nan), float(curve[-1].get("metrics", {}).get("eval_accuracy", math.nan))


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


def table(rows: list[dict[str, Any]], metric: str) -> str:
    head = (f"| seed | arm | best {metric} | its val accuracy | target trials | target wall s | proxy trials "
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
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--metric", default="eval_loss", help="selection metric (eval_loss ranks even before "
                    "accuracy leaves the majority class)")
    ap.add_argument("--target-trials", type=int, default=3, help="T: target trials per arm (default included)")
    ap.add_argument("--proxy-trials", type=int, default=6, help="P: proxy trials")
    ap.add_argument("--truncate-layers", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=480)
    ap.add_argument("--validation-size", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    quickstart = ROOT / "examples" / "quickstart.yaml"
    with tempfile.TemporaryDirectory(prefix="lmtune-proxy-bench-") as tmp:
        for seed in args.seeds:
            sets = base_overrides(args, Path(tmp) / f"target-{seed}", seed)
            rows.append({"seed": seed, "arm": "target-only",
                         **target_only(load_config(quickstart, sets), args.target_trials)})
            print(table(rows[-1:], args.metric), flush=True)
            sets = [*base_overrides(args, Path(tmp) / f"proxy-{seed}", seed),
                    f"proxy.truncate_layers={args.truncate_layers}", f"proxy.n_trials={args.proxy_trials}",
                    f"proxy.top_k={args.target_trials - 1}"]
            rows.append({"seed": seed, "arm": "proxy + transfer", **proxy_transfer(load_config(quickstart, sets))})
            print(table(rows[-1:], args.metric), flush=True)
    settings = (f"MiniLM-L6 (builtin:minilm-l6) on builtin:rotten_tomatoes: train {args.train_size}, validation "
                f"{args.validation_size}, max_length {args.max_length}, batch 16, {args.max_steps} steps per trial, "
                f"TPE (4 random start-up trials) on {args.metric}, search space {SPACE}; "
                f"proxy = first {args.truncate_layers} of 6 blocks, {args.proxy_trials} proxy trials, "
                f"top {args.target_trials - 1} + default on the target; "
                f"{args.target_trials} target trials per arm")
    text = f"{settings}.\n\nMachine: {machine()}.\n\n{table(rows, args.metric)}\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
