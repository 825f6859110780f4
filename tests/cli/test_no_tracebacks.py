"""Every command, given broken arguments or broken files, answers with one message and exit 2 — never a
traceback (DESIGN.md: bad input is an error that names the problem and the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_lmtune

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def _broken_study(tmp: Path, kind: str) -> str:
    d = tmp / kind
    d.mkdir()
    if kind == "bad-json":
        (d / "lmtune.json").write_text("{oops")
    elif kind == "bad-db":
        (d / "lmtune.json").write_text('{"study_name": "x", "storage": "sqlite:///%s", "metric": "eval_accuracy", '
                                       '"direction": "maximize", "config": {}}' % (d / "study.db"))
        (d / "study.db").write_bytes(b"not a database" * 64)
    return str(d)


COMMANDS = ["status", "best", "export", "final", "report", "dashboard"]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["missing", "empty", "bad-json", "bad-db"])
def test_study_commands_on_a_broken_study_dir(command: str, kind: str, tmp_path: Path) -> None:
    target = str(tmp_path / "nowhere") if kind == "missing" else _broken_study(tmp_path, kind)
    out = run_lmtune(command, target)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text[-2000:]
    assert text.strip(), "an error with no message"


@pytest.mark.parametrize("args", [
    [],                                             # no command
    ["tune"],                                       # missing argument
    ["tune", QUICKSTART, "--n-trials", "abc"],
    ["tune", QUICKSTART, "--n-trials", "0"],
    ["tune", QUICKSTART, "--no-such-option"],
    ["tune", "/no/such/config.yaml"],
    ["tune", str(ROOT)],                            # a folder, not a file
    ["tune", QUICKSTART, "--set", "nonsense"],
    ["tune", QUICKSTART, "--set", "training.no_such_field=1"],
    ["tune", QUICKSTART, "--set", "study.storage=not a url"],
    ["tune", QUICKSTART, "--set", "search.space={optimizer: [lion]}"],
    ["tune", QUICKSTART, "--set", "task.dataset=/no/such/[/x].csv"],
    ["worker", QUICKSTART],                         # a worker needs server storage
    ["export", "/no/such/study", "--format", "pdf"],
    ["no-such-command"],
])
def test_broken_arguments_are_one_message(args: list[str]) -> None:
    out = run_lmtune(*args)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text[-2000:]


def test_a_binary_config_is_one_message(tmp_path: Path) -> None:
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)))
    out = run_lmtune("tune", str(binary))
    assert out.returncode == 2 and "not a text file" in out.stdout + out.stderr
