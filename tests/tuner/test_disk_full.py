"""A full disk during a study: the driver stops with one message (exit 1, no traceback), what was
recorded is kept, and the same command resumes once space is free.

The disk is a real 4 MiB tmpfs mounted for the test (root with CAP_SYS_ADMIN, as in CI's container); where
mounting is not allowed the test is skipped: no substitute (a folder quota, RLIMIT_FSIZE) gives the same
ENOSPC from both SQLite and the trainers' own writes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import set_args, tiny_overrides

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({out.stderr.strip() or out.returncode}); needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Writes zeros until the disk is full. Unbuffered: a buffered file keeps the bytes a full disk refused
    and raises ENOSPC again when it closes."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def trials(study_dir: Path) -> dict[int, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{study_dir / 'study.db'}")
    return {t.number: t for t in study.trials}


@pytest.mark.slow
def test_full_disk_stops_the_driver_and_the_rerun_resumes(small_disk: Path, tiny_model: Path,
                                                          tiny_csv: Path) -> None:
    d = small_disk / "study"
    cmd = [sys.executable, "-m", "lmtune", "tune", QUICKSTART, "--n-trials", "4",
           *set_args([*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random", "training.max_steps=60"])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (d / "trials" / "0001").exists():  # the default trial completed, trial 1 started
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    filler = fill(small_disk)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert "the study's storage failed: database or disk is full" in err or "No space left on device" in err, err
    assert "re-run the same command to resume" in err
    kept = {n: t.values for n, t in trials(d).items() if t.state == TrialState.COMPLETE}
    assert 0 in kept  # the default trial

    filler.unlink()
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    after = trials(d)
    assert {n: after[n].values for n in kept} == kept  # nothing recorded was lost or changed
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 4
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]
