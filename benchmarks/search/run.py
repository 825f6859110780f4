"""Search benchmark: lmtune's strategies vs HF ``Trainer.hyperparameter_search`` (Optuna TPE +
HyperbandPruner, 16 trials) on public text-classification tasks, at a third of the peer's train tokens.

One *cell* is (task, seed). The seed fixes the data split (lmtune's split code, shared by every arm),
the samplers and the retraining seeds' offset. Per cell:

1. ``peer``: HF hyperparameter_search, ``n_trials`` (16), eval every ``eval_steps`` steps; its real
   train tokens are counted.
2. each lmtune arm (``auto`` and, on request, ``random``, ``bayes``, ``hyperband``, ``asha``, ``pbt``,
   ``one_epoch``) runs ``lmtune tune`` (the product path) with ``budget.max_train_tokens`` = the peer's
   tokens / 3 (a cap: see README).
3. ``default``: the default configuration, not searched.
4. every arm's selected configuration is retrained by one neutral trainer (HF ``Trainer``, seeds
   ``retrain_seeds``) and scored once on the test split.

Results: one JSON per (task, seed, arm) under ``--out``/cells (a rerun skips finished cells), then
``summarize.py`` writes summary.json and the docs table.

    .venv/bin/python benchmarks/search/run.py --tasks rotten_tomatoes bbc_topic stsb_pair --seeds 0 1 2 3 4

Sized for a 2-core CPU (about 15 min per seed for the three tasks with peer+auto+default: 250 train
rows, 32 tokens, 1-3 epochs); on a GPU box raise ``--train-size``/``--max-length`` and add arms: the
cells are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

import optuna

from search.hf_peer import Data, expected_max, retrain, run_peer
from search.tasks import task

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"

# The same space for every arm: the five hyperparameters users tune first (HF docs' example space
# plus epochs and warm-up), all meaning the same thing in HF TrainingArguments and in lmtune.
SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 5e-4, "log": True},
    "batch_size": {"type": "categorical", "choices": [8, 16, 32]},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
    "epochs": {"type": "int", "low": 1, "high": 3},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
}
ARMS: dict[str, list[str]] = {
    "auto": ["search.strategy=auto"],
    "random": ["search.strategy=random"],
    "bayes": ["search.strategy=bayes"],
    "hyperband": ["search.strategy=hyperband"],
    "asha": ["search.strategy=asha"],
    # PBT members all train one length (they copy each other's checkpoints), so epochs leaves the space;
    # 3 members x 2 epochs is the largest population x length inside a third of the peer's tokens
    # (~6.7 epochs' worth). The neutral retrain runs the best member's last settings as a fixed
    # configuration (what `lmtune export --format hf` hands a Trainer), not its schedule.
    "pbt": ["search.strategy=pbt", "search.space=" + json.dumps({k: v for k, v in SPACE.items() if k != "epochs"}),
            "training.epochs=2", "search.pbt.population_size=3"],
}


def overrides(t: Any, seed: int, args: argparse.Namespace, study_dir: Path) -> list[str]:
    sets = [f"study.dir={study_dir}", f"study.seed={seed}", f"task.dataset={t.csv}", "task.text_column=text",
            "task.label_column=label", f"task.train_size={args.train_size}",
            f"task.validation_size={args.validation_size}", f"task.test_size={args.test_size}",
            # the default configuration is HF TrainingArguments' own: lr 5e-5, batch 8, 3 epochs, no decay
            f"task.max_length={args.max_length}", "training.learning_rate=5e-5", "training.batch_size=8",
            "training.epochs=3", "training.max_steps=null", "training.weight_decay=0.0",
            "training.warmup_ratio=0.0", "training.optimizer=adamw", f"training.eval_every={args.eval_every}",
            # no default-settings trial in the searches: the peer runs none, and the baseline is the
            # `default` arm (its configuration retrained like every arm's selection)
            "search.include_default=false", f"search.space={json.dumps(SPACE)}"]
    if t.pair:
        sets.append("task.text_pair_column=text_pair")
    return sets


def config(t: Any, seed: int, args: argparse.Namespace, study_dir: Path) -> Any:
    from lmtune.config import load_config

    return load_config(str(QUICKSTART), overrides(t, seed, args, study_dir))


def lmtune_study(sets: list[str], n_trials: int) -> tuple[optuna.Study, float]:
    cmd = [sys.executable, "-m", "lmtune", "tune", str(QUICKSTART), *[a for s in sets for a in ("--set", s)],
           "--n-trials", str(n_trials)]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"lmtune tune failed ({out.returncode}): {out.stdout[-1500:]}{out.stderr[-1500:]}")
    d = next(s.split("=", 1)[1] for s in sets if s.startswith("study.dir="))
    return optuna.load_study(study_name="quickstart", storage=f"sqlite:///{d}/study.db"), wall


def trials_of(study: optuna.Study) -> list[dict[str, Any]]:
    return [{"number": t.number, "state": t.state.name, "params": dict(t.params),
             "value": t.value, "train_tokens": int(t.user_attrs.get("train_tokens", 0)),
             "stopped_by": t.user_attrs.get("stopped_by")} for t in study.trials]


def anytime(trials: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(cumulative train tokens, best validation so far), in the order the trials ran."""
    spent, best, curve = 0, float("-inf"), []
    for t in trials:
        spent += t["train_tokens"]
        if t["state"] == "COMPLETE" and t["value"] is not None:
            best = max(best, t["value"])
        curve.append((spent, best if best > float("-inf") else None))
    return curve


