"""The database connection lost in the middle of a study: a worker stops with one message (exit 1, no
traceback), what was recorded is kept, and the trial it was running is taken up by the next worker.

The connection runs through a TCP relay the test owns, so the server (shared with the other tests) keeps
running while the worker's side of it goes away: every connection is cut and new ones are refused."""

from __future__ import annotations

import contextlib
import errno
import random
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from optuna.trial import TrialState
from test_postgres_workers import GRID, ROOT, trials_of, worker

pytestmark = pytest.mark.services


def _port_outside_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range (and above Ray's worker ports, 10002-19999). A port
    from bind(0) is an ephemeral one: once the relay closes it, any outgoing connection (the test's own
    to PostgreSQL) may take it as its local port and hold it for as long as it lives, so re-serving failed
    with EADDRINUSE (seen in a full run under load, even after 10 s of retries)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randint(20000, max(20001, low - 1))
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port below the ephemeral range")


class Relay:
    """Forwards a local port to the PostgreSQL server until ``cut()``; ``serve()`` starts it (again)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _port_outside_ephemeral_range()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def serve(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):  # a connection cut a moment ago can hold the port briefly (seen under load)
            try:
                lst.bind(("127.0.0.1", self.port))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == 49:
                    raise
                time.sleep(0.2)
        lst.listen(32)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            self._open.append(client)  # before connecting on: cut() must close it whatever happens next
            server = socket.create_connection(self.target)
            self._open.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        assert self._listener is not None
        # shutdown() first: close() alone leaves the socket LISTENING while the accept thread is blocked
        # in accept() on it (the blocked call holds the file open), so the port stays taken and the
        # next serve() fails with EADDRINUSE (the full CI run failed this way twice)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._open.clear()


@pytest.mark.slow
def test_lost_database_connection_stops_the_worker_and_the_next_takes_up_its_trial(
        postgres_url: str, study_name: str, tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    parts = urlsplit(postgres_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    relay.serve()
    creds = parts.netloc.rpartition("@")[0]
    via_relay = urlunsplit(parts._replace(netloc=f"{creds}@127.0.0.1:{relay.port}"))
    grid = [*GRID[:3], "search.space.batch_size={type: categorical, choices: [8, 16]}"]
    cmd = worker(tiny_model, tiny_csv, tmp_path / "run", via_relay, study_name, *grid, "training.max_steps=60",
                 "execution.grace_period=3")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while True:  # cut once a trial has completed and the next one runs
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        with contextlib.suppress(Exception):
            states = [t.state for t in trials_of(postgres_url, study_name)]
            if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                break
        time.sleep(0.2)
    relay.cut()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert "the study's storage failed:" in err and "re-run the same command" in err, err
    kept = {t.number: t.values for t in trials_of(postgres_url, study_name) if t.state == TrialState.COMPLETE}
    assert kept

    relay.serve()
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    after = {t.number: t for t in trials_of(postgres_url, study_name)}
    assert {n: after[n].values for n in kept} == kept
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 4  # every grid point ran
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]
    relay.cut()
