"""The study store: an Optuna RDB study plus ``lmtune.json`` in the study directory.

Only the driver process writes here (trainers stream metrics to it), which is what keeps SQLite
free of "database is locked" errors. Any SQLAlchemy URL works; the study opens with plain
``optuna.load_study`` and optuna-dashboard because lmtune's own facts live in trial user attrs.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from lmtune.errors import NotAStudyError, StudyError
from lmtune.study import record

META_FILE = "lmtune.json"
INTERRUPTED = "interrupted: the tuning process stopped while this trial ran; its configuration is re-run"


@dataclass(frozen=True)
class StudyPaths:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / META_FILE

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def default_storage(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"


def storage_for(url: str, *, heartbeat_interval: int | None = None,
                grace_period: int | None = None) -> optuna.storages.BaseStorage:
    """`_storage_for`, with every way a storage URL or its database can fail said as one StudyError."""
    try:
        return _storage_for(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    except sqlalchemy.exc.NoSuchModuleError:  # (an ArgumentError too: first)
        raise StudyError(f"study.storage: {_masked(url)}: no database driver for this URL's scheme; use "
                         "sqlite:/// or postgresql://") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise StudyError(f"study.storage: {_masked(url)} is not a database URL SQLAlchemy understands ({exc}); "
                         "use e.g. sqlite:///path/study.db or postgresql://user@host/db") from None
    except sqlalchemy.exc.DBAPIError as exc:
        why = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise StudyError(f"study.storage: cannot open {_masked(url)}: {why}; check that the database is "
                         "reachable and is an Optuna study storage (a damaged study.db: restore it from a "
                         "copy, or start a new study.dir)") from None


def _masked(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _storage_for(url: str, *, heartbeat_interval: int | None, grace_period: int | None,
                 ) -> optuna.storages.BaseStorage:
    """RDB storage; SQLite gets a long busy timeout, servers a bounded connection pool (at most 4
    connections per process, so many workers do not exhaust the server). ``heartbeat_interval``:
    trials of shared studies record heartbeats (see `lmtune.study.shared`)."""
    url = _with_driver(url)
    if url.startswith("sqlite"):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}},
                                             heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
        storage.engine.dispose()  # so every connection from here on has the pragmas
        return storage
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_size": 2, "max_overflow": 2,
                                                                  "pool_pre_ping": True},
                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's tables; the
            # losers find them created on the next try.
            if attempt == 4:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log, synced at checkpoints rather than at every commit: the driver writes after
    every evaluation, and a commit that waits for the disk (~17 ms here) is decision overhead. A crash
    of the process loses nothing; a power cut may lose the last commits, never the file's consistency.
    (SQLite is for one machine anyway; shared studies use PostgreSQL.) Readers never block the writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _with_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 (the ``postgres`` extra) when
    only that is installed, and say what to install when neither is."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return f"postgresql+psycopg://{rest}"
    if importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    raise StudyError("study.storage is a PostgreSQL URL but no PostgreSQL driver is installed: "
                     "pip install 'lmtune[postgres]' (psycopg2-binary)")


# errno values that mean "this disk cannot take more": full, over quota, read-only, failing.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def storage_fault(exc: BaseException) -> str | None:
    """What went wrong, in words, when ``exc`` (or an exception it was raised from) is a fault of the
    study's storage or disk: a full or read-only disk, a database that refuses writes or whose connection
    was lost. None for any other exception (those are bugs or input errors, reported as such)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _DISK_ERRNOS:
            return f"{os.strerror(cur.errno)}{f' ({cur.filename})' if cur.filename else ''}"
        name = type(cur).__name__
        module = type(cur).__module__
        if module.startswith("sqlalchemy") and name in ("OperationalError", "InterfaceError", "DatabaseError"):
            orig = getattr(cur, "orig", None)
            return str(orig if orig is not None else cur).strip().splitlines()[0]
        if module.startswith(("sqlite3", "psycopg2", "psycopg")) and name in ("OperationalError", "InterfaceError"):
            return str(cur).strip().splitlines()[0]
        cur = cur.__cause__ or cur.__context__
    return None


def fault_message(fault: str, storage: str | None) -> str:
    """The one message for a storage fault: what failed, what is kept, what the next run does."""
    where = f" ({_masked(storage)})" if storage else ""
    return (f"the study's storage failed: {fault}{where}. Completed trials are kept; a trial "
            "that was running is left RUNNING (or failed as 'not recorded') and the next run of the same "
            "command marks it interrupted and runs its configuration again. Free disk space or restore the "
            "database connection, then re-run the same command to resume.")


def check_not_lost(paths: StudyPaths, storage: str) -> None:
    """An empty ``study.db`` beside trial folders is a lost record, not a new study: tuning on would
    number new trials from 0 and overwrite those folders."""
    db = paths.root / "study.db"
    trials = paths.root / "trials"
    if storage == paths.default_storage() and db.is_file() and db.stat().st_size == 0 \
            and trials.is_dir() and any(trials.iterdir()):
        raise StudyError(f"{db} is empty but {trials} holds trial folders: the study record is lost; restore "
                         "study.db from a copy, or use a new study.dir (the folders would be overwritten)")


