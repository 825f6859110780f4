"""Bad inputs and injected faults, run through the real CLI; writes the table in docs/reliability.md.

Each case runs ``lmtune`` as a user would (a fresh process, a throwaway study folder, a tiny config
built here) and records the exit code, whether a traceback was printed, whether any trial started, and
the first line of the message. Run from the project root: ``.venv/bin/python benchmarks/reliability_probe.py``
(about a minute on 2 cores). It measures what the landed code does; it asserts nothing (the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
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


def disk_full(tmp: Path, data: Path, rows: list[tuple[str, str, int, bool, bool, str]]) -> None:
    """The study folder on a 16 MiB tmpfs (needs root), filled once the first trial trains; then freed."""
    mnt = tmp / "small-disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True).returncode:
        rows.append(("fault", "disk full mid-study", -1, False, False, "not run: mounting a tmpfs needs root"))
        return
    try:
        d = mnt / "study"
        argv = [*LMTUNE, "tune", QUICKSTART, *tiny_args(data, d), "--set", "training.max_steps=40", "--n-trials", "3"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120
        while not list(d.glob("trials/*/trainer.log")) and time.time() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(OSError), (mnt / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
        text = proc.communicate(timeout=300)[0]
        rows.append(("fault", "disk full mid-study", proc.returncode, "Traceback" in text, True, first_line(text)))
        (mnt / "filler").unlink()
        code, text = run(argv[len(LMTUNE):])
        rows.append(("fault", "re-run after the disk was freed", code, "Traceback" in text, True, first_line(text)))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def pbt_checkpoint_deleted(tmp: Path, data: Path, rows: list[tuple[str, str, int, bool, bool, str]]) -> None:
    """A PBT study killed once a member has a checkpoint; that checkpoint deleted; the study re-run."""
    d = tmp / "pbt"
    argv = ["tune", QUICKSTART, *tiny_args(data, d), "--set", "search.strategy=pbt", "--set",
            "training.max_steps=8", "--n-trials", "2"]
    proc = subprocess.Popen([*LMTUNE, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state_file, deadline = d / "pbt_state.json", time.time() + 300
    member = None
    while member is None and time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(ValueError, OSError):
            state = json.loads(state_file.read_text())
            member = next((m for m in state["pbt"]["members"] if m["checkpoint"] and not m["finished"]), None)
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if member is None:
        rows.append(("fault", "PBT checkpoint deleted, study re-run", -1, False, False, "not run: no checkpoint"))
        return
    owner, units = member["checkpoint"]
    shutil.rmtree(d / "trials" / f"{state['trials'][str(owner)]:04d}" / "checkpoints" / f"u{units:05d}")
    code, text = run(argv)
    said = next((line.strip() for line in text.splitlines() if "is gone" in line), "no message")
    said = said.replace("|", "\\|").replace(str(d), "STUDY")[:150]
    rows.append(("fault", "PBT checkpoint deleted, study re-run", code, "Traceback" in text, True,
                 f"{said} ({text.count(' COMPLETE: ')} members completed in the re-run)"))


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
    from lmtune.data.smollm2 import minilm_folder

    for what, damage in (("model folder without weights", lambda w: w.unlink()),
                         ("model weights truncated", lambda w: w.write_bytes(w.read_bytes()[: w.stat().st_size // 2]))):
        broken = tmp / what.replace(" ", "-")
        shutil.copytree(minilm_folder(), broken)
        damage(broken / "model.safetensors")
        case("model", what, tune(f"task.model={broken}"))
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

    disk_full(tmp, data, rows)
    pbt_checkpoint_deleted(tmp, data, rows)

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
