"""Ray executor: each trial's trainer runs on whichever node of a Ray cluster has the resources.

Every executor slot is a Ray actor that reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs
on some node and lives as long as the driver. For each trial the actor starts the same trainer entry
point as the local executor (``python -m lmtune.training.worker TRIAL_FILE``, a process per trial, so
memory goes back to the node when the trial ends) and relays its JSON-lines events through actor
calls; the driver answers evaluations with ``send``, so pruning and PBT decisions stay in the driver.

A lost node or actor (``RayActorError``) is retried on a fresh actor up to ``max_retries`` times: from
the trial's last checkpoint when the spec saves checkpoints (``checkpoint_every``), else from scratch (the
evaluations already reported are then answered "continue" and not relayed twice). After that the
trial ends with an ``error`` event of kind ``lost`` and the reason. Ray is imported only here, lazily.

Paths in the trial spec are made absolute in the driver; the trainer on another node must see the same
paths, so study.dir (data cache, trial folders, checkpoints) belongs on a shared filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lmtune.errors import ConfigError
from lmtune.execution.checkpoints import FolderCheckpoints
from lmtune.execution.local import TRAINER, TrialProcess, start_trial
from lmtune.execution.script import ScriptProcess
from lmtune.protocol import Continue, Decision, TrialSpec

log = logging.getLogger("lmtune")
POLL_S = 10.0  # longest a relay call waits in the actor for an event (it returns at once when one comes)


class TrainerHost:
    """The actor (one per executor slot): runs one trainer subprocess at a time on its node.

    The subprocess is started by a thread that lives until it exits, because the child's death signal
    (it dies with its parent) is tied to the thread that forked it.
    """

    def __init__(self) -> None:
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._proc: TrialProcess | ScriptProcess | None = None
        self._code: int | None = None
        self._killed = threading.Event()

    def where(self) -> dict[str, Any]:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}

    def start(self, spec_json: str, trial_dir: str, env: dict[str, str], module: str) -> None:
        folder = Path(trial_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "trial.json"
        tmp = path.with_name(f".trial.json.{os.getpid()}")
        tmp.write_text(spec_json)
        tmp.replace(path)
        with (folder / "trainer.log").open("a") as fh:  # which node ran it (each retry adds a line)
            fh.write("[lmtune] Ray node {node} host {host} actor pid {pid}\n".format(**self.where()))
        self._events, self._proc, self._code = queue.Queue(), None, None
        self._killed.clear()
        threading.Thread(target=self._run, args=(path, folder / "trainer.log", {**os.environ, **env}, module),
                         daemon=True).start()

    def _run(self, path: Path, log_path: Path, env: dict[str, str], module: str) -> None:
        events = self._events
        try:
            proc = start_trial(TrialSpec.read(path), path, log_path, env, module=module)
        except OSError as exc:
            events.put({"event": "error", "kind": "exception", "reason": f"cannot start the trainer: {exc}"})
            self._code = 1
            events.put(None)
            return
        self._proc = proc
        if self._killed.is_set():
            proc.kill()
        code = 1
        try:
            for ev in proc.events():
                events.put(ev)
            code = proc.wait()
        except Exception as exc:  # the driver must still hear that the trainer ended
            events.put({"event": "error", "kind": "exception", "reason": f"relay failed: {exc!r}"})
            proc.kill()
        finally:
            self._code = code
            events.put(None)

    def poll(self, timeout: float) -> tuple[list[dict[str, Any]], int | None]:
        """Events so far (waiting up to ``timeout`` for the first); the exit code once the trainer ended."""
        out: list[dict[str, Any]] = []
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return out, None
        while item is not None:
            out.append(item)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return out, None
        return out, self._code

    def send(self, decision: Decision) -> None:
        if self._proc is not None:
            self._proc.send(decision)

    def kill(self) -> None:
        self._killed.set()
        if self._proc is not None:
            self._proc.kill()


class RayExecutor(FolderCheckpoints):
    """Runs trainers as Ray actors. Same interface as `LocalExecutor`; ``workers`` = trials at once."""

    def __init__(self, *, workers: int, device: str, address: str | None, cpus_per_trial: float,
                 gpus_per_trial: float, max_retries: int, threads: int | None, module: str = TRAINER) -> None:
        if device == "cuda" and not gpus_per_trial:
            raise ConfigError("execution.device: cuda with backend ray needs execution.gpus_per_trial (e.g. 1)")
        self.workers = workers
        self.threads = threads or max(1, int(cpus_per_trial))
        self.max_retries = max_retries
        self.module = module
        self._free = list(range(workers))
        self._device = "cuda:0" if gpus_per_trial else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per actor
        self.ray = connect(address)
        self._host_cls = self.ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_concurrency=4,
                                         max_restarts=0)(TrainerHost)
        self._hosts: dict[int, Any] = {}
        self._lock = threading.Lock()
        _warn_if_too_small(self.ray, cpus_per_trial, gpus_per_trial)

    def device_for(self, slot: int) -> str:
        return self._device

    def acquire(self) -> int:
        return self._free.pop(0)

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def host(self, slot: int, *, fresh: bool = False) -> Any:
        """The slot's actor; ``fresh`` replaces a dead one."""
        with self._lock:
            if fresh or slot not in self._hosts:
                old = self._hosts.pop(slot, None)
                if old is not None:
                    self.ray.kill(old, no_restart=True)
                self._hosts[slot] = self._host_cls.remote()
            return self._hosts[slot]

    def close(self) -> None:
        """Kill the slot actors, so their CPUs/GPUs go back to the cluster (a driver may run more studies)."""
        with self._lock:
            for host in self._hosts.values():
                with contextlib.suppress(Exception):
                    self.ray.kill(host, no_restart=True)
            self._hosts.clear()

    def launch(self, spec: TrialSpec, trial_dir: Path, slot: int) -> RayTrialProcess:
        trial_dir = trial_dir.resolve()
        spec = _absolute(spec)
        env = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(spec.threads or self.threads)}
        if Path(spec.model).is_absolute():
            env["HF_HUB_OFFLINE"] = "1"
        env.update({k: v for k, v in os.environ.items() if k.startswith("LMTUNE_")})
        return RayTrialProcess(self, slot, spec, trial_dir, env)


