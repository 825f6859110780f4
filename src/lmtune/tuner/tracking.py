"""Experiment tracking: each trial (and each final run) as a run in MLflow, TensorBoard or W&B.

``tracking:`` in the config names the sinks (none by default):

- ``mlflow: URI`` — a tracking URI (``sqlite:///mlflow.db``, ``http://127.0.0.1:5000``); the experiment is
  ``tracking.experiment`` (default: the study name). The study is one parent run (found again by its tag
  ``lmtune.study`` when the study resumes); each trial is a run nested under it, named ``trial-NNNN``,
  with the trial's settings as params, its learning curve as metrics at step = train examples seen, its
  final metrics, and tags ``state`` and ``reason``. Final runs are nested runs named ``final-<which>-seedK``
  with their test metrics.
- ``tensorboard: DIR`` — event files under ``DIR/<study>/trial-NNNN`` (``final-...`` for final runs):
  the curve's scalars at step = train examples seen, the final metrics, and the settings as text.
- ``wandb: {project, mode, entity}`` — one W&B run per trial (and final run), named as above and grouped by
  the study, with the settings as its config, the curve as history at step = train examples seen, the
  final metrics, ``state``, ``reason`` and ``train_tokens`` in its summary, and exit code 1 for a failed
  trial. ``mode: offline`` (the default) writes ``offline-run-*`` folders under ``$WANDB_DIR/wandb`` (default
  ``./wandb``) without touching the network; ``wandb sync`` uploads them later. W&B prints nothing (the
  study's own display stays readable).

Runs are written when a trial ends (its whole curve at once), from the driver only. A sink that fails
(a server gone, a full disk) is warned about once and switched off; the study goes on. The packages are
optional extras (``pip install 'lmtune[tracking]'``): a sink whose package is missing is refused when the
config is checked, before anything trains.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from lmtune.config import TrackingSection, check_tracking
from lmtune.errors import ConfigError

__all__ = ["NoTracking", "RunRecord", "Tracker", "check_tracking", "make_tracker"]

log = logging.getLogger("lmtune")

@dataclass(frozen=True)
class RunRecord:
    """What a sink logs of one run: a trial of the search, or a final run."""

    name: str  # trial-0003, final-best-seed0
    params: Mapping[str, Any]
    curve: Sequence[Mapping[str, Any]]  # the trial's curve entries: examples, tokens, metrics
    metrics: Mapping[str, float]  # the final metrics (validation for a trial, test for a final run)
    state: str  # COMPLETE | PRUNED | FAIL
    reason: str = ""
    train_tokens: int = 0
    wall_time_s: float = 0.0


class Tracker(Protocol):
    def log_run(self, run: RunRecord) -> None: ...

    def close(self) -> None: ...


class NoTracking:
    def log_run(self, run: RunRecord) -> None:
        pass

    def close(self) -> None:
        pass


def make_tracker(section: TrackingSection | None, study_name: str) -> Tracker:
    if section is None or not section.enabled:
        return NoTracking()
    check_tracking(section)
    sinks: list[Tracker] = []
    if section.mlflow is not None:
        try:
            sinks.append(_MLflow(section.mlflow, section.experiment or study_name, study_name))
        except Exception as exc:  # a bad URI, a server that is not there: refused before any trial starts
            raise ConfigError(f"tracking.mlflow: cannot open the MLflow store {section.mlflow!r}: "
                              f"{type(exc).__name__}: {str(exc)[:300]}; give a tracking URI such as "
                              "sqlite:///mlflow.db or the address of a running MLflow server") from None
    if section.tensorboard is not None:
        sinks.append(_TensorBoard(Path(section.tensorboard) / _safe(study_name)))
    if section.wandb is not None:
        sinks.append(_WandB(section.wandb.project or study_name, section.wandb.mode, section.wandb.entity,
                            study_name))
    return _Sinks(sinks)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]  # MLflow caps a param value's length


class _Sinks:
    """Every configured sink; one that raises is warned about once and dropped. Trials end in their own
    threads: one run is logged at a time."""

    def __init__(self, sinks: list[Tracker]) -> None:
        self.sinks = sinks
        self.lock = threading.Lock()

    def log_run(self, run: RunRecord) -> None:
        with self.lock:
            self._log(run)

    def _log(self, run: RunRecord) -> None:
        for sink in list(self.sinks):
            try:
                sink.log_run(run)
            except Exception as exc:  # tracking must never fail the study
                log.warning("tracking: %s failed (%s: %s); it is off for the rest of this run", type(sink).__name__
                            .strip("_"), type(exc).__name__, str(exc)[:300])
                self.sinks.remove(sink)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("tracking: closing %s failed: %s", type(sink).__name__.strip("_"), exc)


class _MLflow:
    def __init__(self, uri: str, experiment: str, study: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`lmtune.study` = '{study}'",
                                       max_results=1)
        if runs:  # a resumed study: its trials go under the same parent run
            self.parent = runs[0].info.run_id
        else:
            self.parent = self.client.create_run(self.experiment_id, run_name=study,
                                                 tags={"lmtune.study": study}).info.run_id

    def log_run(self, run: RunRecord) -> None:
        from mlflow.entities import Metric, Param

        tags = {"mlflow.parentRunId": self.parent, "state": run.state}
        if run.reason:
            tags["reason"] = run.reason[:5000]
        child = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags).info.run_id
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, int(entry.get("examples", 0)))
                   for entry in run.curve for k, v in _numbers(entry.get("metrics") or {}).items()]
        final = {**{f"final_{k}": v for k, v in _numbers(run.metrics).items()},
                 "train_tokens": float(run.train_tokens), "wall_time_s": float(run.wall_time_s)}
        metrics += [Metric(k, v, stamp, 0) for k, v in final.items()]
        params = [Param(k, _param_text(v)) for k, v in sorted(run.params.items())]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params and 1000 metrics
            self.client.log_batch(child, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(child, metrics=metrics[i:i + 1000])
        self.client.set_terminated(child, status="FAILED" if run.state == "FAIL" else "FINISHED")

    def close(self) -> None:
        pass  # the parent run stays open for a resumed study's trials; its children hold the results


class _TensorBoard:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def log_run(self, run: RunRecord) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(self.folder / run.name))
        try:
            def scalar(tag: str, value: float, step: int) -> None:
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
                writer.add_event(event_pb2.Event(step=step, summary=summary))

            for entry in run.curve:
                for k, v in _numbers(entry.get("metrics") or {}).items():
                    scalar(k, v, int(entry.get("examples", 0)))
            last = int(run.curve[-1].get("examples", 0)) if run.curve else 0
            for k, v in _numbers(run.metrics).items():
                scalar(f"final/{k}", v, last)
            scalar("train_tokens", float(run.train_tokens), last)
            text = "\n".join(f"{k}: {_param_text(v)}" for k, v in sorted(run.params.items()))
            text += f"\nstate: {run.state}" + (f"\nreason: {run.reason}" if run.reason else "")
            tensor = summary_pb2.Summary.Value(tag="settings/text_summary", metadata=summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")))
            from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

            tensor.tensor.CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()],
                                                          tensor_shape=tensor_shape_pb2.TensorShapeProto()))
            writer.add_event(event_pb2.Event(step=last, summary=summary_pb2.Summary(value=[tensor])))
        finally:
            writer.close()

    def close(self) -> None:
        pass


class _WandB:
    def __init__(self, project: str, mode: Literal["online", "offline", "disabled"], entity: str | None,
                 study: str) -> None:
        self.project, self.mode, self.entity, self.study = project, mode, entity, study

    def log_run(self, run: RunRecord) -> None:
        import wandb

        # console off: the driver's own output (other trials, the progress display) is not this run's;
        # stats off: the driver's CPU and memory are not the trial's either; silent: W&B's ~20 lines per
        # run would bury the study's own display
        w = wandb.init(project=self.project, entity=self.entity, mode=self.mode, group=self.study, name=run.name,
                       config=dict(run.params), reinit="create_new",
                       settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        try:
            for entry in run.curve:
                values = _numbers(entry.get("metrics") or {})
                if values:  # an empty log would still add a history row
                    w.log(values, step=int(entry.get("examples", 0)))
            w.summary.update({**{f"final_{k}": v for k, v in _numbers(run.metrics).items()}, "state": run.state,
                              "reason": run.reason, "train_tokens": run.train_tokens, "wall_time_s": run.wall_time_s})
        finally:
            w.finish(exit_code=0 if run.state != "FAIL" else 1)

    def close(self) -> None:
        pass
