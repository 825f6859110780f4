"""One driver per study folder, with real processes: a second driver exits 2 naming the first; the lock of
a killed driver is taken over with a message; a study.dir that is a file is an error."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.errors import StudyError
from lmtune.study.lock import LOCK_FILE, driver_lock

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")
HOLD = ("import sys, time; from pathlib import Path; from lmtune.study.lock import driver_lock\n"
        "with driver_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")


def _holder(d: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_on_one_study_exits_2_naming_the_first(tiny_model: Path, tiny_csv: Path,
                                                               tmp_path: Path) -> None:
    d = tmp_path / "study"
    first = _holder(d)
    try:
        out = run_lmtune("tune", QUICKSTART, *set_args(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "1")
        assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
        assert f"pid {first.pid}" in out.stderr + out.stdout and "lmtune worker" in out.stderr + out.stdout
        assert not (d / "trials").exists()  # refused before anything ran
    finally:
        first.kill()
        first.wait()


def test_the_lock_of_a_killed_driver_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "study"
    first = _holder(d)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert json.loads((d / LOCK_FILE).read_text())["pid"] == first.pid  # it left its name behind
    with caplog.at_level(logging.WARNING, logger="lmtune"), driver_lock(d):
        assert json.loads((d / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"pid {first.pid}" in caplog.text and "no longer running" in caplog.text
    assert (d / LOCK_FILE).read_text() == ""  # a clean exit leaves no holder behind


def test_the_lock_is_released_when_the_block_ends(tmp_path: Path) -> None:
    with driver_lock(tmp_path):
        pass
    with driver_lock(tmp_path):  # taken again at once, by this or any process
        time.sleep(0)


def test_a_study_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StudyError, match="is a file, not a folder"), driver_lock(f):
        pass