class RayTrialProcess:
    """The driver's view of one trial on the cluster: events relayed from the slot's actor."""

    def __init__(self, executor: RayExecutor, slot: int, spec: TrialSpec, trial_dir: Path,
                 env: dict[str, str]) -> None:
        self.log_path = trial_dir / "trainer.log"
        self._ex, self._slot, self._spec, self._dir, self._env = executor, slot, spec, trial_dir, env
        self._code: int | None = None
        self._killed = False
        self._relayed_units = 0      # highest evaluation already given to the driver
        self._checkpoint: str | None = None
        self._started: Any = None  # the actor's start() call, until it has run
        self.retries: list[str] = []  # why each retry happened
        self._host = executor.host(slot)
        self._start(spec)

    def _start(self, spec: TrialSpec) -> None:
        # Not awaited here (the tuner's loop would wait for each actor to come up); events() awaits it
        # before the first poll, since a threaded actor may run calls out of order.
        self._started = self._host.start.remote(json.dumps(asdict(spec)), str(self._dir), self._env,
                                                self._ex.module)

    def events(self) -> Iterator[dict[str, Any]]:
        ray = self._ex.ray
        while self._code is None:
            try:
                if self._started is not None:
                    ray.get(self._started)
                    self._started = None
                batch, code = ray.get(self._host.poll.remote(POLL_S))
            except ray.exceptions.RayActorError as exc:
                if self._killed:
                    self._code = -9
                    return
                if not self._retry(exc):
                    self._code = 1
                    yield {"event": "error", "kind": "lost", "reason": self._lost_reason(exc)}
                    return
                continue
            except ray.exceptions.RayError as exc:
                self._code = 1
                yield {"event": "error", "kind": "exception", "reason": f"Ray: {_first_line(exc)}"}
                return
            for ev in batch:
                if self._replayed(ev):
                    continue
                yield ev
            self._code = code

    def _replayed(self, ev: dict[str, Any]) -> bool:
        """After a retry from scratch: evaluations the driver already has are answered here, not relayed."""
        if ev.get("event") == "eval":
            if ev.get("checkpoint"):
                self._checkpoint = str(ev["checkpoint"])
            units = int(ev.get("units", 0))
            if units <= self._relayed_units:
                self.send(Continue())
                return True
            self._relayed_units = units
        return ev.get("event") == "start" and bool(self.retries)

    def _retry(self, exc: BaseException) -> bool:
        if len(self.retries) >= self._ex.max_retries:
            return False
        spec = self._spec
        how = f"from checkpoint {spec.resume_from}" if spec.resume_from else "from scratch"
        if spec.checkpoint_every and self._checkpoint:
            spec, how = replace(spec, resume_from=self._checkpoint), f"from checkpoint {self._checkpoint}"
        self.retries.append(f"{_first_line(exc)} → retried {how}")
        log.warning("trial %s: Ray actor lost (%s); retry %d/%d %s", spec.trial, _first_line(exc),
                    len(self.retries), self._ex.max_retries, how)
        self._host = self._ex.host(self._slot, fresh=True)
        self._start(spec)
        return True

    def _lost_reason(self, exc: BaseException) -> str:
        tries = f" after {len(self.retries)} retries (execution.max_retries={self._ex.max_retries})"
        return f"the Ray node or actor running the trainer was lost{tries}: {_first_line(exc)}"

    def send(self, decision: Decision) -> None:
        with contextlib.suppress(Exception):  # the actor is gone: events() notices and retries or fails
            self._host.send.remote(decision)

    def kill(self) -> None:
        self._killed = True
        ray = self._ex.ray
        try:
            ray.get(self._host.kill.remote(), timeout=30)
        except Exception:  # unreachable actor: replace it; the trial is over either way
            self._code = -9
            self._host = self._ex.host(self._slot, fresh=True)

    def wait(self) -> int:
        for _ in self.events():  # drain, when the caller stopped reading early
            pass
        return self._code if self._code is not None else 1


