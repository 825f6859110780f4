"""``lmtune dashboard``: open a study in optuna-dashboard (the optional ``dashboard`` extra).

lmtune studies are plain Optuna RDB studies, so the dashboard needs nothing but the storage URL.
It binds to 127.0.0.1 by default: optuna-dashboard has no authentication.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from lmtune.errors import LmtuneError
from lmtune.study import read_meta

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
Say = Callable[[str], None]


def storage_url(study_dir: Path) -> str:
    """The study's storage URL, checked: a moved SQLite file is found, a damaged database named."""
    from lmtune.study import open_study
    from lmtune.study import storage_url as url_of

    meta = read_meta(study_dir)
    url = url_of(study_dir, meta)
    open_study(str(meta["study_name"]), url)  # fails here with the reason, not inside the web server
    return url


def serve(study_dir: Path, *, host: str, port: int, say: Say) -> None:
    """Serve optuna-dashboard on ``host:port`` until Ctrl-C (SIGINT).

    The app is optuna-dashboard's own (``optuna_dashboard.wsgi``) on wsgiref, as its ``run_server`` does,
    but served from a thread: wsgiref swallows a KeyboardInterrupt that lands while it answers a request
    (the dashboard polls every few seconds), so under ``run_server`` Ctrl-C often did nothing. Here SIGINT
    and SIGTERM only set an event the main thread waits on; it then shuts the server down after the current
    request (at most 10 s) and returns.
    """
    try:
        import optuna_dashboard
    except ImportError:
        raise LmtuneError("optuna-dashboard is not installed; install it with "
                          "pip install 'lmtune[dashboard]' (or pip install optuna-dashboard)") from None
    from wsgiref.simple_server import make_server

    url = storage_url(study_dir)
    if host not in LOCAL_HOSTS:
        say(f"warning: binding to {host}; anyone who can reach this port can read and edit the study")
    try:
        httpd = make_server(host, port, optuna_dashboard.wsgi(url))
    except OSError as exc:
        raise LmtuneError(f"cannot serve on {host}:{port}: {exc}; pick another --port") from None
    say(f"optuna-dashboard for {study_dir} at http://{host}:{port}/ (Ctrl-C stops it)")
    stop = threading.Event()
    # Ctrl-C (and SIGTERM) set the event, whatever disposition the process inherited: a command started in
    # the background by a non-interactive shell inherits SIGINT ignored, and Python then raises nothing
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if main else {}
    thread = threading.Thread(target=httpd.serve_forever, name="optuna-dashboard", daemon=True)
    thread.start()
    try:
        while thread.is_alive() and not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # shutdown() waits for the request being answered; one that hangs (a client that never sends) must
        # not keep the command alive: give it a few seconds, then close the socket and leave (daemon thread)
        closer = threading.Thread(target=httpd.shutdown, daemon=True)
        closer.start()
        closer.join(10)
        httpd.server_close()
    say("dashboard stopped")