def one_epoch(t: Any, seed: int, args: argparse.Namespace, work: Path, budget: int, k: int = 2) -> dict[str, Any]:
    """The one-epoch rule (arXiv 2307.15422): random configurations trained one epoch each with half
    the budget, then the top ``k`` trained to the space's longest length (retrained from scratch: lmtune
    does not continue a finished trial, so this costs one epoch more per continued configuration than a
    resumed run would) with what is left; the best of those by validation is selected."""
    space = {k_: v for k_, v in SPACE.items() if k_ != "epochs"}
    longest = SPACE["epochs"]["high"]
    first, second = work / "one_epoch-1", work / "one_epoch-2"
    for d in (first, second):
        shutil.rmtree(d, ignore_errors=True)
    sets = [*overrides(t, seed, args, first), "search.strategy=random", f"search.space={json.dumps(space)}",
            "training.epochs=1", f"budget.max_train_tokens={budget // 2}"]
    s1, w1 = lmtune_study(sets, n_trials=200)
    spent1 = sum(int(x.user_attrs.get("train_tokens", 0)) for x in s1.trials)
    sets = [*overrides(t, seed, args, second), "search.strategy=random", f"search.space={json.dumps(space)}",
            f"training.epochs={longest}", f"search.prior_studies=[{first}]", f"search.prior_top_k={k}",
            f"budget.max_train_tokens={max(1, budget - spent1)}"]
    s2, w2 = lmtune_study(sets, n_trials=k)
    trials = trials_of(s1) + [{**x, "number": x["number"] + len(s1.trials)} for x in trials_of(s2)]
    done = [x for x in s2.trials if x.state.name == "COMPLETE"]
    best = max(done, key=lambda x: x.value or 0.0) if done else s1.best_trial
    selected = {**best.params, "epochs": longest if done else 1}
    return {"selected": selected, "selected_val": best.value, "budget": budget,
            "train_tokens": sum(x["train_tokens"] for x in trials), "search_wall_s": w1 + w2, "trials": trials}


def prior_study(t: Any, seed: int, args: argparse.Namespace) -> tuple[Path, int]:
    """The earlier study ``auto_prior`` warm-starts from: the same task's ``auto`` search of the previous
    seed (another data split), run here (search only, its own budget) when its folder is gone. Returns the
    folder and the train tokens that earlier study spent (a sunk cost of the earlier study, not counted
    in the warm-started arm's tokens, but recorded beside them)."""
    prev = args.seeds[(args.seeds.index(seed) - 1) % len(args.seeds)]
    other = Path(args.work) / t.name / str(prev) / "auto"
    if not (other / "study.db").exists():
        peer = json.loads((Path(args.out) / "cells" / f"{t.name}-{prev}-peer.json").read_text())
        shutil.rmtree(other, ignore_errors=True)
        lmtune_study([*overrides(t, prev, args, other), *ARMS["auto"],
                      f"budget.max_train_tokens={peer['train_tokens'] // 3}"], n_trials=200)
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{other}/study.db")
    return other, sum(int(x.user_attrs.get("train_tokens", 0)) for x in study.trials)


def earlier_retrain(row: dict[str, Any], args: argparse.Namespace) -> tuple[list[float], str] | None:
    """The neutral retrain of this exact configuration on this cell (task, seed, sizes) when another arm's
    cell already ran it: the retrain is deterministic (on the 30 (cell, configuration) pairs that two arms
    selected alike, every retrain gave the same scores, across two CPU models), so it is reused, and the
    row names the cell it came from. ``--no-reuse-retrain`` retrains anyway."""
    if not args.reuse_retrain:
        return None
    sizes = {k: getattr(args, k) for k in ("train_size", "validation_size", "test_size", "max_length", "retrain_seeds")}
    for folder in dict.fromkeys([Path(args.out) / "cells", ROOT / "docs" / "benchmarks" / "search" / "cells"]):
        for f in sorted(folder.glob(f"{row['task']}-{row['seed']}-*.json")):
            other = json.loads(f.read_text())
            if other.get("selected") == row["selected"] and "test_accuracy_per_seed" in other and \
                    all(other.get("sizes", {}).get(k) == v for k, v in sizes.items()) and \
                    not other.get("retrain_reused_from"):
                return list(other["test_accuracy_per_seed"]), str(f.relative_to(ROOT))
    return None