def connect(address: str | None) -> Any:
    """Import Ray and connect: to ``address``, or (None / "auto") to a running cluster, else start one here."""
    try:
        import ray
    except ImportError:
        raise ConfigError("execution.backend: ray needs Ray installed: pip install 'lmtune[ray]'") from None
    if ray.is_initialized():
        return ray
    opts: dict[str, Any] = {"log_to_driver": False, "runtime_env": _runtime_env()}
    if address not in (None, "auto"):
        ray.init(address=address, **opts)
        return ray
    try:
        ray.init(address="auto", **opts)
    except ConnectionError:
        ray.init(address="local", include_dashboard=False, **opts)
    return ray


def _runtime_env() -> dict[str, Any]:
    """Make the driver's lmtune importable on the workers when it runs from a source checkout
    (installed copies are found by the nodes' own Python; install the same version on every node)."""
    import lmtune

    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    src = str(Path(lmtune.__file__).resolve().parents[1])
    if not any(part in src for part in ("site-packages", "dist-packages")) and src not in paths:
        paths.insert(0, src)
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}} if paths else {}


def _absolute(spec: TrialSpec) -> TrialSpec:
    """Paths that another node (with another working directory) resolves the same way."""
    def absolute(p: str | None) -> str | None:
        return str(Path(p).resolve()) if p and not Path(p).is_absolute() and Path(p).exists() else p

    cache = str(Path(spec.data_cache).resolve()) if spec.data_cache else ""  # "": a script trial
    return replace(spec, model=absolute(spec.model) or spec.model, data_cache=cache,
                   output_dir=str(Path(spec.output_dir).resolve()), resume_from=absolute(spec.resume_from))


def _warn_if_too_small(ray: Any, cpus: float, gpus: float) -> None:
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        log.warning("no Ray node has %s CPUs and %s GPUs free for one trial; trials wait until the cluster "
                    "grows (check execution.cpus_per_trial / gpus_per_trial)", cpus, gpus)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
