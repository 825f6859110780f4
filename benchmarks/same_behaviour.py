"""Did a change keep behaviour? Compare the studies two checkouts ran from the same benchmark, trial by trial.

Run `benchmarks/strategies.py` (same arguments, same seeds) once on each checkout, each with its own
``--workdir``, then:

    .venv/bin/python benchmarks/same_behaviour.py runs/before runs/after

For every study folder found in both: each trial's sampled parameters, state, value, train tokens and
every evaluation of its curve, in trial order. Identical parameters and values to within ``--tol`` mean
the same decisions and the same training; the first trial that differs is printed with why. A study
that ran fewer trials on one side is compared on the trials both ran, and the extra ones are listed
(a budget rule that changed stops a study earlier: the shared prefix must still match).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import optuna


def _trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{folder / 'study.db'}"
    names = optuna.get_all_study_names(storage)
    return [t for name in names for t in optuna.load_study(study_name=name, storage=storage).trials]


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    return bool(a == b)


def compare(before: Path, after: Path, tol: float) -> tuple[int, int, list[str]]:
    """(trials compared, trials identical, messages)."""
    a, b = _trials(before), _trials(after)
    notes: list[str] = []
    same = 0
    for x, y in zip(a, b, strict=False):
        why = []
        if x.params.keys() != y.params.keys() or not all(_close(x.params[k], y.params[k], tol) for k in x.params):
            why.append(f"params {x.params} vs {y.params}")
        if x.state != y.state:
            why.append(f"state {x.state.name} vs {y.state.name}")
        if x.value is not None and y.value is not None and not _close(x.value, y.value, tol):
            why.append(f"value {x.value:.6f} vs {y.value:.6f}")
        ca, cb = x.user_attrs.get("curve") or [], y.user_attrs.get("curve") or []
        pairs = [(p["metrics"].get("eval_loss"), q["metrics"].get("eval_loss")) for p, q in zip(ca, cb, strict=False)]
        if len(ca) != len(cb) or not all(_close(u, v, tol) for u, v in pairs):
            why.append(f"curve ({len(ca)} vs {len(cb)} evaluations, eval_loss {pairs[:3]}...)")
        if why:
            notes.append(f"  trial {x.number}: " + "; ".join(why))
        else:
            same += 1
    if len(a) != len(b):
        longer, side = (a, "before") if len(a) > len(b) else (b, "after")
        extra = [f"{t.number} ({t.state.name})" for t in longer[min(len(a), len(b)):]]
        notes.append(f"  only {side}: trials {', '.join(extra)}")
    return min(len(a), len(b)), same, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tol", type=float, default=1e-4, help="relative and absolute tolerance on floats")
    args = ap.parse_args()
    studies = sorted(d.name for d in args.before.iterdir() if (d / "study.db").exists()
                     and (args.after / d.name / "study.db").exists())
    print("| study | trials compared | identical | differences |\n|---|---|---|---|")
    details: list[str] = []
    for name in studies:
        n, same, notes = compare(args.before / name, args.after / name, args.tol)
        print(f"| {name} | {n} | {same} | {len(notes)} |")
        details += [f"{name}:", *notes] if notes else []
    if details:
        print("\n" + "\n".join(details))


if __name__ == "__main__":
    main()