def write_meta(paths: StudyPaths, meta: dict[str, Any]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.meta.with_suffix(f".tmp{os.getpid()}")  # workers sharing study.dir write it concurrently
    tmp.write_text(json.dumps(meta, indent=1, default=str))  # keep key order: search.space order matters
    tmp.replace(paths.meta)


def read_meta(study_dir: str | Path) -> dict[str, Any]:
    path = Path(study_dir) / META_FILE
    if not path.is_file():
        raise NotAStudyError(f"{study_dir}: not an lmtune study directory (no {META_FILE}); run "
                             "'lmtune tune CONFIG' first, or pass the study.dir of your config")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: damaged, not valid JSON ({exc}); 'lmtune tune' with the study's config "
                         "rewrites it") from None
    if not isinstance(meta, dict) or "study_name" not in meta or "storage" not in meta:
        raise StudyError(f"{path}: not an lmtune study record (no study_name/storage); 'lmtune tune' with the "
                         "study's config rewrites it")
    return meta


_SQLITE = "sqlite:///"


def storage_url(study_dir: str | Path, meta: Mapping[str, Any]) -> str:
    """The study's storage URL (``lmtune.json``), re-pointed at ``<study_dir>/study.db`` when the study
    folder was moved with its SQLite file. A SQLite file found in neither place is a StudyError (Optuna
    would silently create an empty one)."""
    url = str(meta["storage"])
    if not url.startswith(_SQLITE) or Path(url[len(_SQLITE):]).exists():
        return url
    local = Path(study_dir) / "study.db"
    if local.exists():
        return _SQLITE + str(local.resolve())
    raise StudyError(f"{study_dir}: the study storage {url} does not exist (nor does {local})")


def open_study(name: str, url: str) -> optuna.Study:
    """An existing study in the storage at ``url``; StudyError when the storage does not hold it."""
    try:
        return optuna.load_study(study_name=name, storage=storage_for(url))
    except KeyError:  # optuna's way of saying the name is unknown
        raise StudyError(f"study '{name}' is not in {_masked(url)}") from None


def load_study(study_dir: str | Path) -> tuple[optuna.Study, dict[str, Any]]:
    """Open an existing study directory read/write; returns the Optuna study and lmtune.json."""
    meta = read_meta(study_dir)
    try:
        study = optuna.load_study(study_name=meta["study_name"], storage=storage_for(storage_url(study_dir, meta)))
    except KeyError:
        raise StudyError(f"{study_dir}: study '{meta['study_name']}' is not in {meta['storage']}") from None
    return study, meta


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a failed or interrupted trial's configuration again, keeping its default mark and proxy link.

    The configuration is the one it was queued with (``fixed_params``) or else the one it drew: a trial
    killed between ``ask`` and its first ``suggest`` has no params yet, and an enqueued empty point would
    be a fresh draw under the default's mark. A trial that drew nothing and carries nothing is not queued:
    nothing of it ran, so the next ``ask`` is the same fresh draw.
    """
    params = trial.system_attrs.get("fixed_params") or trial.params
    carried = carried_attrs(trial)
    if not params and not carried:
        return
    study.enqueue_trial(dict(params), user_attrs=record.enqueue_attrs(retry_of=trial.number, **(carried or {})))


def recover_interrupted(study: optuna.Study) -> list[FrozenTrial]:
    """Mark trials left RUNNING by a killed driver as FAIL (with the reason); return them to re-run.

    Call only when no other driver works on this study (local storage).
    """
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        record.write_frozen(study, t, fail_reason=INTERRUPTED)
        study.tell(t.number, state=TrialState.FAIL)
    return stale


def finished(study: optuna.Study) -> int:
    """Trials that count towards n_trials: COMPLETE and PRUNED (failed ones are re-tried)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def train_tokens_spent(study: optuna.Study) -> int:
    return record.train_tokens_of(study.get_trials(deepcopy=False))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best COMPLETE trial (``record.best_of``: the first of equal values), or None. In a
    multi-objective study: the best by the first objective (the score), one trial of `front`."""
    return record.best_of(study.get_trials(deepcopy=False), study.directions[0].name.lower())


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of a multi-objective study (``record.front_of``), in trial order; a single-objective
    study's front is its best trial (ties included)."""
    return record.front_of(study.get_trials(deepcopy=False), [d.name.lower() for d in study.directions])


def objectives_of(study: optuna.Study, meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, direction) of each objective: ``lmtune.json``'s, else the study's own metric names."""
    listed = meta.get("objectives")
    if isinstance(listed, list) and listed:
        return [(str(o["metric"]), str(o["direction"])) for o in listed]
    names = study.metric_names or [meta.get("metric", f"objective {i}") for i in range(len(study.directions))]
    return [(str(n), d.name.lower()) for n, d in zip(names, study.directions, strict=False)]


def default_trial(study: optuna.Study) -> FrozenTrial | None:
    return record.default_of(study.get_trials(deepcopy=False))


def carried_attrs(trial: FrozenTrial) -> dict[str, Any] | None:
    """The user attrs a re-queued trial inherits (default mark, proxy link); None when there are none."""
    return record.carried(record.read(trial))
