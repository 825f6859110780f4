"""`lmtune dashboard`: optuna-dashboard serves an lmtune study on localhost, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from lmtune.cli.dashboard import serve
from lmtune.errors import LmtuneError

ROOT = Path(__file__).parents[2]


def make_study(d: Path) -> Path:
    d.mkdir(parents=True)
    storage = f"sqlite:///{(d / 'study.db').resolve()}"
    study = optuna.create_study(study_name="dash-demo", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-3, log=True), n_trials=2)
    (d / "lmtune.json").write_text(json.dumps({"study_name": "dash-demo", "storage": storage,
                                               "metric": "eval_accuracy", "direction": "maximize"}))
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, deadline: float) -> bytes:
    """GET ``url``, retrying until ``deadline`` while the server starts. Each attempt waits up to 60 s for its
    answer: wsgiref answers one request at a time, so a short timeout on a loaded machine (the full suite
    beside other work) abandoned slow answers and queued a new request behind each one."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _sigint_ignored() -> None:
    """The hardest start for Ctrl-C: SIGINT inherited *ignored*, as a command started in the background by
    a non-interactive shell gets it (``make test &``); Python then raises no KeyboardInterrupt of its own,
    so the dashboard must take the signal itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_dashboard_serves_the_study_on_localhost(tmp_path: Path) -> None:
    d, port = make_study(tmp_path / "run"), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lmtune", "dashboard", str(d), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_ignored)
    try:
        page = fetch(f"http://127.0.0.1:{port}/", time.monotonic() + 240)  # redirects to /dashboard
        assert b"<html" in page.lower()
        studies = json.loads(fetch(f"http://127.0.0.1:{port}/api/studies", time.monotonic() + 240))
        assert [s["study_name"] for s in studies["study_summaries"]] == ["dash-demo"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(f"the dashboard did not stop on SIGINT; its output:\n{stdout}\n{stderr}")
    assert proc.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/" in stdout and "dashboard stopped" in stdout


def test_missing_optuna_dashboard_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import now raises ImportError
    with pytest.raises(LmtuneError, match=r"pip install 'lmtune\[dashboard\]'"):
        serve(make_study(tmp_path / "run"), host="127.0.0.1", port=free_port(), say=print)


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    d = make_study(tmp_path / "run")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        with pytest.raises(LmtuneError, match="pick another --port"):
            serve(d, host="127.0.0.1", port=port, say=print)
