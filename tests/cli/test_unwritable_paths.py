"""A folder lmtune cannot write (study.dir, train --out, export --out) and a study without a name: one
message that names the field and the fix, exit 2, no traceback, nothing written (issue 34).

Tests run as root in CI, and root may write a chmod-0 folder; so "cannot be written" is a place no
process may write: under ``/proc`` (no new entries, even for root), ``/proc`` itself, or under a
regular file."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
NOT_CREATABLE = "/proc/lmtune-no-such/study"  # /proc takes no new folders, whoever asks


def _refused(out: object, field: str) -> str:
    text = out.stdout + out.stderr  # type: ignore[attr-defined]
    assert out.returncode == 2, text[-2000:]  # type: ignore[attr-defined]
    assert "Traceback" not in text, text[-2000:]
    assert f"{field}:" in text and "a folder you can write" in text, text[-2000:]
    return text


def _under_a_file(tmp_path: Path) -> tuple[Path, bytes]:
    blocker = tmp_path / "notes.txt"
    blocker.write_bytes(b"keep me")
    return blocker / "study", b"keep me"


@pytest.mark.parametrize("where", ["proc", "proc-itself", "under-a-file"])
def test_tune_refuses_a_study_dir_it_cannot_write(where: str, tmp_path: Path) -> None:
    target, kept = _under_a_file(tmp_path)
    if where != "under-a-file":
        target = Path(NOT_CREATABLE if where == "proc" else "/proc")
    out = run_lmtune("tune", QUICKSTART, "--set", f"study.dir={target}", "--n-trials", "1")
    text = _refused(out, "study.dir")
    assert str(target) in text
    if where == "under-a-file":
        assert (tmp_path / "notes.txt").read_bytes() == kept  # nothing written, nothing lost
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    else:
        assert not Path(NOT_CREATABLE).parent.exists()


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs holding one file, remounted read-only (root with CAP_SYS_ADMIN, as in CI's container;
    skipped where mounting is not allowed, as tests/tuner/test_disk_full.py is)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode}); needs root")
    try:
        (mnt / "kept.txt").write_text("recorded before")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("sub", ["", "study"])
def test_tune_refuses_a_study_dir_on_a_read_only_mount(sub: str, read_only_mount: Path) -> None:
    target = read_only_mount / sub if sub else read_only_mount
    text = _refused(run_lmtune("tune", QUICKSTART, "--set", f"study.dir={target}"), "study.dir")
    assert "Read-only file system" in text
    assert sorted(p.name for p in read_only_mount.iterdir()) == ["kept.txt"]
    assert (read_only_mount / "kept.txt").read_text() == "recorded before"


@pytest.mark.parametrize("name", ["", "   "])
def test_tune_refuses_a_study_without_a_name(name: str, tmp_path: Path) -> None:
    study = tmp_path / "run"
    out = run_lmtune("tune", QUICKSTART, "--set", f"study.dir={study}", "--set", f"study.name='{name}'")
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text[-2000:]
    assert "study.name" in text and "needs a name" in text and "e.g. study.name:" in text
    assert not study.exists()  # refused when the config is validated: no folder, no study.db


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_train_refuses_an_out_it_cannot_write(where: str, tmp_path: Path) -> None:
    target, kept = _under_a_file(tmp_path)
    if where == "proc":
        target = Path(NOT_CREATABLE)
    out = run_lmtune("train", QUICKSTART, "--set", f"study.dir={tmp_path / 'run'}", "--out", str(target))
    _refused(out, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no data cache, no run folder
    assert (tmp_path / "notes.txt").read_bytes() == kept


@pytest.fixture(scope="module")
def one_trial_study(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("study") / "run"
    out = run_lmtune("tune", QUICKSTART, *set_args(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    return d


@pytest.mark.parametrize("fmt", ["yaml", "hf", "adapter"])
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_export_refuses_an_out_it_cannot_write(fmt: str, where: str, one_trial_study: Path,
                                               tmp_path: Path) -> None:
    target, kept = _under_a_file(tmp_path)
    if where == "proc":
        target = Path(NOT_CREATABLE)
    out = run_lmtune("export", str(one_trial_study), "--format", fmt, "--out", str(target / "best.yaml"))
    _refused(out, "--out")
    assert (tmp_path / "notes.txt").read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_export_to_a_writable_out_still_works(one_trial_study: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "best.yaml"
    out = run_lmtune("export", str(one_trial_study), "--format", "yaml", "--out", str(target))
    assert out.returncode == 0, out.stdout + out.stderr
    assert target.is_file() and "learning_rate" in target.read_text()


def test_export_yaml_into_a_folder_names_a_file_to_give(one_trial_study: Path, tmp_path: Path) -> None:
    out = run_lmtune("export", str(one_trial_study), "--format", "yaml", "--out", str(tmp_path))
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text and "give a file name" in text, text[-2000:]