def cell(t: Any, seed: int, arm: str, args: argparse.Namespace, peer_tokens: int | None) -> dict[str, Any]:
    from lmtune.training.models import resolve_model

    work = Path(args.work) / t.name / str(seed)
    cfg = config(t, seed, args, work / "data-only")
    model = resolve_model("builtin:minilm-l6")
    data = Data(cfg, model)
    seeds = [seed * 100 + s for s in range(1, args.retrain_seeds + 1)]
    row: dict[str, Any] = {"task": t.name, "seed": seed, "arm": arm}
    t0 = time.monotonic()
    if arm == "peer":
        res = run_peer(cfg, model, data, SPACE, seed=seed, n_trials=args.peer_trials, eval_steps=args.peer_eval_steps,
                       workdir=work / "peer")
        trials = [{"number": i, "state": p.state, "params": p.params, "value": p.value,
                   "train_tokens": p.train_tokens} for i, p in enumerate(res.trials)]
        row.update(selected=res.best_params, selected_val=res.best_value, train_tokens=res.train_tokens,
                   search_wall_s=res.wall_s, trials=trials)
    elif arm == "default":
        row.update(selected={}, selected_val=None, train_tokens=0, search_wall_s=0.0, trials=[])
    elif arm == "one_epoch":
        assert peer_tokens, "lmtune arms run after the peer: their budget is a third of its tokens"
        row.update(one_epoch(t, seed, args, work, peer_tokens // 3))
    else:
        assert peer_tokens, "lmtune arms run after the peer: their budget is a third of its tokens"
        d = work / arm
        shutil.rmtree(d, ignore_errors=True)
        extra = list(ARMS.get(arm, []))
        if arm == "auto_prior":  # warm start from the same task's auto study of another seed (another split)
            other, prior_tokens = prior_study(t, seed, args)
            extra = [*ARMS["auto"], f"search.prior_studies=[{other}]", "search.prior_top_k=3"]
            row.update(prior_study=str(other), prior_study_tokens=prior_tokens)
        sets = [*overrides(t, seed, args, d), *extra, f"budget.max_train_tokens={peer_tokens // 3}"]
        study, wall = lmtune_study(sets, n_trials=200)
        trials = trials_of(study)
        best = study.best_trial
        row.update(selected=dict(best.params), selected_val=best.value, budget=peer_tokens // 3,
                   train_tokens=sum(x["train_tokens"] for x in trials), search_wall_s=wall, trials=trials,
                   overhead_s=[x.user_attrs.get("overhead_s") for x in study.trials])
    vals = [x["value"] for x in row["trials"] if x["state"] == "COMPLETE" and x["value"] is not None]
    row["expected_max_val"] = [expected_max(vals, n) for n in range(1, len(vals) + 1)]
    row["anytime"] = anytime(row["trials"])
    reused = earlier_retrain(row, args)
    if reused is not None:
        row["test_accuracy_per_seed"], row["retrain_reused_from"] = reused
    else:
        row["test_accuracy_per_seed"] = retrain(cfg, model, data, row["selected"], seeds=seeds,
                                                workdir=work / "retrain")
    row["test_accuracy"] = sum(row["test_accuracy_per_seed"]) / len(seeds)
    row["wall_s"] = time.monotonic() - t0
    row["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "load_1m": os.getloadavg()[0]}
    row["sizes"] = {k: getattr(args, k) for k in ("train_size", "validation_size", "test_size", "max_length",
                                                   "eval_every", "peer_eval_steps", "peer_trials",
                                                   "retrain_seeds")}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "bbc_topic", "stsb_pair"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--arms", nargs="+", default=["peer", "auto", "default"])
    p.add_argument("--train-size", type=int, default=250)
    p.add_argument("--validation-size", type=int, default=100)
    p.add_argument("--test-size", type=int, default=300)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=16,
                   help="lmtune: steps at the default batch size 8 (16 = every 128 examples)")
    p.add_argument("--peer-eval-steps", type=int, default=16,
                   help="HF eval_steps, in the trial's own steps (16 = every 128 examples at batch 8)")
    p.add_argument("--peer-trials", type=int, default=16)
    p.add_argument("--retrain-seeds", type=int, default=2)
    p.add_argument("--no-reuse-retrain", dest="reuse_retrain", action="store_false",
                   help="retrain a selection even when another arm's cell already retrained it")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-search"))
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "search"))
    args = p.parse_args()
    cells = Path(args.out) / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.work) / "data"
    for seed in args.seeds:  # seed-major: an interrupted run still has whole seeds for every task
        for name in args.tasks:
            t = task(name, data_dir)
            peer_file = cells / f"{name}-{seed}-peer.json"
            for arm in ["peer", *[a for a in args.arms if a != "peer"]]:
                f = cells / f"{name}-{seed}-{arm}.json"
                if f.exists() or (arm == "peer" and "peer" not in args.arms and peer_file.exists()):
                    continue
                peer_tokens = json.loads(peer_file.read_text())["train_tokens"] if peer_file.exists() else None
                row = cell(t, seed, arm, args, peer_tokens)
                f.write_text(json.dumps(row, indent=1))
                print(f"{name} seed {seed} {arm}: test {row['test_accuracy']:.4f} tokens {row['train_tokens']} "
                      f"wall {row['wall_s']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
