"""A broken study store is one clear error that names it, never a traceback or a silent new study."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.errors import StudyError
from lmtune.study.store import StudyPaths, check_not_lost, read_meta, storage_for

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


@pytest.mark.parametrize("url, message", [
    ("not a url", "is not a database URL"),
    ("nosuchdb://x/y", "no database driver"),
    ("postgresql://lmtune:secret@127.0.0.1:9/none", "cannot open postgresql://lmtune:***@127.0.0.1:9/none"),
])
def test_a_bad_or_unreachable_storage_is_one_error(url: str, message: str) -> None:
    with pytest.raises(StudyError, match=message.replace("*", r"\*")) as info:
        storage_for(url)
    assert "secret" not in str(info.value)  # never print a password


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StudyError, match="cannot open sqlite"):
        storage_for(f"sqlite:///{db}")


def test_a_damaged_lmtune_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "lmtune.json").write_text("{not json")
    with pytest.raises(StudyError, match=r"lmtune.json: damaged"):
        read_meta(tmp_path)
    (tmp_path / "lmtune.json").write_text("[1, 2]")
    with pytest.raises(StudyError, match="not an lmtune study record"):
        read_meta(tmp_path)


def test_an_empty_study_db_beside_trial_folders_is_not_a_new_study(tmp_path: Path) -> None:
    paths = StudyPaths(tmp_path)
    (tmp_path / "study.db").write_bytes(b"")
    check_not_lost(paths, paths.default_storage())  # empty and nothing else: a new study may start
    paths.trial_dir(0).mkdir(parents=True)
    with pytest.raises(StudyError, match="the study record is lost"):
        check_not_lost(paths, paths.default_storage())


@pytest.mark.slow
def test_the_cli_says_it_without_a_traceback(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "lost"
    (d / "trials" / "0000").mkdir(parents=True)
    (d / "study.db").write_bytes(b"")
    out = run_lmtune("tune", QUICKSTART, *set_args(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "1")
    assert out.returncode == 2 and "the study record is lost" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout
    for bad in ("--n-trials=0", "--n-trials=-3"):
        out = run_lmtune("tune", QUICKSTART, bad)
        assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout, out.stderr
