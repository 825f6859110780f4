"""Bad inputs and injected faults, run through the real CLI; writes the table in docs/reliability.md.

Each case runs ``lmtune`` as a user would (a fresh process, a throwaway study folder, a tiny config
built here) and records the exit code, whether a traceback was printed, whether any trial started, and
the first line of the message. Run from the project root: ``.venv/bin/python benchmarks/reliability_probe.py``
(about a minute on 2 cores). It measures what the landed code does; it asserts nothing (the tests do).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[1]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
LMTUNE = [sys.executable, "-m", "lmtune"]


def tiny_data(folder: Path) -> Path:
    path = folder / "reviews.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(80):
            w.writerow([("good fine great " if i % 2 else "bad awful poor ") * 3 + str(i), i % 2])
    return path


def tiny_args(data: Path, study_dir: Path) -> list[str]:
    sets = [f"study.dir={study_dir}", f"task.dataset={data}", "task.train_size=48", "task.validation_size=16",
            "task.test_size=16", "task.max_length=16", "training.batch_size=8", "training.max_steps=4",
            "training.eval_every=2", "search.strategy=random"]
    return [a for s in sets for a in ("--set", s)]


def run(args: list[str], *, timeout: float = 300) -> tuple[int, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([*LMTUNE, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return out.returncode, out.stdout + out.stderr


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    at = next((i for i, line in enumerate(lines) if line.startswith(("error:", "Error", "Usage", "usage"))), None)
    line = lines[at] if at is not None else (lines[-1] if lines else "")
    if at is not None and line.endswith(":") and at + 1 < len(lines):  # "invalid config X:" then the field
        line = f"{line} {lines[at + 1]}"
    return line.replace("|", "\\|")[:150]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "docs" / "reliability-probe.md"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lmtune-probe-"))
    data = tiny_data(tmp)
    rows: list[tuple[str, str, int, bool, bool, str]] = []
    count = iter(range(1000))

    def case(kind: str, what: str, build: Callable[[Path], list[str]]) -> None:
        d = tmp / f"s{next(count)}"
        code, text = run(build(d))
        started = (d / "trials").exists() and any((d / "trials").rglob("trainer.log"))
        rows.append((kind, what, code, "Traceback" in text, started, first_line(text)))
        print(f"{kind:8} {what:55} rc={code} tb={'Traceback' in text} started={started}", flush=True)

    def tune(*extra: str) -> Callable[[Path], list[str]]:
        return lambda d: ["tune", QUICKSTART, *tiny_args(data, d), *[a for s in extra for a in ("--set", s)],
                          "--n-trials", "1"]

    # -- inputs ------------------------------------------------------------------------------
    case("usage", "--n-trials abc", lambda d: ["tune", QUICKSTART, "--n-trials", "abc"])
    case("usage", "--n-trials 0", lambda d: ["tune", QUICKSTART, "--n-trials", "0"])
    case("usage", "unknown option", lambda d: ["tune", QUICKSTART, "--no-such-option"])
    case("usage", "no command", lambda d: [])
    case("usage", "unknown command", lambda d: ["frobnicate"])
    case("config", "config file missing", lambda d: ["tune", "/no/such.yaml"])
    case("config", "config is a folder", lambda d: ["tune", str(ROOT)])
    binary = tmp / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    case("config", "binary config file", lambda d: ["tune", str(binary)])
    dup = tmp / "dup.yaml"
    dup.write_text("training:\n  learning_rate: 1e-4\n  learning_rate: 1e-3\n")
    case("config", "duplicate YAML key", lambda d: ["tune", str(dup)])
    bomb = tmp / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    case("config", "YAML alias bomb (9 levels x 9)", lambda d: ["tune", str(bomb)])
    bomb_s = time.monotonic() - t0
    case("config", "unknown key training.lr", tune("training.lr=1e-4"))
    case("config", "--set without =", lambda d: ["tune", QUICKSTART, "--set", "nonsense"])
    case("config", "execution.workers: true", tune("execution.workers=true"))
    case("config", "eval_accuracy with direction minimize", tune("study.direction=minimize"))
    case("config", "metric the task does not report (eval_bleu)", tune("study.metric=eval_bleu"))
    case("config", "search.preset ../../x", tune("search.preset=../../x"))
    case("config", "search.pbt.mutable [foo]", tune("search.strategy=pbt", "search.pbt.mutable=[foo]"))
    case("space", "optimizer: [lion]", tune("search.space={optimizer: [lion]}"))
    case("space", "batch_size: [0, 8]", tune("search.space={batch_size: [0, 8]}"))
    case("space", "dropout up to 1.0", tune("search.space={dropout: {type: float, low: 0.1, high: 1.0}}"))
    case("space", "negative learning rate", tune("search.space={learning_rate: {type: float, low: -1, high: 1}}"))
    case("space", "when: on a value that never occurs",
         tune("search.space={optimizer: [adamw, sgd], momentum: {type: float, low: 0.5, high: 0.9, "
              "when: {optimizer: [rmsprop]}}}"))
    case("space", "field the trainer does not have", tune("search.space={no_such: [1, 2]}"))
    case("data", "dataset file missing", tune("task.dataset=/no/such.csv"))
    case("data", "path with rich markup [/x]", tune(f"task.dataset={tmp}/[/x].csv"))
    case("data", "label column missing", tune("task.label_column=nope"))
    case("model", "model folder missing", tune("task.model=/no/such/model"))
    case("storage", "storage URL not a URL", tune("study.storage=not a url"))
    case("storage", "PostgreSQL unreachable", tune("study.storage=postgresql://u:pw@127.0.0.1:9/x"))
    f = tmp / "a-file"
    f.write_text("x")
    case("storage", "study.dir is a file", lambda d: ["tune", QUICKSTART, *tiny_args(data, f), "--n-trials", "1"])
    lost = tmp / "lost"
    (lost / "trials" / "0000").mkdir(parents=True)
    (lost / "study.db").write_bytes(b"")
    case("storage", "empty study.db beside trial folders",
         lambda d: ["tune", QUICKSTART, *tiny_args(data, lost), "--n-trials", "1"])
    bad_db = tmp / "bad-db"
    bad_db.mkdir()
    (bad_db / "lmtune.json").write_text('{"study_name": "x", "storage": "sqlite:///%s"}' % (bad_db / "study.db"))
    (bad_db / "study.db").write_bytes(b"garbage" * 100)
    for command in ("status", "best", "report", "export"):
        case("storage", f"{command} on a damaged study.db", lambda d, c=command: [c, str(bad_db)])
    bad_meta = tmp / "bad-meta"
    bad_meta.mkdir()
    (bad_meta / "lmtune.json").write_text("{oops")
    case("storage", "status on a damaged lmtune.json", lambda d: ["status", str(bad_meta)])
    case("storage", "status on a folder that is no study", lambda d: ["status", str(tmp)])
    case("worker", "lmtune worker on SQLite", lambda d: ["worker", QUICKSTART, *tiny_args(data, d)])

    # -- faults ------------------------------------------------------------------------------
    d = tmp / "two"
    first = subprocess.Popen([*LMTUNE, "tune", QUICKSTART, *tiny_args(data, d), "--set", "training.max_steps=40",
                              "--n-trials", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(8)
    code, text = run(["tune", QUICKSTART, *tiny_args(data, d), "--n-trials", "3"])
    rows.append(("fault", "second driver on a running study", code, "Traceback" in text, False, first_line(text)))
    first.send_signal(signal.SIGKILL)
    first.wait()
    code, text = run(["tune", QUICKSTART, *tiny_args(data, d), "--n-trials", "3"])
    rows.append(("fault", "re-run after the first driver was SIGKILLed", code, "Traceback" in text, True,
                 first_line(text)))
    code, text = run(["tune", QUICKSTART, *tiny_args(data, d), "--set", "study.metric=eval_loss",
                      "--set", "study.direction=minimize", "--n-trials", "4"])
    rows.append(("fault", "metric changed on an existing study", code, "Traceback" in text, False, first_line(text)))

    out = Path(args.out)
    with out.open("w") as fh:
        fh.write("# Reliability probe: bad inputs and faults through the real CLI (measured)\n\n")
        fh.write(f"Written by `benchmarks/reliability_probe.py` on {time.strftime('%Y-%m-%d')}, "
                 f"{platform.machine()} with {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
                 f"the alias bomb case took {bomb_s:.1f} s (process start included).\n\n")
        fh.write("| kind | input or fault | exit | traceback | a trial started | first line of the message |\n")
        fh.write("|---|---|---|---|---|---|\n")
        for kind, what, code, tb, started, line in rows:
            fh.write(f"| {kind} | {what} | {code} | {'yes' if tb else 'no'} | {'yes' if started else 'no'} | "
                     f"{line} |\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
